"""Supernet checkpoints: plain tensors and Python values only, so they load with
``torch.load(weights_only=True)`` (no pickle code runs), written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mcuformer.data import AugmentConfig, resolve_data_path
from mcuformer.errors import CheckpointError, ConfigError, DataError, McuformerError
from mcuformer.space import SearchSpace
from mcuformer.train.config import TrainConfig
from mcuformer.utils.checks import input_file, torch_load_problem
from mcuformer.utils.io import atomic_write

FORMAT = "mcuformer-supernet-v1"
DEFAULT_DATA = "default CIFAR-10 archive"  # a relocatable checkpoint's "data" when it trained on the default data


def save_checkpoint(path, state: dict) -> Path:
    state = dict(state, format=FORMAT)

    def write(f):
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's zip writer reports a full disk as a RuntimeError
            raise OSError(f"cannot write checkpoint ({str(e).strip().splitlines()[0][:160]})") from None
    return atomic_write(path, write, mode="wb")


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        cand = path / "checkpoint.pt"
        if not cand.exists():
            raise CheckpointError(f"no checkpoint.pt in folder {path}")
        path = cand
    input_file(path, "checkpoint", CheckpointError)  # a pipe or a device is refused, never read
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a truncated / foreign / pickled file
        raise CheckpointError(f"cannot load checkpoint {path} (corrupt, truncated or not a weights-only file): "
                              f"{torch_load_problem(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mcuformer supernet checkpoint (format {FORMAT} expected)")
    for k in ("space", "model", "num_classes"):
        if k not in state:
            raise CheckpointError(f"checkpoint {path} lacks '{k}'")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict")
    if isinstance(state["num_classes"], bool) or not isinstance(state["num_classes"], int) or state["num_classes"] < 1:
        raise CheckpointError(f"checkpoint {path}: num_classes must be a positive integer, got {state['num_classes']!r}")
    for name, t in state["model"].items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: model entry {name!r} is not a tensor")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint {path}: weights {name} hold NaN or infinite values")
    _locate_split(state, path)
    return state


def _locate_split(state: dict, path: Path) -> None:
    """A relocatable checkpoint (models/) names the held-out split it was trained without relative to its
    own folder: point the in-memory settings at that file."""
    cfg = state.get("config")
    name = cfg.get("exclude_split") if isinstance(cfg, dict) else None
    if isinstance(name, str) and name and not Path(name).is_absolute() and (path.parent / name).is_file():
        cfg["exclude_split"] = str(path.parent / name)


def recorded_split(ckpt, state: dict) -> Path | None:
    """The held-out split a checkpoint's supernet was trained without (its ``exclude_split``), as
    ``load_checkpoint`` located it; a name it could not find is taken relative to the checkpoint's folder, so
    an error can name the file that is missing."""
    cfg = state.get("config")
    name = cfg.get("exclude_split") if isinstance(cfg, dict) else None
    if not isinstance(name, str) or not name:
        return None
    p = Path(name)
    if p.is_absolute() or p.is_file():
        return p
    ckpt = Path(ckpt)
    return (ckpt if ckpt.is_dir() else ckpt.parent) / p


def trained_on(state: dict) -> Path | None:
    """The data a checkpoint was trained on: its recorded path, the default CIFAR-10 archive for a
    relocatable checkpoint that says so, else None (unknown)."""
    if state.get("data_path"):
        return Path(state["data_path"])
    if state.get("data") == DEFAULT_DATA:
        from mcuformer.data.paths import default_data_path
        try:
            return default_data_path()
        except McuformerError:
            return None
    return None



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
