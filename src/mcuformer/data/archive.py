"""An ImageFolder packed as a tar(.gz) archive (e.g. ../shared/data/cifar10-jpg.tar.gz), decoded once
into uint8 arrays under the cache folder, so that training never decodes a JPEG twice."""

from __future__ import annotations

import hashlib
import io
import tarfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from mcuformer.data.folder import IMAGE_EXTENSIONS, SPLIT_ALIASES
from mcuformer.data.paths import cache_dir
from mcuformer.errors import DataError
from mcuformer.utils.io import atomic_write, write_json

CACHE_VERSION = 1
MAX_MEMBER_BYTES = 64 << 20  # one image file; a member past it is refused, not read


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name.endswith(".tar.gz") or name.endswith(".tgz") or name.endswith(".tar"))


def _fingerprint(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}:{CACHE_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _split_of(member: str) -> tuple[str, str, str] | None:
    """('train'|'test'|..., class, filename) from 'x/train/cat/0001.jpg' or 'train/cat/0001.jpg'."""
    parts = [p for p in member.split("/") if p and p != "."]
    if len(parts) < 3 or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return None
    return parts[-3], parts[-2], parts[-1]


def _open_tar(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except tarfile.ReadError:  # its message lists every decompressor tried, one per line
        raise DataError(f"cannot read archive {path}: not a tar, tar.gz, tar.bz2 or tar.xz file") from None


def decode_archive(path: Path) -> Path:
    """Decode every image of the archive into ``<cache>/<name>-<fingerprint>/<split>.npz``; return the folder.

    Each npz holds ``images`` (N, H, W, 3) uint8, ``targets`` (N,) int64 and ``classes``; samples are in
    (class, filename) order, like a scanned ImageFolder.
    """
    out = cache_dir() / "datasets" / f"{path.name.split('.')[0]}-{_fingerprint(path)}"
    if (out / "meta.json").exists():
        return out
    per_split: dict[str, dict[str, list[tuple[str, bytes]]]] = {}
    try:
        with _open_tar(path) as tar:
            for m in tqdm(tar, desc=f"reading {path.name}", unit=" files", leave=False, disable=None):  # no bar off a terminal
                loc = _split_of(m.name) if m.isfile() else None
                if loc is None:
                    continue
                split, cls, fname = loc
                if m.size > MAX_MEMBER_BYTES:
                    raise DataError(f"archive {path}: member {m.name} is {m.size:,} bytes, more than the "
                                    f"{MAX_MEMBER_BYTES >> 20} MB an image may take")
                per_split.setdefault(split, {}).setdefault(cls, []).append((fname, tar.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot read archive {path}: {e}") from None
    if "train" not in per_split:
        raise DataError(f"archive {path} has no train/<class>/<image> entries (ImageFolder layout expected)")
    classes = sorted(per_split["train"])
    meta = {"source": str(path), "classes": classes, "splits": {}}
    for split, by_class in per_split.items():
        if sorted(by_class) != classes:
            raise DataError(f"archive {path}: classes of {split}/ differ from train/")
        images, targets, size = [], [], None
        for idx, cls in enumerate(classes):
            for fname, blob in sorted(by_class[cls]):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("error", Image.DecompressionBombWarning)
                        with Image.open(io.BytesIO(blob)) as im:
                            arr = np.asarray(im.convert("RGB"))
                except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
                    raise DataError(f"image {split}/{cls}/{fname} in {path} is too large to decode "
                                    f"(a decompression bomb?): {e}") from None
                except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                    raise DataError(f"corrupt image {split}/{cls}/{fname} in {path}: {e}") from None
                if size is None:
                    size = arr.shape
                elif arr.shape != size:
                    raise DataError(f"archive {path}: images differ in size ({size} vs {arr.shape} at "
                                    f"{split}/{cls}/{fname}); extract it and pass the folder instead")
                images.append(arr)
                targets.append(idx)
        atomic_write(out / f"{split}.npz", lambda f: np.savez(f, images=np.stack(images),
                                                               targets=np.asarray(targets, dtype=np.int64)),
                     mode="wb")
        meta["splits"][split] = len(targets)
    write_json(out / "meta.json", meta)  # written last: its presence marks a complete cache
    return out


def load_archive_split(path: Path, split: str):
    """(images uint8 NHWC, targets int64, classes) of one split of an archive."""
    folder = decode_archive(path)
    import json
    meta = json.loads((folder / "meta.json").read_text())
    for name in SPLIT_ALIASES.get(split, (split,)):
        if name in meta["splits"]:
            with np.load(folder / f"{name}.npz") as z:
                return z["images"], z["targets"], meta["classes"]
    raise DataError(f"archive {path} has no {split} split (found {sorted(meta['splits'])})")
