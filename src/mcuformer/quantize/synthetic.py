"""A quantised model with random weights, for engine tests and benchmarks of shapes no checkpoint
has (a 240 x 240 subnet, random archs): random float weights, calibrated on random images."""

from __future__ import annotations

import torch

from mcuformer.quantize.calibrate import calibrate
from mcuformer.quantize.model import QuantModel, build_quant_model
from mcuformer.space import Arch
from mcuformer.supernet.vit import ViT


def random_float_model(arch: Arch, seed: int = 0) -> ViT:
    """A ViT with N(0, 0.3) weights and LayerNorm gains around 1: activations of a trained model's
    spread, so that every kernel sees non-trivial values."""
    torch.manual_seed(seed)
    model = ViT(arch).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def random_quant_model(arch: Arch, seed: int = 0, calibration_images: int = 8) -> QuantModel:
    model = random_float_model(arch, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(calibration_images, arch.in_chans, arch.img_size, arch.img_size, generator=gen)
    half = max(calibration_images // 2, 1)
    q = build_quant_model(model, calibrate(model, [images[:half], images[half:]]))
    q.info = {"synthetic": True, "seed": seed}
    return q
