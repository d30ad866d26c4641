"""Activation ranges: a float forward of the ``ViT`` that names every tensor the int8 engine stores,
run over a few hundred training images (min/max, or a percentile of each batch averaged), each end
snapped outward to 8 significant bits."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mcuformer.errors import ConfigError
from mcuformer.quantize.settings import CALIBRATION_METHODS, DEFAULT_METHOD, DEFAULT_PERCENTILE, PERCENTILE_FLOOR
from mcuformer.supernet.vit import LowRankLinear, ViT, rel_pos_index

Record = Callable[[str, torch.Tensor], torch.Tensor]


def _linear(mod, x, name: str, record: Record):
    """A dense linear, or the low-rank pair with its int8 mid vector named ``name.mid``."""
    if isinstance(mod, LowRankLinear):
        x = record(f"{name}.mid", mod.down(x))
        return mod.up(x)
    return mod(x)


def traced_forward(model: ViT, images: torch.Tensor, record: Record) -> torch.Tensor:
    """The ViT's forward, every int8 tensor passed through ``record(name, t)`` (which may replace
    it, e.g. by its fake-quantised value). Names match ``QuantModel.act``."""
    arch = model.arch
    x = record("image", images)
    pe = model.patch_embed
    if arch.stem == "conv":
        for i, (conv, pooled) in enumerate(zip(pe.convs, pe.pools)):
            x = F.relu(conv(x))
            if i < len(pe.convs) - 1:  # the last layer's output is stem.patches
                x = record(f"stem.conv{i}.out", x)
            if pooled:
                x = F.max_pool2d(x, 3, 2, 1)
        x = x.flatten(2).transpose(1, 2)
    else:
        if any(pe.pad):
            x = F.pad(x, (pe.pad[0], pe.pad[1], pe.pad[0], pe.pad[1]))
        x = pe.proj(x).flatten(2).transpose(1, 2)
    if model.cls_token is not None:
        x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = record("stem.patches", x)
    x = record("stem.x", x + model.pos_embed)
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}"
        a = blk.attn
        b, n, _ = x.shape
        h = record(f"{p}.norm1.out", blk.norm1(x))
        qkv = _linear(a.qkv, h, f"{p}.attn.qkv", record).view(b, n, 3, a.num_heads, a.head_dim)
        q = record(f"{p}.attn.q", qkv[:, :, 0].transpose(1, 2))
        k = record(f"{p}.attn.k", qkv[:, :, 1].transpose(1, 2))
        v = record(f"{p}.attn.v", qkv[:, :, 2].transpose(1, 2))
        rp = getattr(a, "rel_pos", None)
        if rp is not None:  # the float model's relative position, step by step (RelPos2D.attention)
            dv, dh = rel_pos_index(n, arch.cls_token, rp.clip, q.device)
            dv, dh = dv.expand(*q.shape[:2], n, n), dh.expand(*q.shape[:2], n, n)
            raw = q @ k.transpose(-1, -2) + (q @ rp.key_v.t()).gather(-1, dv) + (q @ rp.key_h.t()).gather(-1, dh)
        else:
            raw = q @ k.transpose(-1, -2)
        scores = record(f"{p}.attn.scores", raw * a.head_dim ** -0.5)
        probs = record(f"{p}.attn.probs", scores.softmax(-1))
        o = probs @ v
        if rp is not None:
            rows = rp.key_v.shape[0]
            o = (o + probs.new_zeros(*probs.shape[:-1], rows).scatter_add_(-1, dv, probs) @ rp.value_v
                 + probs.new_zeros(*probs.shape[:-1], rows).scatter_add_(-1, dh, probs) @ rp.value_h)
        o = record(f"{p}.attn.o", o.transpose(1, 2).reshape(b, n, -1))
        y = record(f"{p}.attn.proj.out", _linear(a.proj, o, f"{p}.attn.proj", record))
        x = record(f"{p}.x1", x + y)
        h = record(f"{p}.norm2.out", blk.norm2(x))
        h = record(f"{p}.mlp.fc1.out", _linear(blk.mlp.fc1, h, f"{p}.mlp.fc1", record))
        h = record(f"{p}.mlp.act", F.gelu(h))
        y = record(f"{p}.mlp.fc2.out", _linear(blk.mlp.fc2, h, f"{p}.mlp.fc2", record))
        x = record(f"{p}.out", x + y)
    x = record("head.norm.out", model.norm(x))
    pooled = x[:, 0] if arch.pool == "cls" else x[:, int(arch.cls_token):].mean(dim=1)
    pooled = record("head.pooled", pooled)
    return record("logits", model.head(pooled))


class RangeObserver:
    """Per-tensor range: running min/max, or each batch's (100-p, p) percentiles averaged."""

    def __init__(self, method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE):
        if method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration method {method!r}: use minmax or percentile")
        if not PERCENTILE_FLOOR < percentile <= 100.0:
            raise ConfigError(f"percentile {percentile} must be in ({PERCENTILE_FLOOR:g}, 100]")
        self.method, self.percentile = method, percentile
        self.ranges: dict[str, list[float]] = {}
        self.batches: dict[str, int] = {}

    def __call__(self, name: str, t: torch.Tensor) -> torch.Tensor:
        flat = t.detach().float().flatten()
        if self.method == "minmax":
            lo, hi = flat.min().item(), flat.max().item()
            old = self.ranges.get(name)
            self.ranges[name] = [lo, hi] if old is None else [min(old[0], lo), max(old[1], hi)]
        else:
            if flat.numel() > 1 << 22:  # torch.quantile's size limit; a fixed-stride sample
                flat = flat[:: -(-flat.numel() // (1 << 22))]
            q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0])
            lo, hi = torch.quantile(flat, q).tolist()
            k = self.batches.get(name, 0)
            old = self.ranges.get(name, [0.0, 0.0])
            self.ranges[name] = [(old[0] * k + lo) / (k + 1), (old[1] * k + hi) / (k + 1)]
            self.batches[name] = k + 1
        return t


RANGE_BITS = 8


def snap_outward(x: float, bits: int = RANGE_BITS) -> float:
    """``x`` rounded away from zero to ``bits`` significant bits. Float32 activations differ in their last
    bits between CPUs (summation order); on this grid a range moves only when such a difference crosses
    a step (about 2**-bits relative apart), so re-quantising elsewhere almost always gives the same
    integers, at the cost of a range at most 2**(1-bits) wider."""
    if x == 0.0 or not math.isfinite(x):
        return x
    mantissa, exponent = math.frexp(abs(x))          # abs(x) = mantissa * 2**exponent, mantissa in [0.5, 1)
    snapped = math.ldexp(math.ceil(math.ldexp(mantissa, bits)), exponent - bits)
    return math.copysign(snapped, x)


@torch.no_grad()
def calibrate(model: ViT, batches, method: str = DEFAULT_METHOD,
              percentile: float = DEFAULT_PERCENTILE) -> dict[str, list[float]]:
    """{tensor name: [lo, hi]} over the float model's activations on ``batches`` (image tensors), each
    end snapped outward (``snap_outward``)."""
    observer = RangeObserver(method, percentile)
    model.eval()
    for images in batches:
        traced_forward(model, images, observer)
    return {name: [snap_outward(lo), snap_outward(hi)] for name, (lo, hi) in observer.ranges.items()}
