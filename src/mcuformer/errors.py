"""Errors that the CLI turns into a one-line message and a non-zero exit.

Anything the user can fix (a path, a file, a setting) raises one of these; a traceback means a bug.
"""


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
