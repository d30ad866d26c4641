"""Datasets over an ImageFolder root or an ImageFolder archive, with deterministic per-sample
augmentation: sample i of epoch e is transformed under a seed derived from (seed, epoch, i), so a
resumed run sees exactly the augmentations the uninterrupted run would have seen."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mcuformer.data.archive import is_archive, load_archive_split
from mcuformer.data.folder import find_split_dir, load_image, scan_image_folder
from mcuformer.errors import DataError


class ImageDataset(Dataset):
    """Images from decoded arrays (an archive) or from files (a folder), with a transform."""

    def __init__(self, classes: list[str], targets: Sequence[int], *, arrays: np.ndarray | None = None,
                 files: Sequence[str] | None = None, transform: Callable | None = None):
        self.classes, self.targets = classes, list(int(t) for t in targets)
        self.arrays, self.files, self.transform = arrays, files, transform
        self.seed, self.epoch = None, 0

    @property
    def source_size(self) -> int | None:
        """Side of the stored square images, when all are known to share it."""
        if self.arrays is not None and self.arrays.shape[1] == self.arrays.shape[2]:
            return int(self.arrays.shape[1])
        return None

    def __len__(self):
        return len(self.targets)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def raw(self, i: int):
        """The untransformed image: an HWC uint8 tensor (arrays) or a PIL image (files)."""
        if self.arrays is not None:
            return torch.from_numpy(self.arrays[i]).permute(2, 0, 1)
        return load_image(self.files[i])

    def __getitem__(self, i: int):
        img = self.raw(i)
        if self.transform is not None:
            if self.seed is not None:
                # only the CPU generator: torch.manual_seed would also seed CUDA, 10x slower per sample
                torch.random.default_generator.manual_seed(sample_seed(self.seed, self.epoch, i))
            img = self.transform(img)
        return img, self.targets[i]

    def subset(self, indices: Sequence[int]) -> "ImageDataset":
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDataset(self.classes, [self.targets[i] for i in idx],
                            arrays=self.arrays[idx] if self.arrays is not None else None,
                            files=[self.files[i] for i in idx] if self.files is not None else None,
                            transform=self.transform)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest(), "little")


def spread(n: int, k: int) -> list[int]:
    """``k`` indices evenly spaced over ``n`` samples: a class-balanced subset of a class-sorted split."""
    if k >= n:
        return list(range(n))
    return [int(i * n / k) for i in range(k)]


def open_split(data_path: Path, split: str, classes: list[str] | None = None) -> ImageDataset:
    """The ``train`` or ``val`` (alias ``test``) split of an ImageFolder root or archive, untransformed."""
    if is_archive(data_path):
        images, targets, found = load_archive_split(data_path, split)
        if classes is not None and found != classes:
            raise DataError(f"classes of {split} in {data_path} differ from the training classes")
        return ImageDataset(found, targets, arrays=images)
    if not data_path.is_dir():
        raise DataError(f"data path is neither a folder nor a .tar/.tar.gz archive: {data_path}")
    samples, found = scan_image_folder(find_split_dir(data_path, split), classes)
    return ImageDataset(found, [t for _, t in samples], files=[p for p, _ in samples])
