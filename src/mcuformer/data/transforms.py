"""Train and eval transforms (torchvision v2), switchable from the training config, plus batch-level
mixup/cutmix with label smoothing driven by an explicit generator (so a resumed run repeats them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision.transforms import v2

CIFAR_MEAN, CIFAR_STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)  # measured on the JPEG tarball
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    crop: str = "auto"            # "auto" | "random-resized" | "pad-crop" | "none"
    hflip: bool = True
    randaugment: bool = True
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erasing: float = 0.25
    mixup: float = 0.8            # Beta(alpha, alpha); 0 disables
    cutmix: float = 1.0           # Beta(alpha, alpha); 0 disables
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD


def build_train_transform(cfg: AugmentConfig, img_size: int, source_size: int | None) -> v2.Compose:
    """``source_size`` is the stored image side when known (arrays), None for files of any size."""
    from torchvision.transforms import v2  # here, not at the top: importing torchvision takes 1.5 s

    crop = cfg.crop
    if crop == "auto":  # small stored images (CIFAR at native size) use pad+crop, others random-resized
        crop = "pad-crop" if source_size is not None and source_size <= 64 else "random-resized"
    t = [v2.ToImage()]
    if crop == "random-resized":
        t.append(v2.RandomResizedCrop(img_size, antialias=True))
    else:
        if source_size != img_size:
            t += [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
        if crop == "pad-crop":
            t.append(v2.RandomCrop(img_size, padding=img_size // 8, padding_mode="reflect"))
    if cfg.hflip:
        t.append(v2.RandomHorizontalFlip())
    if cfg.randaugment:
        t.append(v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude))
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    if cfg.random_erasing > 0:
        t.append(v2.RandomErasing(cfg.random_erasing, value=0))
    return v2.Compose(t)


def build_eval_transform(cfg: AugmentConfig, img_size: int, source_size: int | None) -> v2.Compose:
    from torchvision.transforms import v2

    t = [v2.ToImage()]
    if source_size != img_size:
        if source_size is None or source_size > img_size:  # ImageNet style: resize to img/0.875, centre crop
            t.append(v2.Resize(int(round(img_size / 0.875)), antialias=True))
        else:
            t.append(v2.Resize(img_size, antialias=True))
        t.append(v2.CenterCrop(img_size))
    t += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(cfg.mean, cfg.std)]
    return v2.Compose(t)


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    t = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return t.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def mix_batch(images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: AugmentConfig,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one of them per batch) with smoothed soft targets. ``gen`` is a CPU generator."""
    targets = soft_targets(labels, num_classes, cfg.label_smoothing)
    use_mix, use_cut = cfg.mixup > 0, cfg.cutmix > 0
    if not (use_mix or use_cut):
        return images, targets
    cut = use_cut and (not use_mix or torch.rand((), generator=gen).item() < cfg.mixup_switch_prob)
    alpha = cfg.cutmix if cut else cfg.mixup
    lam = _beta(alpha, gen)
    images = images.clone()
    if cut:
        h, w = images.shape[-2:]
        ratio = (1.0 - lam) ** 0.5
        ch, cw = int(h * ratio), int(w * ratio)
        cy = int(torch.randint(h, (), generator=gen))
        cx = int(torch.randint(w, (), generator=gen))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        images[..., y0:y1, x0:x1] = images.flip(0)[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)  # the area actually pasted
    else:
        images.mul_(lam).add_(images.flip(0), alpha=1.0 - lam)
    return images, targets * lam + targets.flip(0) * (1.0 - lam)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """Beta(alpha, alpha) from two Gamma draws of the explicit generator."""
    a = torch._standard_gamma(torch.tensor([alpha, alpha], dtype=torch.float64), generator=gen)
    return float(a[0] / a.sum())
