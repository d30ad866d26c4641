"""Supernet checkpoints: plain tensors and Python values only, so they load with
``torch.load(weights_only=True)`` (no pickle code runs), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mcuformer.data import AugmentConfig, resolve_data_path
from mcuformer.errors import CheckpointError, ConfigError, DataError
from mcuformer.space import SearchSpace
from mcuformer.train.config import TrainConfig
from mcuformer.utils.io import atomic_write

FORMAT = "mcuformer-supernet-v1"


def save_checkpoint(path, state: dict) -> Path:
    state = dict(state, format=FORMAT)
    return atomic_write(path, lambda f: torch.save(state, f), mode="wb")


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        cand = path / "checkpoint.pt"
        if not cand.exists():
            raise CheckpointError(f"no checkpoint.pt in folder {path}")
        path = cand
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a truncated / foreign / pickled file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path} (corrupt, truncated or not a weights-only file): "
                              f"{first[:200]}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mcuformer supernet checkpoint (format {FORMAT} expected)")
    for k in ("space", "model", "num_classes"):
        if k not in state:
            raise CheckpointError(f"checkpoint {path} lacks '{k}'")
    return state


def space_of(state: dict) -> SearchSpace:
    return SearchSpace.from_dict(state["space"], where="checkpoint space")


def check_same_space(state: dict, space: SearchSpace, path) -> None:
    """A checkpoint resumes or initialises only a supernet of the same shape."""
    saved = state["space"]
    mine = space.to_dict()
    diffs = [k for k in mine if k not in ("name", "evolution", "num_classes") and saved.get(k) != mine[k]]
    if diffs:
        k = diffs[0]
        raise CheckpointError(f"checkpoint {path} was trained on another search space: {k} is {saved.get(k)} "
                              f"there and {mine[k]} here")


def checkpoint_size_mb(path) -> float:
    return os.path.getsize(path) / 2**20


def data_path_of(state: dict, data_path=None) -> Path:
    """The data to evaluate or calibrate on: the given path, else the one the checkpoint was trained
    on (never silently another one), else the default CIFAR-10 archive."""
    if data_path is None and state.get("data_path"):
        data_path = state["data_path"]
        if not Path(data_path).exists():
            raise DataError(f"the checkpoint was trained on {data_path}, which is not here; pass --data-path")
    return resolve_data_path(data_path)


def augment_of(state: dict) -> AugmentConfig:
    """The checkpoint's augmentation settings (its normalisation is what evaluation must reuse)."""
    return TrainConfig.from_dict(state["config"]).augment if state.get("config") else AugmentConfig()


def check_classes(state: dict, dataset, data_path) -> None:
    if state.get("classes") and dataset.classes != state["classes"]:
        raise ConfigError(f"the classes of {data_path} differ from those the checkpoint was trained on")
