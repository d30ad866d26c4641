"""Supernet checkpoints: plain tensors and Python values only, so they load with
``torch.load(weights_only=True)`` (no pickle code runs), written atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from mcuformer.data import AugmentConfig, resolve_data_path
from mcuformer.errors import CheckpointError, ConfigError, DataError, McuformerError
from mcuformer.space import SearchSpace
from mcuformer.train.config import TrainConfig
from mcuformer.utils.checks import input_file, is_finite_number, torch_load_problem
from mcuformer.utils.io import atomic_write

FORMAT = "mcuformer-supernet-v1"
COUNTERS = ("epoch", "step", "global_step", "images_seen", "planned_epochs")  # where a run stopped: whole numbers
EPOCH_STATS = ("loss_sum", "steps", "seconds", "images")  # the running sums of an epoch stopped part-way
DEFAULT_DATA = "default CIFAR-10 archive"  # a relocatable checkpoint's "data" when it trained on the default data


def save_checkpoint(path, state: dict) -> Path:
    state = dict(state, format=FORMAT)

    def write(f):
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch's zip writer reports a full disk as a RuntimeError
            raise OSError(f"cannot write checkpoint ({str(e).strip().splitlines()[0][:160]})") from None
    return atomic_write(path, write, mode="wb")


class NotASupernetCheckpoint(CheckpointError):
    """A file that torch cannot load weights-only, or that is not an mcuformer supernet checkpoint at all
    (``--init-from`` then reads it as a dense pretrained ViT)."""


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
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" before it refuses a plain pickle
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a truncated / foreign / pickled file
        raise NotASupernetCheckpoint(f"cannot load checkpoint {path} (corrupt, truncated or not a weights-only "
                                     f"file): {torch_load_problem(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NotASupernetCheckpoint(f"{path} is not an mcuformer supernet checkpoint (format {FORMAT} expected)")
    for k in ("space", "model", "num_classes"):
        if k not in state:
            raise CheckpointError(f"checkpoint {path} lacks '{k}'")
    if not isinstance(state["space"], dict):
        raise CheckpointError(f"checkpoint {path}: 'space' is not a mapping")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state dict")
    if isinstance(state["num_classes"], bool) or not isinstance(state["num_classes"], int) or state["num_classes"] < 1:
        raise CheckpointError(f"checkpoint {path}: num_classes must be a positive integer, "
                              f"got {_brief(state['num_classes'])}")
    for name, t in state["model"].items():
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"checkpoint {path}: model entry {name!r} is not a tensor")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"checkpoint {path}: weights {name} hold NaN or infinite values")
    if state.get("data_path") is not None and not isinstance(state["data_path"], str):
        raise CheckpointError(f"checkpoint {path}: 'data_path' must be a path, got {_brief(state['data_path'])}")
    _check_progress(state, path)
    _check_settings(state, path)
    _locate_split(state, path)
    return state


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_progress(state: dict, path: Path) -> None:
    """Where the run stopped and what it recorded (what --resume continues, what --init-from reports)."""
    for k in COUNTERS:
        v = state.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(f"checkpoint {path}: '{k}' must be a whole number, 0 or more; got {_brief(v)}")
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise CheckpointError(f"checkpoint {path}: 'history' must be a list of epoch records, got {_brief(history)}")
    stats = state.get("epoch_stats", dict.fromkeys(EPOCH_STATS, 0))
    if not isinstance(stats, dict) or sorted(stats) != sorted(EPOCH_STATS) or not all(map(is_finite_number, stats.values())):
        raise CheckpointError(f"checkpoint {path}: 'epoch_stats' must map {', '.join(EPOCH_STATS)} to numbers, "
                              f"got {_brief(stats)}")


def _check_settings(state: dict, path: Path) -> None:
    """The training settings a checkpoint records (its augmentation and normalisation are reused)."""
    if state.get("config") is None:
        return
    try:
        TrainConfig.from_dict(state["config"], where="its training settings")
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None


def weights_mismatch(model_weights: dict, weights: dict) -> str | None:
    """How ``weights`` fail to fit a model whose state dict is ``model_weights``: the first key missing,
    unexpected, or of another shape or kind of value (and how many more), or None when they fit."""
    problems = [f"key {_brief(k)} is not a parameter name" for k in weights if not isinstance(k, str)]
    problems += [f"missing {k}" for k in model_weights if k not in weights]
    problems += [f"unexpected {k}" for k in weights if isinstance(k, str) and k not in model_weights]
    for k, mine in model_weights.items():
        theirs = weights.get(k)
        if theirs is None:
            continue
        if theirs.shape != mine.shape:
            problems.append(f"{k} has shape {list(theirs.shape)}, the model's {list(mine.shape)}")
        elif theirs.is_complex() or theirs.is_floating_point() != mine.is_floating_point():
            problems.append(f"{k} holds {theirs.dtype} values, the model's {mine.dtype}")
    if not problems:
        return None
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def load_weights(model: torch.nn.Module, state: dict, source: str, target: str = "its space") -> None:
    """Load a checkpoint's weights into ``model``; weights that do not fit it are a CheckpointError that
    names the first key at fault: "<source> does not match <target>: missing blocks.2.norm1.weight"."""
    problem = weights_mismatch(model.state_dict(), state["model"])
    if problem is None:
        try:
            model.load_state_dict(state["model"])  # fp16 weights-only files are cast to the model's fp32
        except (RuntimeError, ValueError) as e:  # what the comparison above does not foresee
            problem = " ".join(str(e).split())[:200]
    if problem is not None:
        raise CheckpointError(f"{source} does not match {target}: {problem}")


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


def check_same_space(state: dict, space: SearchSpace, path, *, ignore: tuple[str, ...] = ()) -> None:
    """A checkpoint resumes or initialises only a supernet of the same shape (up to the ``ignore`` keys)."""
    saved = state["space"]
    mine = space.to_dict()
    skip = ("name", "evolution", "num_classes", *ignore)
    diffs = [k for k in mine if k not in skip and saved.get(k) != mine[k]]
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
