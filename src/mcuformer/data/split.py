"""The search's held-out split: N images per class taken from train, seeded (like the official
subImageNet), stored as a small JSON index so that it works for archives and folders alike."""

from __future__ import annotations

import random

from mcuformer.data.datasets import ImageDataset, open_split
from mcuformer.data.paths import resolve_data_path
from mcuformer.errors import ConfigError, DataError
from mcuformer.utils.io import read_structured, write_json


def make_subsplit(data_path, per_class: int, seed: int = 0, output=None) -> dict:
    if per_class <= 0:
        raise ConfigError(f"--per-class must be positive, got {per_class}")
    data_path = resolve_data_path(data_path)
    train = open_split(data_path, "train")
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(train.targets):
        by_class.setdefault(t, []).append(i)
    rng = random.Random(seed)
    heldout = []
    for c in sorted(by_class):
        idx = by_class[c]
        if len(idx) <= per_class:
            raise DataError(f"class {train.classes[c]!r} has {len(idx)} training images; cannot hold out "
                            f"{per_class} and still train on it")
        heldout.extend(sorted(rng.sample(idx, per_class)))
    split = {"format": "mcuformer-subsplit-v1", "source": str(data_path), "num_train": len(train),
             "classes": train.classes, "per_class": per_class, "seed": seed, "heldout": heldout}
    if output is not None:
        write_json(output, split)
    return split


def load_subsplit(path, train: ImageDataset) -> list[int]:
    """The held-out indices, checked against the train split they were made from."""
    d = read_structured(path)
    if not isinstance(d, dict) or d.get("format") != "mcuformer-subsplit-v1":
        raise ConfigError(f"{path} is not a sub-split file (make one with `mcuformer sub-split`)")
    if d.get("num_train") != len(train):
        raise DataError(f"sub-split {path} was made from another dataset ({d.get('num_train')!r} train images, "
                        f"this one has {len(train)})")
    if d.get("classes") != train.classes:
        shown = ", ".join(map(str, train.classes[:4])) + (", ..." if len(train.classes) > 4 else "")
        raise DataError(f"sub-split {path} was made from another dataset (classes {str(d.get('classes'))[:80]}, "
                        f"this one has {shown})")
    heldout = d.get("heldout")
    if not isinstance(heldout, list) or not heldout or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(train) for i in heldout) \
            or len(set(heldout)) != len(heldout):
        raise ConfigError(f"sub-split {path}: 'heldout' must list distinct image indices in [0, {len(train)})")
    return list(heldout)


def complement(indices, n: int) -> list[int]:
    s = set(indices)
    return [i for i in range(n) if i not in s]


def training_indices(train: ImageDataset, exclude_split, limit_train: int, seed: int) -> list[int]:
    """The training images a run uses (one rule for every trainer, and for telling which images a run saw): all
    of ``train``, less ``exclude_split``'s held-out ones, then a ``seed``-ed subset of ``limit_train`` (0: all)."""
    keep = list(range(len(train)))
    if exclude_split:
        keep = complement(load_subsplit(exclude_split, train), len(train))
    if limit_train and limit_train < len(keep):
        keep = sorted(random.Random(seed).sample(keep, limit_train))
    return keep
