"""Errors that the CLI turns into a one-line message and a non-zero exit.

Anything the user can fix (a path, a file, a setting) raises one of these; a traceback means a bug.
"""

import subprocess
import sys


class McuformerError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""

    exit_code = 2


class ConfigError(McuformerError):
    """A malformed or inconsistent YAML/JSON file, or an impossible setting."""


class SpaceError(ConfigError):
    """An architecture that lies outside its search space, or a malformed space."""


class DataError(McuformerError):
    """Missing data path, empty class folder, unreadable image."""


class CheckpointError(McuformerError):
    """A missing, corrupt or mismatched checkpoint."""


def one_line(exc: BaseException) -> str:
    """The last meaningful line of an error message.

    Errors raised inside DataLoader workers come back with the worker's traceback folded into the
    message; the user needs only the original sentence at its end.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    last = lines[-1]
    for cls in (McuformerError, ConfigError, SpaceError, DataError, CheckpointError):
        prefix = f"{cls.__module__}.{cls.__name__}: "
        if last.startswith(prefix):
            return last[len(prefix):]
    return last


def os_error_line(e: OSError) -> str:
    """A full or read-only disk, a name too long, a file that vanished: the reason and the path(s)."""
    text = e.strerror or one_line(e)
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{text}: {' -> '.join(names)}" if names else text


def run_script(main, prog: str) -> int:
    """Run a script's ``main()`` as the CLI runs a verb: what the user can fix is one stderr line and a
    non-zero exit, never a traceback. (For the benchmarks: ``sys.exit(run_script(main, "budget_curve.py"))``.)"""
    try:
        return int(main() or 0)
    except McuformerError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"{prog}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:  # the child has said why on its own stderr
        what = " ".join(str(a) for a in e.cmd[:4]) if isinstance(e.cmd, (list, tuple)) else str(e.cmd)
        print(f"{prog}: error: `{what} ...` exited with status {e.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
