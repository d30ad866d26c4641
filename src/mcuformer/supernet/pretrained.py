"""Initialise a supernet from a dense pretrained ViT read from a local file (timm DeiT layout or the
AutoFormer supernet layout), factorising every block linear by truncated SVD (as the official
``supernet_load_init_weight.py`` does, with two factors instead of three).

Where the pretrained network is narrower or shallower than the supernet, only the leading part is
overwritten; the rest keeps its random initialisation. Patch kernels and position embeddings are
resized when the patch size or token grid differs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mcuformer.errors import CheckpointError
from mcuformer.supernet.elastic import SuperLinear, copy_leading
from mcuformer.supernet.official import dense_view, is_official_three_factor, load_factors, load_rel_pos_tables
from mcuformer.supernet.supervit import SuperViT
from mcuformer.utils.checks import input_file, torch_load_problem

# our name -> (timm name, AutoFormer name); '{i}' is the block index
LAYOUTS = {
    "norm1": ("blocks.{i}.norm1", "blocks.{i}.attn_layer_norm"),
    "qkv": ("blocks.{i}.attn.qkv", "blocks.{i}.attn.qkv"),
    "proj": ("blocks.{i}.attn.proj", "blocks.{i}.attn.proj"),
    "norm2": ("blocks.{i}.norm2", "blocks.{i}.ffn_layer_norm"),
    "fc1": ("blocks.{i}.mlp.fc1", "blocks.{i}.fc1"),
    "fc2": ("blocks.{i}.mlp.fc2", "blocks.{i}.fc2"),
    "patch": ("patch_embed.proj", "patch_embed_super.proj"),
}


def read_state_dict(path) -> dict[str, torch.Tensor]:
    path = input_file(path, "pretrained checkpoint", CheckpointError)  # a pipe or a device is never read
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot load pretrained checkpoint {path} as weights-only: "
                              f"{torch_load_problem(e)}") from None
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _layout(state) -> int:
    if "patch_embed.proj.weight" in state:
        return 0
    if "patch_embed_super.proj.weight" in state:
        return 1
    raise CheckpointError("unrecognised pretrained layout: expected timm ViT/DeiT keys (patch_embed.proj.weight) "
                          "or AutoFormer keys (patch_embed_super.proj.weight)")


def _dense(layer: SuperLinear) -> torch.Tensor:
    """The layer's current (out_max x in_max) matrix, so untouched regions keep their initialisation."""
    if layer.middle:
        return (layer.up.double() @ layer.mid.double() @ layer.down.double()).float()
    if layer.low_rank:
        return (layer.up.double() @ layer.down.double()).float()
    return layer.weight.detach().clone()


@torch.no_grad()
def load_dense_pretrained(model: SuperViT, path) -> dict:
    """Load a dense pretrained ViT (timm, AutoFormer or official MCUFormer layout) into ``model``; returns a
    report of what was loaded and skipped."""
    state = read_state_dict(path)
    if is_official_three_factor(state):
        report = _load_dense(model, dense_view(state, path), path)
        report["layout"] = "mcuformer-official"
        load_factors(model, state, path, report)
        return report
    return _load_dense(model, state, path)


