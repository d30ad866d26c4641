"""The compute-bound input path: a split decoded once into one uint8 tensor on the training device, and
augmented there on whole batches (no DataLoader, no per-image CPU work).

Per-sample crop, flip and random erasing are vectorised over the batch; RandAugment is
``torchvision.transforms.v2.RandAugment`` on groups of the batch (v2 draws one op per call, so each group
gets its own ops); mixup/cutmix stay in ``mix_batch``. Every draw comes from a generator seeded by the
caller, so a step's batch is a pure function of (seed, step), as on the DataLoader path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms import v2
from tqdm import tqdm

from mcuformer.data.datasets import ImageDataset
from mcuformer.data.transforms import AugmentConfig
from mcuformer.errors import ConfigError

# refuse to put more than this on a device: beyond it the DataLoader path is the right one
MAX_DEVICE_BYTES = 24 * 2**30


def resolve_crop(cfg: AugmentConfig, source_size: int | None) -> str:
    """The crop mode 'auto' stands for: pad+crop for small stored images (CIFAR), else random-resized."""
    if cfg.crop != "auto":
        return cfg.crop
    return "pad-crop" if source_size is not None and source_size <= 64 else "random-resized"


def _decode_all(dataset: ImageDataset, side: int | None, progress: bool) -> torch.Tensor:
    """(N, 3, H, W) uint8 of every image of the split; ``side`` resizes (shorter side) + centre-crops."""
    if dataset.arrays is not None and (side is None or dataset.source_size == side):
        return torch.from_numpy(np.ascontiguousarray(dataset.arrays)).permute(0, 3, 1, 2)
    if side is None:
        raise ConfigError("the device-resident input path needs images of one size: pass an archive of equal-sized "
                          "images, or set data_on_device: 'off'")
    fit = v2.Compose([v2.ToImage(), v2.Resize(side, antialias=True), v2.CenterCrop(side)])
    out = torch.empty(len(dataset), 3, side, side, dtype=torch.uint8)
    for i in tqdm(range(len(dataset)), desc="decoding to the device", unit="img", leave=False,
                  disable=not progress):
        out[i] = fit(dataset.raw(i))
    return out


class DeviceBatches:
    """Training (``train=True``) or evaluation batches of one split, resident on ``device``."""

    def __init__(self, dataset: ImageDataset, cfg: AugmentConfig, img_size: int, device: torch.device, *,
                 train: bool = True, aug_groups: int = 16, progress: bool = True):
        self.cfg, self.img_size, self.device, self.train = cfg, img_size, torch.device(device), train
        self.crop = resolve_crop(cfg, dataset.source_size) if train else "none"
        if self.crop not in ("pad-crop", "random-resized", "none"):
            raise ConfigError(f"unknown crop mode {self.crop!r}: use auto, pad-crop, random-resized or none")
        # random-resized crops read the stored image; every other mode stores it at the training size
        side = dataset.source_size if self.crop == "random-resized" else img_size
        if side is not None and len(dataset) * 3 * side * side > MAX_DEVICE_BYTES:
            raise ConfigError(f"{len(dataset)} images of {side}x{side} do not fit the device-resident input path "
                              f"(cap {MAX_DEVICE_BYTES >> 30} GiB); set data_on_device: 'off'")
        self.images = _decode_all(dataset, side, progress).to(self.device)
        self.labels = torch.as_tensor(dataset.targets, dtype=torch.int64).to(self.device)
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1) * 255.0
        self.aug_groups = max(1, aug_groups)
        self.randaugment = (v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude)
                            if train and cfg.randaugment else None)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, indices, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels of ``indices``; ``gen`` (a CPU generator) drives every
        random draw of a training batch, the global CPU generator RandAugment's op choice."""
        idx = torch.as_tensor(indices, dtype=torch.int64).to(self.device)
        x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
        if self.train:
            gen = gen if gen is not None else torch.Generator().manual_seed(0)
            x = self._crop(x, gen)
            if self.cfg.hflip:
                flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(self.device)
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            if self.randaugment is not None:
                x = torch.cat([self.randaugment(g) for g in x.tensor_split(min(self.aug_groups, x.shape[0]))])
        x = (x.float() - self.mean) / self.std
        if self.train and self.cfg.random_erasing > 0:
            x = self._erase(x, gen)
        return x, y

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        """The split in order (this rank's shard), as (images, labels) batches."""
        order = torch.arange(len(self))[rank::world_size]
        for chunk in order.split(batch_size):
            yield self.batch(chunk)

    # ---- per-sample ops, vectorised over the batch ----
    def _crop(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, s = x.shape[0], self.img_size
        if self.crop == "pad-crop":
            pad = s // 8
            padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(torch.uint8)
            oy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen).to(self.device)
            ox = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen).to(self.device)
            ar = torch.arange(s, device=self.device)
            rows, cols = (oy + ar)[:, :, None], (ox + ar)[:, None, :]
            batch = torch.arange(b, device=self.device)[:, None, None]
            return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # (b, s, s, c) -> (b, c, s, s)
        if self.crop == "random-resized":
            boxes = self._resized_boxes(b, x.shape[-1], gen).to(self.device)
            out = roi_align(x.float(), boxes, output_size=(s, s), aligned=True)
            return out.round_().clamp_(0, 255).to(torch.uint8)
        return x

    @staticmethod
    def _resized_boxes(b: int, side: int, gen: torch.Generator) -> torch.Tensor:
        """RandomResizedCrop's boxes (scale 0.08-1, ratio 3/4-4/3) as (i, x0, y0, x1, y1) rows, clamped."""
        area = side * side * (0.08 + 0.92 * torch.rand(b, generator=gen, dtype=torch.float64))
        log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(b, generator=gen,
                                                                                     dtype=torch.float64)
        r = torch.exp(log_r)
        w = torch.sqrt(area * r).clamp(1, side)
        h = torch.sqrt(area / r).clamp(1, side)
        x0 = torch.rand(b, generator=gen, dtype=torch.float64) * (side - w)
        y0 = torch.rand(b, generator=gen, dtype=torch.float64) * (side - h)
        return torch.stack([torch.arange(b, dtype=torch.float64), x0, y0, x0 + w, y0 + h], 1).float()

    def _erase(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """RandomErasing (scale 0.02-0.33, ratio 0.3-3.3, value 0) with one box per chosen sample."""
        b, _, h, w = x.shape
        on = torch.rand(b, generator=gen) < self.cfg.random_erasing
        area = h * w * (0.02 + 0.31 * torch.rand(b, generator=gen))
        r = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * torch.rand(b, generator=gen))
        eh = torch.sqrt(area * r).round().clamp(1, h)
        ew = torch.sqrt(area / r).round().clamp(1, w)
        y0 = (torch.rand(b, generator=gen) * (h - eh + 1)).floor()
        x0 = (torch.rand(b, generator=gen) * (w - ew + 1)).floor()
        ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
        box = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) &
               (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)) & on.view(-1, 1, 1))
        return x.masked_fill(box.to(self.device)[:, None], 0.0)
