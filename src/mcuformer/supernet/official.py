"""Official MCUFormer checkpoints: three-factor block linears (``qkv1/qkv2/qkv3``, ``proj1..3``,
``fc11..13``, ``fc21..23``) in the AutoFormer supernet layout.

Into a space with ``low_rank: official`` the factors load as they are (weight entanglement takes the
leading rows and columns, as in the official code). Into a two-factor space each layer's product is
refactorised by truncated SVD, like a dense checkpoint. Embeddings, norms and the head go through the
dense loader (``pretrained.py``), which resizes patch kernels and position grids.
"""

from __future__ import annotations

import torch

from mcuformer.errors import CheckpointError
from mcuformer.supernet.elastic import SuperLinear, copy_leading

# our relative position table -> the official name ('{i}': block index)
REL_POS = {"key_v": "blocks.{i}.attn.rel_pos_embed_k.embeddings_table_v",
           "key_h": "blocks.{i}.attn.rel_pos_embed_k.embeddings_table_h",
           "value_v": "blocks.{i}.attn.rel_pos_embed_v.embeddings_table_v",
           "value_h": "blocks.{i}.attn.rel_pos_embed_v.embeddings_table_h"}

# our layer -> the official factor prefix ('{i}': block index), and the dense AutoFormer name
FACTORS = {
    "qkv": ("blocks.{i}.attn.qkv", "blocks.{i}.attn.qkv"),
    "proj": ("blocks.{i}.attn.proj", "blocks.{i}.attn.proj"),
    "fc1": ("blocks.{i}.fc1", "blocks.{i}.fc1"),
    "fc2": ("blocks.{i}.fc2", "blocks.{i}.fc2"),
}


def is_official_three_factor(state: dict) -> bool:
    return "blocks.0.attn.qkv1.weight" in state


def _factors(state: dict, prefix: str, path) -> tuple:
    try:
        return tuple(state[f"{prefix}{k}.weight"] for k in (1, 2, 3)) + (state.get(f"{prefix}3.bias"),)
    except KeyError as e:
        raise CheckpointError(f"{path}: official checkpoint lacks {e.args[0]}") from None


def _depth(state: dict) -> int:
    depth = 0
    while f"blocks.{depth}.attn.qkv1.weight" in state:
        depth += 1
    return depth


def dense_view(state: dict, path) -> dict:
    """The checkpoint with each three-factor layer multiplied out (AutoFormer's dense layout)."""
    dense = dict(state)
    for i in range(_depth(state)):
        for ours, (prefix, name) in FACTORS.items():
            pre, dname = prefix.format(i=i), name.format(i=i)
            first, middle, last, bias = _factors(state, pre, path)
            if first.shape[0] != middle.shape[1] or middle.shape[0] != last.shape[1]:
                raise CheckpointError(f"{path}: {pre}1..3 factor shapes {tuple(first.shape)}, "
                                      f"{tuple(middle.shape)}, {tuple(last.shape)} do not chain")
            dense[f"{dname}.weight"] = (last.double() @ middle.double() @ first.double()).float()
            if bias is not None:
                dense[f"{dname}.bias"] = bias
            for k in (1, 2, 3):
                dense.pop(f"{pre}{k}.weight", None)
            dense.pop(f"{pre}3.bias", None)
    return dense


@torch.no_grad()
def load_factors(model, state: dict, path, report: dict) -> None:
    """Into a ``low_rank: official`` space, copy each block's three factors as they are, over what the dense
    loader made of their product (``pretrained.py`` calls this after loading ``dense_view(state)``)."""
    if model.space.low_rank_form != "official":
        report["loaded"].append("three-factor layers multiplied out and refactorised by SVD (two-factor space)")
        return
    for i in range(min(_depth(state), model.space.super_depth)):
        blk = model.blocks[i]
        layers = {"qkv": blk.attn.qkv, "proj": blk.attn.proj, "fc1": blk.mlp.fc1, "fc2": blk.mlp.fc2}
        for ours, (prefix, _) in FACTORS.items():
            layer: SuperLinear = layers[ours]
            first, middle, last, bias = _factors(state, prefix.format(i=i), path)
            if first.shape[0] < layer.rank_max:
                report["skipped"].append(f"block {i} {ours}: checkpoint rank {first.shape[0]} < the supernet's "
                                         f"{layer.rank_max}; the rest keeps the SVD of the product")
            copy_leading(layer.down, first)
            copy_leading(layer.mid, middle)
            if ours == "qkv":  # official rows are interleaved q0 k0 v0 q1 ...; ours are [q | k | v] blocks
                d = last.shape[0] // 3
                up = layer.up.view(3, layer.out_max // 3, layer.rank_max)
                copy_leading(up, last.view(d, 3, -1).transpose(0, 1))
                if bias is not None:  # the official bias is sliced in stored order (see pretrained.py)
                    copy_leading(layer.bias.view(3, -1), bias.view(3, d))
            else:
                copy_leading(layer.up, last)
                if bias is not None:
                    copy_leading(layer.bias, bias)
    report["loaded"].append("three-factor layers as they are")


@torch.no_grad()
def load_rel_pos_tables(model, state: dict, report: dict) -> None:
    """Copy the official relative position tables (keys and values, vertical and horizontal) of each
    block; say in the report when the space has none or another clipping distance."""
    blocks = [i for i in range(len(model.blocks)) if REL_POS["key_v"].format(i=i) in state]
    if not blocks:
        return
    if not model.space.rel_pos:
        rows = state[REL_POS["key_v"].format(i=blocks[0])].shape[0]
        report["skipped"].append(f"relative position tables of {len(blocks)} blocks (the space has rel_pos 0; "
                                 f"these need rel_pos: {(rows - 2) // 2})")
        return
    done = 0
    for i in blocks:
        rel = model.blocks[i].attn.rel_pos
        for ours, name in REL_POS.items():
            src, dst = state.get(name.format(i=i)), getattr(rel, ours)
            if src is None or src.ndim != 2 or src.shape[0] != dst.shape[0]:
                report["skipped"].append(f"block {i} relative position table {ours}: "
                                         f"{None if src is None else tuple(src.shape)} does not fit {tuple(dst.shape)} "
                                         f"(another clipping distance)")
                continue
            copy_leading(dst, src)
        done += 1
    report["loaded"].append(f"relative position tables of {done} blocks")
