"""The vectorised integer forward: whole batches through the same integer kernels (``intops``) as
the token-by-token reference, for fast int8 accuracy. Every tensor is the int8 the engine stores."""

from __future__ import annotations

import numpy as np

from mcuformer.quantize import intops
from mcuformer.quantize.model import QuantModel, conv_stem_tensor
from mcuformer.space import patch_padding


def factor(q: QuantModel, name: str, x: np.ndarray, rows=slice(None)) -> np.ndarray:
    """One int8 matmul (``rows``: only these output channels, as the head-wise kernels compute)."""
    p = q.params
    return intops.linear(x, p[f"{name}.weight"][rows], p[f"{name}.bias"][rows], p[f"{name}.multiplier"][rows],
                         p[f"{name}.shift"][rows], q.consts[name]["zero_point"])


def linear_chain(q: QuantModel, name: str, x: np.ndarray, record=None) -> np.ndarray:
    """A dense linear, or its low-rank down/up pair (the mid vector is tensor ``name.mid``)."""
    if f"{name}.down.weight" in q.params:
        mid = factor(q, f"{name}.down", x)
        if record is not None:
            record[f"{name}.mid"] = mid
        return factor(q, f"{name}.up", mid)
    return factor(q, name, x)


def layernorm(q: QuantModel, name: str, x: np.ndarray, out: str) -> np.ndarray:
    c = q.consts[name]
    return intops.layernorm(x, q.params[f"{name}.weight"], q.params[f"{name}.bias"], c["multiplier"], c["shift"],
                            q.act[out][1])


def add(q: QuantModel, name: str, a: np.ndarray, an: str, b: np.ndarray, bn: str, out: str) -> np.ndarray:
    return intops.add(a, q.act[an][1], b, q.act[bn][1], q.consts[name], q.act[out][1])


def rel_pos(q: QuantModel, p: str, rows=slice(None)):
    """((key table, rows), (value table, rows)) of block p's relative position for query rows ``rows``
    (the ``rel`` arguments of ``intops.matmul_qk``/``matmul_av``), or (None, None) without it."""
    arch = q.arch
    if not arch.rel_pos:
        return None, None
    dv, dh = intops.rel_pos_rows(arch.num_tokens, arch.cls_token, arch.rel_pos)
    idx = (dv[rows], dh[rows])
    return (q.params[f"{p}.attn.rel_pos.key"], idx), (q.params[f"{p}.attn.rel_pos.value"], idx)


def patches(image: np.ndarray, p: int, pad: tuple[int, int]) -> np.ndarray:
    """int8 (..., H, W, C) -> (..., g*g, p*p*C): each patch's pixels in HWC order, zero padding."""
    *lead, h, _, c = image.shape
    if any(pad):
        image = np.pad(image, [(0, 0)] * len(lead) + [pad, pad, (0, 0)])
    g = image.shape[-2] // p
    x = image.reshape(*lead, g, p, g, p, c)
    x = np.moveaxis(x, -3, -4)  # (..., gy, gx, py, px, c)
    return x.reshape(*lead, g * g, p * p * c)


def conv_layer(q: QuantModel, x: np.ndarray, layer: int) -> np.ndarray:
    """A conv-stem layer's 3x3 conv + ReLU on int8 HWC maps."""
    name, p = f"stem.conv{layer}", q.params
    inp = "image" if layer == 0 else conv_stem_tensor(q.arch, layer - 1)
    return intops.conv3x3(x, p[f"{name}.weight"], p[f"{name}.bias"], p[f"{name}.multiplier"], p[f"{name}.shift"],
                          q.act[inp][1], q.consts[name]["zero_point"])


def conv_stem(q: QuantModel, x: np.ndarray, layer: int) -> np.ndarray:
    """One conv-stem layer with its max-pool, if it has one."""
    x = conv_layer(q, x, layer)
    return intops.maxpool3x3s2(x) if q.arch.stem_pool[layer] else x


