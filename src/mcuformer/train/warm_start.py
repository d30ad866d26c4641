"""Starting a training run from weights that exist: an mcuformer supernet of the same space (a warm restart
with a fresh optimizer and schedule, so training accumulates across runs and lent GPUs), or a dense pretrained
ViT (timm DeiT / AutoFormer layout, factorised by truncated SVD)."""

from __future__ import annotations

from pathlib import Path

import torch

from mcuformer.errors import CheckpointError
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.supernet.pretrained import load_dense_pretrained
from mcuformer.train.checkpoint import (FORMAT, NotASupernetCheckpoint, check_same_space, load_checkpoint, load_weights,
                                        save_checkpoint, space_of)
from mcuformer.utils.checks import input_file


@torch.no_grad()
def init_weights_from(model: SuperViT, path, space: SearchSpace) -> dict:
    """Load ``path`` into ``model``; returns a report (what it was, what was loaded, what skipped)."""
    path = input_file(path, "--init-from checkpoint", CheckpointError)  # a pipe or a device is never read
    try:
        state = load_checkpoint(path)
    except NotASupernetCheckpoint:  # a dense pretrained ViT, or its loader says why not
        report = load_dense_pretrained(model, path)
        return {"kind": f"dense pretrained ViT ({report['layout']} layout)", **report}
    check_same_space(state, space, path)
    if int(state["num_classes"]) != model.num_classes:
        raise CheckpointError(f"--init-from {path} has {state['num_classes']} classes, this run {model.num_classes}")
    load_weights(model, state, f"checkpoint {path}", "this supernet")  # also finetune's --checkpoint
    history = state.get("history") or []
    return {"kind": f"mcuformer supernet ({FORMAT}, space {state['space'].get('name')})",
            "loaded": [f"{len(state['model'])} tensors"], "skipped": [],
            "epochs_before": int(state.get("epoch", len(history))),
            "images_seen": _images_seen(state)}


def _images_seen(state: dict) -> int:
    """Images a supernet was trained on; older checkpoints lack the count (steps x batch approximates it)."""
    if "images_seen" in state:
        return int(state["images_seen"])
    return int(state.get("global_step", 0)) * int((state.get("config") or {}).get("batch_size", 0))


def report_lines(path, report: dict) -> list[str]:
    """The load report as printed by ``train --init-from``."""
    lines = [f"init-from {path}: {report['kind']}"]
    if report.get("loaded"):
        lines.append(f"  loaded: {', '.join(report['loaded'])}")
    for s in report.get("skipped", []):
        lines.append(f"  skipped: {s}")
    if "epochs_before" in report:
        lines.append(f"  trained before: {report['epochs_before']} epochs, {report['images_seen']:,} images seen; "
                     "fresh optimizer and schedule")
    return lines


def write_weights_only(checkpoint, output, *, half: bool = True) -> Path:
    """A weights-only copy of a supernet checkpoint (no optimizer state), fp16 by default: what `models/`
    holds. It evaluates, searches, quantizes and warm-starts training; it does not --resume."""
    return save_checkpoint(output, _weights_only(load_checkpoint(checkpoint), half))


def _weights_only(state: dict, half: bool = False) -> dict:
    """A checkpoint's state without what only --resume needs (optimizer, scaler, epoch stats); fp16 if ``half``."""
    keep = {k: v for k, v in state.items() if k not in ("optimizer", "scaler", "epoch_stats", "format")}
    if half:
        keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return keep


