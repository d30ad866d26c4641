"""Entry point of ``mcuformer``. Each verb lives in its own module exposing ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; errors the user can fix become one line."""

from __future__ import annotations

import argparse
import importlib
import sys

from mcuformer.errors import run_script

# verb modules, in pipeline order; imported lazily so that `mcuformer memory` never imports torch
VERBS = [
    "mcuformer.cli.space_cmd",
    "mcuformer.cli.subsplit_cmd",
    "mcuformer.cli.train_cmd",
    "mcuformer.cli.evaluate_cmd",
    "mcuformer.cli.memory_cmd",
    "mcuformer.cli.search_cmd",
    "mcuformer.cli.evolve_space_cmd",
    "mcuformer.cli.teacher_cmd",
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
    return run_script(lambda: args._run(args), f"mcuformer {args.verb}")


if __name__ == "__main__":
    sys.exit(main())
