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


def random_conv_arch(rng, max_tokens: int = 82) -> Arch:
    """A tiny conv-stem arch of any shape the engine must handle (engine tests and the conv-stem
    benchmark): odd and even sides, 1 or 2 layers, any pooling, 1 or 3 channels, odd widths, cls
    token or not, dense or low rank."""
    while True:
        depth, layers = rng.randint(1, 2), rng.randint(1, 2)
        cls = rng.random() < 0.5
        arch = Arch(img_size=rng.choice([6, 7, 8, 9, 12, 13, 16]), patch_size=1,
                    rank_ratio=rng.choice([0.5, 1.0]), embed_dim=rng.choice([8, 12, 13, 16, 20, 24]), depth=depth,
                    num_heads=tuple(rng.randint(1, 2) for _ in range(depth)),
                    mlp_ratio=tuple(rng.choice([1.0, 2.0]) for _ in range(depth)), num_classes=rng.randint(2, 10),
                    head_dim=rng.choice([4, 8]), in_chans=rng.choice([1, 3]), cls_token=cls,
                    pool=rng.choice(["cls", "gap"]) if cls else "gap", stem="conv", stem_layers=layers,
                    stem_width=rng.choice([3, 4, 6, 8, 11]) if layers == 2 else 0,
                    stem_pool=tuple(rng.random() < 0.6 for _ in range(layers)))
        if arch.num_tokens <= max_tokens:
            return arch
