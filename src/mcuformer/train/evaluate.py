"""Top-1 / top-5 (and the mean log-likelihood of the true class) of subnets of a supernet (sharded over
torchrun processes, sums reduced)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mcuformer.data import build_eval_transform, load_subsplit, open_split
from mcuformer.data.datasets import spread
from mcuformer.errors import ConfigError, SpaceError
from mcuformer.space import Arch
from mcuformer.space.specs import resolve_archs
from mcuformer.supernet import SuperViT
from mcuformer.train.checkpoint import (augment_of, check_classes, data_path_of, load_checkpoint, load_weights,
                                        space_of)
from mcuformer.train.distributed import DistInfo, all_reduce_sum, cleanup, init_distributed
from mcuformer.train.sampler import EpochSampler


@dataclass
class Accuracy:
    top1: float
    top5: float
    count: int
    loglik: float = float("nan")  # mean log p(true class): a smoother score than top-1 on few images

    def to_dict(self) -> dict:
        return {"top1": round(self.top1, 4), "top5": round(self.top5, 4), "count": self.count}


def autocast_for(device: torch.device, amp: str):
    """The autocast context for a device and an amp setting ('auto' = bf16 on GPU, off on CPU)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_eval_loader(dataset, info: DistInfo, batch_size: int, workers: int) -> DataLoader:
    sampler = EpochSampler(len(dataset), shuffle=False, rank=info.rank, world_size=info.world_size, pad=False)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=info.device.type == "cuda", persistent_workers=False)


@torch.no_grad()
def evaluate_archs(model, archs: list[Arch], loader: DataLoader, info: DistInfo, amp: str = "auto",
                   channels_last: bool = False, progress: bool = True) -> list[Accuracy]:
    """Accuracy of each arch on the loader's data. ``model`` is a SuperViT (not DDP-wrapped).

    Every batch is read once and run through all archs, so a list of archs costs one pass of I/O.
    """
    was_training = model.training
    model.eval()
    k = min(5, model.num_classes)
    hits = torch.zeros(len(archs), 3, dtype=torch.float64, device=info.device)  # top-1, top-5, sum of log p
    seen = torch.zeros(1, dtype=torch.float64, device=info.device)
    bar = tqdm(loader, desc="evaluate", leave=False, disable=not (progress and info.is_main), unit="batch")
    for images, labels in bar:
        images = images.to(info.device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(info.device, non_blocking=True)
        seen += labels.numel()
        for i, arch in enumerate(archs):
            model.set_active_subnet(arch)
            with autocast_for(info.device, amp):
                logits = model(images)
            logits = logits.float()
            correct = logits.topk(k, dim=1).indices.eq(labels[:, None])
            hits[i, 0] += correct[:, 0].sum()
            hits[i, 1] += correct.any(dim=1).sum()
            hits[i, 2] += torch.log_softmax(logits, dim=1).gather(1, labels[:, None]).sum()
    all_reduce_sum(hits, info)
    all_reduce_sum(seen, info)
    model.train(was_training)
    n = max(int(seen.item()), 1)
    return [Accuracy(100.0 * h[0].item() / n, 100.0 * h[1].item() / n, int(seen.item()), h[2].item() / n)
            for h in hits]


def evaluate_checkpoint(checkpoint, archs: list[str] | list[Arch], *, data_path=None, split: str = "val",
                        subsplit=None, batch_size: int = 256, workers: int = 4, limit: int = 0,
                        amp: str = "auto", device: str = "auto", progress: bool = True) -> list[dict] | None:
    """Top-1/top-5 of each arch (files, Arch objects, or 'largest'/'smallest'/'random:N') of a supernet.

    Runs sharded under torchrun; returns the rows on rank 0 and None on the others.
    """
    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    resolved = resolve_archs(archs, space, num_classes)
    for name, arch in resolved:
        space.check(arch)
        if arch.num_classes != num_classes:
            raise SpaceError(f"{name}: arch has {arch.num_classes} classes, the checkpoint {num_classes}")
    data_path = data_path_of(state, data_path)
    if split == "heldout":
        if not subsplit:
            raise ConfigError("--split heldout needs --subsplit SPLIT.json (see `mcuformer sub-split`)")
        ds = open_split(data_path, "train")
        ds = ds.subset(load_subsplit(subsplit, ds))
    else:
        ds = open_split(data_path, split)
    check_classes(state, ds, data_path)
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    ds.transform = build_eval_transform(augment_of(state), space.img_size, ds.source_size)

    info = init_distributed(device)
    try:
        model = SuperViT(space, num_classes)
        load_weights(model, state, f"checkpoint {checkpoint}")
        model.to(info.device)
        loader = make_eval_loader(ds, info, batch_size, workers)
        accs = evaluate_archs(model, [a for _, a in resolved], loader, info, amp, progress=progress)
    finally:
        cleanup(info)
    if not info.is_main:
        return None
    return [{"name": name, "arch": arch.to_dict(), "params": arch.num_params(), "summary": arch.short(),
             **acc.to_dict()} for (name, arch), acc in zip(resolved, accs)]
