"""Top-1 / top-5 of subnets of a supernet (sharded over torchrun processes, counts summed)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mcuformer.space import Arch
from mcuformer.train.distributed import DistInfo, all_reduce_sum
from mcuformer.train.sampler import EpochSampler


@dataclass
class Accuracy:
    top1: float
    top5: float
    count: int

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
    hits = torch.zeros(len(archs), 2, dtype=torch.float64, device=info.device)
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
            topk = logits.float().topk(k, dim=1).indices
            correct = topk.eq(labels[:, None])
            hits[i, 0] += correct[:, 0].sum()
            hits[i, 1] += correct.any(dim=1).sum()
    all_reduce_sum(hits, info)
    all_reduce_sum(seen, info)
    model.train(was_training)
    n = max(int(seen.item()), 1)
    return [Accuracy(100.0 * h[0].item() / n, 100.0 * h[1].item() / n, int(seen.item())) for h in hits]
