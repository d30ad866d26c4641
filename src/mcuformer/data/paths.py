"""Where data and caches live by default."""

from __future__ import annotations

import os
from pathlib import Path

from mcuformer.errors import DataError

DEFAULT_ARCHIVE = "cifar10-jpg.tar.gz"


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").exists() else None


def cache_dir() -> Path:
    """Decoded datasets and other derived files: $MCUFORMER_CACHE, else <checkout>/.cache (git-ignored),
    else ~/.cache/mcuformer."""
    env = os.environ.get("MCUFORMER_CACHE")
    if env:
        return Path(env)
    root = repo_root()
    return root / ".cache" if root else Path.home() / ".cache" / "mcuformer"


def default_data_path() -> Path:
    """The project's default data: CIFAR-10 as an ImageFolder tarball in ../shared/data."""
    candidates = []
    if os.environ.get("MCUFORMER_DATA"):
        candidates.append(Path(os.environ["MCUFORMER_DATA"]))
    root = repo_root()
    if root:
        candidates.append(root.parent / "shared" / "data" / DEFAULT_ARCHIVE)
    candidates.append(Path.cwd().parent / "shared" / "data" / DEFAULT_ARCHIVE)
    for c in candidates:
        if c.exists():
            return c
    raise DataError(
        f"no --data-path given and the default CIFAR-10 archive ../shared/data/{DEFAULT_ARCHIVE} was not found; "
        "pass --data-path with an ImageFolder root (train/<class>/*.jpg and val/ or test/) or a .tar.gz of one, "
        "or set MCUFORMER_DATA")


def resolve_data_path(path: str | os.PathLike | None) -> Path:
    if path is None:
        return default_data_path()
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data path does not exist: {p}")
    if not (p.is_dir() or p.is_file()):  # a pipe or a device is refused, never read
        raise DataError(f"data path {p} is neither a folder nor a file")
    return p
