"""Did the supernet train on the images the search scores? The search ranks subnets by top-1 on a
held-out split of train; images the supernet was trained on make that score optimistic and can
favour the subnets that memorised best."""

from __future__ import annotations

from pathlib import Path

from mcuformer.data import load_subsplit, make_subsplit, open_split
from mcuformer.data.split import training_indices
from mcuformer.errors import McuformerError


def heldout_indices(data_path, subsplit=None, per_class: int = 100, seed: int = 0) -> list[int]:
    """The held-out train indices the search scores on (as ``fitness.heldout_dataset`` picks them)."""
    if subsplit:
        return load_subsplit(subsplit, open_split(data_path, "train"))
    return make_subsplit(data_path, per_class, seed=seed)["heldout"]


def trained_indices(train_config: dict, data_path) -> list[int]:
    """Train indices a supernet saw, by the trainer's rule (train/trainer.py): all of train, less its
    ``exclude_split``, then a seeded ``limit_train`` subset."""
    train = open_split(data_path, "train")
    return training_indices(train, train_config.get("exclude_split"), int(train_config.get("limit_train") or 0),
                            int(train_config.get("seed", 0)))


def heldout_overlap(train_config: dict | None, trained_on, data_path, heldout: list[int]) -> tuple[int | None, str]:
    """(number of held-out images the supernet trained on, or None when it cannot be told; a sentence)."""
    if not train_config:
        return None, "the checkpoint records no training settings"
    if trained_on is None or Path(trained_on).resolve() != Path(data_path).resolve():
        return None, f"the supernet was trained on {trained_on}, the search reads {data_path}"
    try:
        seen = set(trained_indices(train_config, data_path))
    except McuformerError as e:  # e.g. the exclude_split file has gone
        return None, f"its training split cannot be rebuilt ({e})"
    n = sum(1 for i in heldout if i in seen)
    return n, f"{n} of the {len(heldout)} held-out images were in the supernet's training set"
