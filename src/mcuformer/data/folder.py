"""ImageFolder layout (the seed's): ``root/<split>/<class>/<image>``, read with Pillow."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mcuformer.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "test"), "test": ("test", "val")}


def find_split_dir(root: Path, split: str) -> Path:
    for name in SPLIT_ALIASES.get(split, (split,)):
        if (root / name).is_dir():
            return root / name
    want = " or ".join(f"{root}/{n}/" for n in SPLIT_ALIASES.get(split, (split,)))
    raise DataError(f"no {split} split in {root}: expected {want} with one folder per class")


def scan_image_folder(split_dir: Path, classes: list[str] | None = None) -> tuple[list[tuple[str, int]], list[str]]:
    """Sorted (path, class index) pairs. ``classes`` pins the class list (val must match train)."""
    found = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"no class folders in {split_dir}")
    if classes is not None and found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise DataError(f"classes in {split_dir} differ from the training classes (extra {extra}, missing {missing})")
    classes = found
    samples = []
    for idx, name in enumerate(classes):
        files = sorted(f for f in (split_dir / name).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"class folder {split_dir / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples.extend((str(f), idx) for f in files)
    return samples, classes


def load_image(path: str) -> Image.Image:
    """Open an image as RGB; a corrupt or truncated file becomes a one-line DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb fails, quietly
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        raise DataError(f"image {path} is too large to decode (a decompression bomb?): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or unreadable image {path}: {e}") from None