def stem_tokens(q: QuantModel, image: np.ndarray, record: dict | None = None) -> np.ndarray:
    """The patch tokens (..., grid^2, E) of int8 images (..., H, W, C), without the cls row."""
    arch = q.arch
    if arch.stem == "conv":
        x = image
        for i in range(arch.stem_layers):
            x = conv_layer(q, x, i)
            if record is not None and i < arch.stem_layers - 1:  # before the pool, as calibration names it
                record[conv_stem_tensor(arch, i)] = x
            x = intops.maxpool3x3s2(x) if arch.stem_pool[i] else x
        return x.reshape(*x.shape[:-3], -1, x.shape[-1])
    pad = patch_padding(arch.img_size, arch.patch_size)
    return linear_chain(q, "patch_embed.proj", patches(image, arch.patch_size, pad))


def forward(q: QuantModel, image: np.ndarray, record: dict | None = None) -> np.ndarray:
    """int8 logits (B, classes) of int8 images (B, H, W, C); ``record`` receives every int8 tensor."""
    arch, prm = q.arch, q.params
    rec = record if record is not None else {}
    t = stem_tokens(q, image, rec)
    if arch.cls_token:
        t = np.concatenate([np.broadcast_to(prm["cls_token"], (t.shape[0], 1, t.shape[-1])), t], axis=1)
    rec["stem.patches"] = t
    x = rec["stem.x"] = add(q, "stem.pos_add", t, "stem.patches", prm["pos_embed"], "stem.pos_embed", "stem.x")
    xn = "stem.x"
    for i in range(arch.depth):
        x, xn = block(q, f"blocks.{i}", x, xn, rec)
    h = rec["head.norm.out"] = layernorm(q, "norm", x, "head.norm.out")
    if arch.pool == "cls":
        pooled = h[:, 0]
    else:
        c = q.consts["head.pool"]
        pooled = intops.mean_pool(h[:, int(arch.cls_token):], q.act["head.norm.out"][1], c["multiplier"],
                                  c["shift"], q.act["head.pooled"][1])
    rec["head.pooled"] = pooled
    logits = rec["logits"] = linear_chain(q, "head", pooled)
    return logits


def block(q: QuantModel, p: str, x: np.ndarray, xn: str, rec: dict) -> tuple[np.ndarray, str]:
    heads, hd = q.arch.num_heads[int(p.split(".")[1])], q.arch.head_dim
    b, n, _ = x.shape
    h = rec[f"{p}.norm1.out"] = layernorm(q, f"{p}.norm1", x, f"{p}.norm1.out")
    qkv = linear_chain(q, f"{p}.attn.qkv", h, rec).reshape(b, n, 3, heads, hd)
    qh, kh, vh = (np.moveaxis(qkv[:, :, j], 1, 2) for j in range(3))  # (B, H, N, hd)
    rec[f"{p}.attn.q"], rec[f"{p}.attn.k"], rec[f"{p}.attn.v"] = qh, kh, vh
    c = q.consts[f"{p}.attn.qk"]
    rel_k, rel_v = rel_pos(q, p)
    s = rec[f"{p}.attn.scores"] = intops.matmul_qk(qh, kh, c["multiplier"], c["shift"], q.act[f"{p}.attn.scores"][1],
                                                   rel_k)
    pr = rec[f"{p}.attn.probs"] = intops.softmax(s, q.params[f"{p}.attn.exp_lut"])
    c = q.consts[f"{p}.attn.av"]
    o = intops.matmul_av(pr, vh, c["multiplier"], c["shift"], q.act[f"{p}.attn.o"][1], rel_v)
    o = rec[f"{p}.attn.o"] = np.moveaxis(o, 1, 2).reshape(b, n, heads * hd)
    y = rec[f"{p}.attn.proj.out"] = linear_chain(q, f"{p}.attn.proj", o, rec)
    x1 = rec[f"{p}.x1"] = add(q, f"{p}.add1", x, xn, y, f"{p}.attn.proj.out", f"{p}.x1")
    h = rec[f"{p}.norm2.out"] = layernorm(q, f"{p}.norm2", x1, f"{p}.norm2.out")
    h = rec[f"{p}.mlp.fc1.out"] = linear_chain(q, f"{p}.mlp.fc1", h, rec)
    h = rec[f"{p}.mlp.act"] = intops.table_lookup(h, q.params[f"{p}.mlp.gelu_lut"])
    y = rec[f"{p}.mlp.fc2.out"] = linear_chain(q, f"{p}.mlp.fc2", h, rec)
    out = rec[f"{p}.out"] = add(q, f"{p}.add2", x1, f"{p}.x1", y, f"{p}.mlp.fc2.out", f"{p}.out")
    return out, f"{p}.out"
