"""Per-tensor error of the int8 model: cosine similarity of every int8 tensor (dequantised) with the
float model's tensor on the same images, in execution order."""

from __future__ import annotations

import numpy as np
import torch

from mcuformer.quantize import fakequant
from mcuformer.quantize.calibrate import traced_forward
from mcuformer.quantize.model import QuantModel


def cosine_report(q: QuantModel, model, images: torch.Tensor) -> list[dict]:
    """[{tensor, cosine, rel_error}] for every tensor both paths produce (float on the float path's own
    inputs, so errors accumulate as on the device)."""
    floats: dict[str, np.ndarray] = {}

    def keep(name, t):
        floats[name] = t.detach().double().numpy()
        return t

    with torch.no_grad():
        traced_forward(model, images, keep)
    ints: dict[str, np.ndarray] = {}
    fakequant.forward(q, q.quantize_image(images), ints)
    ints["image"] = np.moveaxis(q.quantize_image(images), -1, 1)
    for name in [n for n in ints if n.startswith("stem.conv")]:  # conv-stem maps: HWC -> the float CHW
        ints[name] = np.moveaxis(ints[name], -1, 1)
    rows = []
    for name, f in floats.items():
        if name not in ints or name not in q.act:
            continue
        scale, zero = q.act[name]
        d = (ints[name].astype(np.float64) - zero) * scale
        f, d = f.ravel(), d.ravel()
        cos = float(f @ d / max(np.linalg.norm(f) * np.linalg.norm(d), 1e-30))
        rows.append({"tensor": name, "cosine": cos,
                     "rel_error": float(np.linalg.norm(d - f) / max(np.linalg.norm(f), 1e-30))})
    return rows