def write_relocatable(checkpoint, folder, *, half: bool = True) -> Path:
    """A supernet in the form ``models/`` holds: ``<folder>/supernet.pt`` (weights only, fp16) and, when it
    was trained without a held-out split, that split beside it as ``heldout-split.json``, named relative to
    the checkpoint so that searches find it wherever the folder goes. Training on the default CIFAR-10
    archive is recorded as such, without a path (so no absolute path is left); other data keeps its path."""
    import json

    from mcuformer.data.paths import DEFAULT_ARCHIVE, default_data_path
    from mcuformer.errors import McuformerError
    from mcuformer.train.checkpoint import DEFAULT_DATA
    from mcuformer.utils.io import read_structured, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(checkpoint)
    keep = _weights_only(state, half)
    cfg = json.loads(json.dumps(keep.get("config") or {}))
    if cfg.get("exclude_split"):
        split = read_structured(cfg["exclude_split"])
        split["source"] = "the training split of the data named in the supernet's manifest"
        write_json(folder / "heldout-split.json", split)
        cfg["exclude_split"] = "heldout-split.json"
    keep["config"] = cfg
    data = state.get("data_path")
    try:
        default = data is not None and Path(data).resolve() == default_data_path().resolve()
    except McuformerError:
        default = False
    default = default or (data is not None and Path(data).name == DEFAULT_ARCHIVE)  # the same archive elsewhere
    if default:  # the default archive is found wherever the checkpoint goes; other data keeps its path
        keep["data_path"], keep["data"] = None, DEFAULT_DATA
    return save_checkpoint(folder / "supernet.pt", keep)


def with_token_grids(checkpoint, space: SearchSpace, output) -> Path:
    """The supernet of ``checkpoint`` moved to ``space`` (``moved_to_token_grids``), written to ``output``: weights
    only, in the checkpoint's precision. Fine-tune a finer-token subnet from it (``mcuformer finetune``)."""
    return save_checkpoint(output, moved_to_token_grids(load_checkpoint(checkpoint), space, checkpoint))


@torch.no_grad()
def moved_to_token_grids(state: dict, space: SearchSpace, source) -> dict:
    """A supernet checkpoint's ``state`` moved to ``space``, a space that differs from its own only in which
    conv-stem layers may pool (e.g. ``stem_pool: [true, false]`` beside ``[true]``): dropping a max-pool leaves
    every weight in place and makes the token grid finer (8x8 -> 16x16 on CIFAR-10). Each new grid's position
    embedding is the nearest trained grid's, resized bicubically, as when a ViT is fine-tuned at a higher
    resolution. ``source`` names the checkpoint in errors."""
    import torch.nn.functional as F

    from mcuformer.supernet.supervit import conv_grids

    old = space_of(state)
    if not old.conv_stem or not space.conv_stem:
        raise CheckpointError(f"{source}: only a conv-stem supernet changes token grids (stem: {old.stem})")
    check_same_space(state, space, source, ignore=("stem_pool",))
    if not set(old.stem_pool) <= set(space.stem_pool):
        raise CheckpointError(f"{source}: the new space's stem_pool {space.stem_pool} drops the trained "
                              f"{old.stem_pool}")
    weights = dict(state["model"])
    trained = conv_grids(old)
    cls = int(old.cls_token)
    for grid in conv_grids(space):
        if grid in trained:
            continue
        nearest = min(trained, key=lambda g: (abs(g - grid), -g))
        pos = weights[f"pos_embeds.conv{nearest}"]
        tokens = pos[:, cls:].float().reshape(1, nearest, nearest, -1).permute(0, 3, 1, 2)
        tokens = F.interpolate(tokens, size=(grid, grid), mode="bicubic", align_corners=False)
        tokens = tokens.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
        weights[f"pos_embeds.conv{grid}"] = torch.cat([pos[:, :cls], tokens], dim=1)
    load_weights(SuperViT(space, int(state["num_classes"])), {"model": weights}, f"checkpoint {source}",
                 f"space {space.name}")  # every tensor has its place and shape before anything is written
    keep = _weights_only(state)
    new_grids = sorted(set(conv_grids(space)) - set(trained))
    keep.update(model=weights, space=space.to_dict(),
                regridded_from={"space": old.to_dict(), "grids": trained, "new_grids": new_grids})
    return keep


def finer_grid_space(space: SearchSpace, arch: Arch) -> SearchSpace | None:
    """``space`` with the stem pools ``arch`` uses added, when that alone makes ``arch`` a member (a subnet that
    skips a pool its supernet always took: a finer token grid, see ``with_token_grids``); else None."""
    if space.contains(arch) or not space.conv_stem or arch.stem != "conv":
        return None
    pools = sorted(set(space.stem_pool) | set(arch.stem_pool), reverse=True)
    finer = SearchSpace.from_dict({**space.to_dict(), "stem_pool": pools, "name": f"{space.name}-finer-grids"})
    return finer if finer.contains(arch) else None
