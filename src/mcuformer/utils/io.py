"""Atomic file writes and strict YAML/JSON reading."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from mcuformer.errors import ConfigError

MAX_CONFIG_BYTES = 64 << 20


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Write through ``write(fileobj)`` into a temp file beside ``path``, then rename over it.

    A crash or a kill leaves either the old file or the new one, never half of one.
    """
    atomic_write_all([(path, write, mode)])
    return Path(path)


def atomic_write_all(files: list[tuple[str | os.PathLike, Callable[[Any], None], str]]) -> None:
    """``atomic_write`` for files that belong together, each ``(path, write, mode)``: all are written to
    their temp files before the first one replaces its target, so a full disk or a failing write leaves
    every old file as it was."""
    written: list[tuple[str, Path]] = []
    try:
        for path, write, mode in files:
            written.append((_write_temp(Path(path), write, mode), Path(path)))
        for _, path in written:  # a folder in a file's place would fail its rename after the others'
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in written:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def text_file(path, text: str) -> tuple:
    """One ``atomic_write_all`` entry: ``path`` gets ``text``."""
    return (path, lambda f: f.write(text), "w")


def missing_folders(*paths) -> list[Path]:
    """The folders among ``paths`` and their parents that do not exist yet: what a writer would make."""
    return sorted({p for path in paths for p in (Path(path), *Path(path).parents) if not p.exists()})


def remove_empty_folders(folders) -> None:
    """Take back folders a failed or probing writer made: deepest first, and only those still empty."""
    for folder in sorted(folders, key=lambda d: len(Path(d).parts), reverse=True):
        with contextlib.suppress(OSError):
            Path(folder).rmdir()


def _write_temp(path: Path, write: Callable[[Any], None], mode: str) -> str:
    """A temp file beside ``path`` holding what ``write`` writes, synced, with the mode open() would give."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = _temp_stem(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{stem}{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only or full disk, a folder the user may not write: name the target
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None and e.errno:  # a full disk: name the file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    return tmp


def _temp_stem(path: Path) -> str:
    # the temp name must fit the file system's 255-byte limit even when the target's name nearly does
    return f".{path.name[:64]}."


def remove_stale_temps(path) -> list[Path]:
    """Delete the temp files that killed atomic writes of ``path`` left beside it.

    A temp file is ``.<name>.<pid>.<random>.tmp``; it is stale when its writer is no longer running.
    """
    path = Path(path)
    stem, removed = _temp_stem(path), []
    try:
        candidates = [p for p in path.parent.iterdir() if p.name.startswith(stem) and p.name.endswith(".tmp")]
    except OSError:
        return removed
    for tmp in candidates:
        pid = tmp.name[len(stem):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not tmp.is_file():
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str) -> Path:
    return atomic_write(*text_file(path, text))


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def yaml_text(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None)


def write_yaml(path, obj: Any) -> Path:
    return write_text(path, yaml_text(obj))


def append_jsonl(path, obj: Any) -> None:
    """Append one JSON line (appends of a short line are atomic enough for a log)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")


def read_structured(path) -> Any:
    """Read a YAML or JSON file; any problem becomes a one-line ConfigError naming the file."""
    from mcuformer.utils.checks import input_file

    path = input_file(path)  # a pipe or a device is refused, never read (it could block for ever)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MB; not a settings file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a settings file") from None
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        elif isinstance(e, json.JSONDecodeError):
            where = f" (line {e.lineno}, column {e.colno})"
        problem = getattr(e, "problem", None) or getattr(e, "msg", None) or str(e).splitlines()[0]
        kind = "JSON" if isinstance(e, json.JSONDecodeError) else "YAML"  # what it was parsed as, not its suffix
        raise ConfigError(f"malformed {kind} in {path}{where}: {problem}") from None


def file_sha256(path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