def _load_dense(model: SuperViT, state: dict, path) -> dict:
    lay = _layout(state)
    space = model.space
    name = lambda key, i=0: LAYOUTS[key][lay].format(i=i)  # noqa: E731
    depth = 0
    while f"{name('qkv', depth)}.weight" in state:
        depth += 1
    if depth == 0:
        raise CheckpointError(f"{path}: no transformer blocks found")
    hd = space.head_dim
    loaded, skipped = [], []
    for i in range(min(depth, space.super_depth)):
        blk = model.blocks[i]
        for ours, ln in (("norm1", blk.norm1), ("norm2", blk.norm2)):
            copy_leading(ln.weight, state[f"{name(ours, i)}.weight"])
            copy_leading(ln.bias, state[f"{name(ours, i)}.bias"])
        # qkv: rows [q | k | v] (timm) or interleaved q0 k0 v0 q1 ... (AutoFormer's change_qkv layout).
        # AutoFormer slices its bias in stored order, not interleaved: the full-head subnet reads it as
        # [q | k | v], and so do we (docs/official-differences.md)
        w, b = state[f"{name('qkv', i)}.weight"], state.get(f"{name('qkv', i)}.bias")
        d_pre = w.shape[0] // 3
        w3 = w.view(d_pre, 3, -1).transpose(0, 1) if lay == 1 else w.view(3, d_pre, -1)
        b3 = None if b is None else b.view(3, d_pre)
        layer = blk.attn.qkv
        dense = _dense(layer).view(3, layer.out_max // 3, layer.in_max)
        copy_leading(dense, w3)
        bias = layer.bias.detach().clone().view(3, -1)
        if b3 is not None:
            copy_leading(bias, b3)
        layer.load_dense(dense.reshape(layer.out_max, layer.in_max), bias.reshape(-1))
        for ours, layer in (("proj", blk.attn.proj), ("fc1", blk.mlp.fc1), ("fc2", blk.mlp.fc2)):
            dense = _dense(layer)
            copy_leading(dense, state[f"{name(ours, i)}.weight"])
            bias = layer.bias.detach().clone()
            if f"{name(ours, i)}.bias" in state:
                copy_leading(bias, state[f"{name(ours, i)}.bias"])
            layer.load_dense(dense, bias)
        loaded.append(f"block {i}")
        if d_pre % hd:
            skipped.append(f"block {i}: pretrained q width {d_pre} is not a multiple of head_dim {hd}")
    if depth > space.super_depth:
        skipped.append(f"blocks {space.super_depth}..{depth - 1} (the supernet is shallower)")
    copy_leading(model.norm.weight, state["norm.weight"])
    copy_leading(model.norm.bias, state["norm.bias"])
    head_w = state.get("head.weight")
    if head_w is not None and head_w.shape[0] == model.num_classes:
        copy_leading(model.head.weight, head_w)
        copy_leading(model.head.bias, state["head.bias"])
        loaded.append("head")
    else:
        skipped.append("head (different number of classes)")
    # patch stem and position embedding: resize to each patch size / token grid of the space
    kernel, kbias = state[f"{name('patch')}.weight"], state[f"{name('patch')}.bias"]
    pos = state.get("pos_embed")
    cls = int(space.cls_token)
    for p, stem in model.patch_embeds.items():
        p = int(p)
        k = kernel
        if k.shape[-1] != p:
            # bilinear resize, rescaled so that a flat patch gives the same response
            k = F.interpolate(k.float(), size=(p, p), mode="bilinear", align_corners=False) * (k.shape[-1] / p) ** 2
        copy_leading(stem.proj.weight, k)
        copy_leading(stem.proj.bias, kbias)
        if pos is not None:
            target = model.pos_embeds[str(p)]
            grid = math.isqrt(target.shape[1] - cls)
            extra = pos.shape[1] - math.isqrt(pos.shape[1]) ** 2  # 1 with a cls token, 0 without
            src_grid = math.isqrt(pos.shape[1] - extra)
            g = pos[:, extra:].reshape(1, src_grid, src_grid, -1).permute(0, 3, 1, 2)
            if src_grid != grid:
                g = F.interpolate(g.float(), size=(grid, grid), mode="bicubic", align_corners=False)
            g = g.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
            copy_leading(target[:, cls:], g)
            if cls and extra:
                copy_leading(target[:, :1], pos[:, :1])
    if model.cls_token is not None and "cls_token" in state:
        copy_leading(model.cls_token, state["cls_token"])
    loaded += ["patch embedding", "position embedding", "norm"]
    report = {"layout": ("timm", "autoformer")[lay], "pretrained_depth": depth, "loaded": loaded, "skipped": skipped}
    load_rel_pos_tables(model, state, report)  # AutoFormer/MCUFormer 2-D relative position tables
    return report
