"""Checks of user input shared by every verb: numbers, input files, output paths.

Each failure is a one-line McuformerError naming the flag or file; nothing here reads or writes data
(an output's folder is checked for write permission, not written to).
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import re
import stat
from pathlib import Path

from mcuformer.errors import ConfigError


# ---- numbers ------------------------------------------------------------------------------------------

def is_finite_number(value) -> bool:
    """An int or a finite float, not a bool (what ``check_number`` accepts before its bounds)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_number(value, name: str, *, integer: bool = False, minimum: float | None = None,
                 positive: bool = False, maximum: float | None = None):
    """``value`` as an int or a finite float, or a ConfigError naming ``name``.

    Booleans, strings, NaN and infinities are refused; ``positive`` refuses zero and below, ``minimum`` /
    ``maximum`` are inclusive bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a{'n integer' if integer else ' number'}, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name} must be an integer, got {value}")
        value = int(value)
    if positive and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, got {value}")
    return value


def _parse_number(text: str, integer: bool):
    try:
        return int(text) if integer else float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{'an integer' if integer else 'a number'} expected, got {text!r}") from None


def number_type(integer: bool = False, *, positive: bool = False, minimum: float | None = None,
                maximum: float | None = None):
    """An argparse ``type=`` that parses and range-checks a number at parse time (NaN/inf refused)."""
    def parse(text: str):
        value = _parse_number(text, integer)
        try:
            return check_number(value, "value", integer=integer, positive=positive, minimum=minimum, maximum=maximum)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e).replace("value must", "must", 1)) from None
    parse.__name__ = "integer" if integer else "number"
    return parse


positive_int = number_type(True, positive=True)
nonnegative_int = number_type(True, minimum=0)
positive_float = number_type(positive=True)
nonnegative_float = number_type(minimum=0)
probability = number_type(minimum=0, maximum=1)
any_int = number_type(True)


# ---- input files --------------------------------------------------------------------------------------

def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def input_file(path, what: str = "file", error=ConfigError) -> Path:
    """``path`` if it is an existing regular file; pipes and devices are refused, never opened."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"expected a file, got a folder: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {_kind(st.st_mode)}, not a file")
    if not os.access(path, os.R_OK):
        raise error(f"cannot read {what} {path}: permission denied")
    return path


def input_dir(path, what: str = "folder", error=ConfigError) -> Path:
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if not path.is_dir():
        raise error(f"{what} {path} is not a folder")
    return path


# ---- outputs ------------------------------------------------------------------------------------------

def _check_parent(path: Path, flag: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")
            _check_writable(parent, path, flag)
            return


def _check_writable(folder: Path, path: Path, flag: str) -> None:
    """A folder the result will be written into: refused now, not after hours of training or searching."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows), or it cannot tell: the access check alone
        read_only = False
    if read_only:
        raise ConfigError(f"{flag} {path}: {folder} is on a read-only file system")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {folder} is not writable")


def _check_name_length(path: Path, flag: str) -> None:
    limit = 255
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise ConfigError(f"{flag} {path}: a name longer than {limit} bytes")


def output_file(path, flag: str = "--output", force: bool = False) -> Path:
    """An output file path that is not a folder, whose parents are folders, and that exists only with --force."""
    path = Path(path)
    _check_name_length(path, flag)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, expected a file name")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise ConfigError(f"{flag} {path} exists and is not a regular file")
        if not force:
            raise ConfigError(f"{flag} {path} exists; pass --force to overwrite it")
    _check_parent(path, flag)
    return path


def output_dir(path, flag: str = "--output", force: bool = False, owned=None) -> Path:
    """An output folder that is not a file; an existing non-empty one needs --force.

    ``owned``: the names the writer puts there (with --force only those are replaced; nothing else in the
    folder is touched).
    """
    path = Path(path)
    _check_name_length(path, flag)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} exists and is not a folder")
    if path.is_dir() and not force:
        try:
            present = next(iter(path.iterdir()), None)
        except OSError as e:
            raise ConfigError(f"{flag} {path}: cannot list it ({e.strerror})") from None
        if present is not None:
            raise ConfigError(f"{flag} {path} exists and is not empty; pass --force to overwrite "
                              f"{'its ' + ', '.join(owned) if owned else 'it'}")
    if path.is_dir():  # its files are written into it
        _check_writable(path, path, flag)
    else:
        _check_parent(path, flag)
    return path


def torch_load_problem(e: Exception) -> str:
    """What ``torch.load(weights_only=True)`` found wrong with a file, without torch's advice to load it
    unsafely (mcuformer never runs pickled code)."""
    text = str(e)
    if "weights only load failed" in text.lower() or "weightsunpickler" in text.lower():
        if re.search(r"Unsupported operand", text):  # a plain pickle.dump, or bytes that are no pickle at all
            return "not a torch.save file (a plain pickled object, or no pickle at all)"
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found[1]})" if found else ""
        return f"it holds pickled Python objects{what}, which mcuformer never loads"
    if isinstance(e, EOFError):
        return "the file ends early (empty or truncated)"
    found = re.search(r"PytorchStreamReader failed ([^.]+)", text)  # torch's zip reader; its advice is dropped
    if found:
        return f"not a readable PyTorch archive ({found[1]})"
    if isinstance(e, (KeyError, pickle.UnpicklingError)):  # e.g. KeyError('105') for a text file
        return "not a torch.save file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    return (lines[0] if lines else type(e).__name__)[:200]


def device_name(text: str) -> str:
    """An argparse ``type=`` for --device: auto, cpu, cuda or cuda:N (a typo never falls back to the CPU)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"use auto, cpu, cuda or cuda:N, got {text!r}")
    return text
