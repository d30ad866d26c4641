"""Entry point of ``mcuformer``. Each verb lives in its own module exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; errors the user can fix become one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from mcuformer.errors import McuformerError, one_line

# verb modules, in pipeline order; imported lazily so that `mcuformer memory` never imports torch
VERBS = [
    "mcuformer.cli.space_cmd",
    "mcuformer.cli.subsplit_cmd",
    "mcuformer.cli.train_cmd",
    "mcuformer.cli.evaluate_cmd",
    "mcuformer.cli.memory_cmd",
    "mcuformer.cli.search_cmd",
    "mcuformer.cli.evolve_space_cmd",
    "mcuformer.cli.finetune_cmd",
    "mcuformer.cli.quantize_cmd",
    "mcuformer.cli.export_cmd",
    "mcuformer.cli.verify_cmd",
    "mcuformer.cli.pipeline_cmd",
]


def _available_verbs():
    mods = []
    for name in VERBS:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name != name:  # a verb module that exists but whose import fails is a real bug
                raise
    return mods


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes are one stderr line (``--help`` shows the usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mcuformer",
        description="Vision transformers for microcontrollers: supernet training, memory-constrained "
                    "search, int8 C engine.")
    from mcuformer import __version__
    parser.add_argument("--version", action="version", version=f"mcuformer {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for mod in _available_verbs():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "verb", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except McuformerError as e:
        print(f"mcuformer {args.verb}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a full or read-only disk, a name too long, a file that vanished
        print(f"mcuformer {args.verb}: error: {_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mcuformer {args.verb}: interrupted", file=sys.stderr)
        return 130


def _os_error(e: OSError) -> str:
    text = e.strerror or one_line(e)
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{text}: {' -> '.join(names)}" if names else text


if __name__ == "__main__":
    sys.exit(main())
