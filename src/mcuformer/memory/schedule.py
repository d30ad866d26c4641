"""The op list of a subnet, and the fast estimate the search calls thousands of times.

The network is cut into sections that meet only through the token matrix x (N x E int8): the stem,
one section per block, the head. So the bytes live at a step depend on its section alone, and

    lower bound of the network = max over sections of the section's lower bound.

How the techniques are used (a technique is a permission, never an obligation):

1. the network's peak is the smallest any permitted schedule reaches: the max over sections of
   each section's lowest peak over the subsets of the permitted techniques. Switching a technique
   on can therefore never raise it;
2. each section then runs the permitted schedule with the fewest predicted instructions (the
   latency model, ``latency.py``) among those that stay within that peak (ties: lower peak, then
   more techniques). Fusion and head-by-head attention recompute LayerNorm and the qkv down
   projection, so a block that is not the bottleneck (at 240 px the image is) keeps the cheaper
   schedule;
3. given a ``budget`` (the board's arena budget: ``build_ops(..., budget=)``, what the exporter
   uses), the peak a section may reach is the budget instead of the smallest network peak: memory
   the board has and the model does not need is spent on speed (head-by-head attention only where
   the budget needs it).

``estimate`` caches a section's figures by its shape (a T-space subnet has a dozen distinct block
shapes), which makes it thousands of times faster than building and planning the list; it equals
the planned arena whenever the planner reaches the lower bound, which the tests check over random
archs of both spaces (and ``memory_report`` reports).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from itertools import combinations
from typing import NamedTuple

from mcuformer.errors import SpaceError
from mcuformer.memory.latency import predicted_instructions
from mcuformer.memory.lifetimes import analyse
from mcuformer.memory.ops import (BlockDims, ConvStemDims, HeadDims, Op, Param, StemDims, Tensor, block_ops,
                                  code_bytes, conv_stem_ops, head_ops, stem_ops, token_tensor, unique_flash_bytes)
from mcuformer.memory.techniques import Techniques
from mcuformer.space import Arch, low_rank, mlp_hidden, patch_padding

ALL = Techniques.all()

# techniques that change each kind of section (the others do not touch it)
RELEVANT = {
    "stem": ("operator_integration", "patch_decomposition", "token_overwriting"),
    "conv_stem": ("operator_integration", "token_overwriting", "row_by_row"),
    "block": ("operator_integration", "token_overwriting", "head_by_head"),
    "head": ("operator_integration", "token_overwriting"),
}

# What a microcontroller model can be; beyond these the arena is megabytes or an int32 sum may
# overflow (a dot product of K int8 pairs needs K * 127 * 128 < 2^31).
LIMITS = {
    "img_size": 2048, "patch_size": 2048, "in_chans": 16, "patch_inputs": 65536, "embed_dim": 4096,
    "depth": 128, "num_heads": 64, "head_dim": 1024, "mlp_dim": 32768, "num_tokens": 16384,
    "num_classes": 100000, "stem_width": 4096,
}


class SectionCost(NamedTuple):
    peak: int  # lower bound of the section's op order, in bytes
    flash: int  # parameter bytes of the section
    num_ops: int
    macs: int
    instructions: float  # predicted (latency.py)


class Estimate(NamedTuple):
    peak_sram_bytes: int
    flash_bytes: int


def check_arch(arch: Arch) -> None:
    """Reject an arch no microcontroller could hold (one line, naming the field)."""
    inputs = (9 * max(cin for _, cin, _, _ in arch.stem_convs()) if arch.stem == "conv"
              else arch.patch_size ** 2 * arch.in_chans)
    values = {"img_size": arch.img_size, "patch_size": arch.patch_size, "in_chans": arch.in_chans,
              "patch_inputs": inputs, "stem_width": arch.stem_width, "embed_dim": arch.embed_dim, "depth": arch.depth, "num_heads": max(arch.num_heads),
              "head_dim": arch.head_dim, "mlp_dim": max(arch.mlp_dim(i) for i in range(arch.depth)),
              "num_tokens": arch.num_tokens, "num_classes": arch.num_classes}
    for name, value in values.items():
        if value > LIMITS[name]:
            raise SpaceError(f"arch: {name} {value} is outside the range the memory model supports "
                             f"(at most {LIMITS[name]})")
    if min(arch.mlp_dim(i) for i in range(arch.depth)) < 1:
        raise SpaceError("arch: an MLP hidden width rounds down to 0 (mlp_ratio x embed_dim < 1)")


# ---------------------------------------------------------------- section shapes

def stem_dims(arch: Arch) -> StemDims | ConvStemDims:
    if arch.stem == "conv":
        return ConvStemDims(arch.img_size, arch.in_chans, arch.embed_dim, tuple(arch.stem_convs()), arch.grid,
                            arch.cls_token)
    return StemDims(arch.img_size, arch.patch_size, arch.in_chans, arch.embed_dim, arch.grid,
                    arch.cls_token, patch_padding(arch.img_size, arch.patch_size)[0])


def block_dims(arch: Arch, layer: int) -> BlockDims:
    dims = _arch_block_dims(arch, layer)
    return dims._replace(rel_pos=arch.rel_pos) if arch.rel_pos else dims


def _arch_block_dims(arch: Arch, layer: int) -> BlockDims:
    if arch.low_rank_form == "official":  # ranks by the official rule, the middle factor folded
        s = arch.linear_shapes(layer)
        return BlockDims(arch.num_tokens, arch.embed_dim, arch.num_heads[layer], arch.head_dim,
                         arch.mlp_dim(layer), s["qkv"][2], s["proj"][2], s["fc1"][2], s["fc2"][2])
    return _block_dims(arch.num_tokens, arch.embed_dim, arch.num_heads[layer], arch.head_dim,
                       arch.mlp_ratio[layer], arch.rank_ratio)


@lru_cache(maxsize=4096)
def _block_dims(tokens: int, embed: int, heads: int, head_dim: int, mlp_ratio: float, rank_ratio: float) -> BlockDims:
    # the same rank and width rules as Arch.linear_shapes / Arch.mlp_dim
    inner, hidden = heads * head_dim, mlp_hidden(mlp_ratio, embed)
    return BlockDims(tokens, embed, heads, head_dim, hidden, low_rank(rank_ratio, embed, 3 * inner),
                     low_rank(rank_ratio, inner, embed), low_rank(rank_ratio, embed, hidden),
                     low_rank(rank_ratio, hidden, embed))


def head_dims(arch: Arch) -> HeadDims:
    return HeadDims(arch.num_tokens, arch.embed_dim, arch.num_classes, arch.pool, arch.cls_token)


# ---------------------------------------------------------------- sections

def section_ops(kind: str, dims, flags: Techniques, prefix: str = "blocks.0", x=None) -> list[Op]:
    """The ops of one section for exactly these techniques. ``x`` is the incoming token matrix
    (a stand-in when the section is costed alone)."""
    if kind == "stem":
        return stem_ops(dims, flags)
    if kind == "conv_stem":
        return conv_stem_ops(dims, flags)
    x = x if x is not None else token_tensor("x", dims.tokens, dims.embed_dim)
    if kind == "block":
        ops = block_ops(prefix, dims, x, flags)
        return with_rel_pos(ops, dims, prefix) if dims.rel_pos else ops
    return head_ops(dims, x, flags)


def with_rel_pos(ops: list[Op], d: BlockDims, prefix: str) -> list[Op]:
    """Relative position attention, costed in the kernels that read it (codegen's
    mcu_attention_rel.c): the int8 key and value tables (vertical and horizontal, 2k+2 rows by
    head_dim each) in flash; per query row an int32 scratch of the 2(2k+2) dot products of q with
    the key tables, or of the attention weights summed into the 2(2k+2) value-table rows; and
    those multiply-accumulates."""
    rows = 2 * (2 * d.rel_pos + 2)
    tables = {"k": Param(f"{prefix}.attn.rel_pos.key", (rows, d.head_dim), "int8", "embedding"),
              "v": Param(f"{prefix}.attn.rel_pos.value", (rows, d.head_dim), "int8", "embedding")}
    reads = {"matmul_qk": "k", "matmul_av": "v", "attention": "kv", "attention_proj_residual": "kv"}
    out = []
    for op in ops:
        if op.kernel in reads:
            used = reads[op.kernel]
            lo, hi = op.attrs.get("heads", (0, d.heads))
            scratch = Tensor(f"{op.name}.rel_pos", (rows,), "int32", "scratch")
            op = replace(op, params=op.params + tuple(tables[t] for t in used), scratch=op.scratch + (scratch,),
                         macs=op.macs + len(used) * d.tokens * (hi - lo) * rows * d.head_dim)
        out.append(op)
    return out


@lru_cache(maxsize=16384)
def section_cost(kind: str, dims, flags: Techniques) -> SectionCost:
    ops = section_ops(kind, dims, flags)
    return SectionCost(analyse(ops).lower_bound, unique_flash_bytes(ops), len(ops), sum(op.macs for op in ops),
                       predicted_instructions(ops))


@lru_cache(maxsize=4096)
def _subsets(kind: str, techniques: Techniques) -> tuple[Techniques, ...]:
    """Every subset of the permitted techniques that matter to this kind of section, largest first."""
    allowed = [n for n in RELEVANT[kind] if getattr(techniques, n)]
    return tuple(Techniques.only(*c) for k in range(len(allowed), -1, -1) for c in combinations(allowed, k))


@lru_cache(maxsize=16384)
def lowest_peak(kind: str, dims, techniques: Techniques) -> int:
    return min(section_cost(kind, dims, f).peak for f in _subsets(kind, techniques))


@lru_cache(maxsize=65536)
def section_flags(kind: str, dims, techniques: Techniques, peak: int) -> Techniques:
    """The techniques a section uses: the fastest permitted subset within ``peak``."""
    fits = [f for f in _subsets(kind, techniques) if section_cost(kind, dims, f).peak <= peak]
    return min(fits, key=lambda f: (section_cost(kind, dims, f).instructions, section_cost(kind, dims, f).peak,
                                    -len(f.enabled())))


def sections(arch: Arch) -> list[tuple[str, str, object]]:
    """(kind, name prefix, shape) of every section, in execution order."""
    out = [("conv_stem" if arch.stem == "conv" else "stem", "stem", stem_dims(arch))]
    out += [("block", f"blocks.{i}", block_dims(arch, i)) for i in range(arch.depth)]
    out.append(("head", "head", head_dims(arch)))
    return out


def section_schedule(arch: Arch, techniques: Techniques = ALL,
                     budget: int | None = None) -> tuple[int, list[tuple[str, str, object, Techniques]]]:
    """The network's peak and (kind, name prefix, shape, techniques used) of every section: the
    smallest-arena schedule, or with ``budget`` (bytes) the fastest one whose sections stay within it
    (the smallest-arena one when even that does not)."""
    check_arch(arch)
    parts = sections(arch)
    peak = max(lowest_peak(kind, dims, techniques) for kind, _, dims in parts)
    limit = max(peak, budget) if budget is not None else peak
    return peak, [(kind, prefix, dims, section_flags(kind, dims, techniques, limit)) for kind, prefix, dims in parts]


def section_techniques(arch: Arch, techniques: Techniques = ALL, budget: int | None = None) -> dict[str, Techniques]:
    """Which techniques each section actually uses."""
    return {prefix: flags for _, prefix, _, flags in section_schedule(arch, techniques, budget)[1]}


def build_ops(arch: Arch, techniques: Techniques = ALL, budget: int | None = None) -> list[Op]:
    """Every kernel call of the inference, in execution order, for these techniques: the
    smallest-arena schedule, or with ``budget`` (bytes) the fastest whose sections fit it."""
    ops: list[Op] = []
    x = None
    for kind, prefix, dims, flags in section_schedule(arch, techniques, budget)[1]:
        part = section_ops(kind, dims, flags, prefix, x)
        ops += part
        x = part[-1].outputs[0]
    return ops


def clear_caches() -> None:
    """Forget every cached section figure (for benchmarks of the first-touch cost)."""
    for f in (section_cost, _subsets, lowest_peak, section_flags, _block_dims):
        f.cache_clear()


# ---------------------------------------------------------------- the fast path

def estimate(arch: Arch, techniques: Techniques = ALL) -> Estimate:
    """Peak SRAM (the arena) and flash of a subnet without building its op list: what the search
    calls. Equal to ``memory_report``'s planned figures (checked by the tests)."""
    peak, parts = section_schedule(arch, techniques)
    flash = num_ops = 0
    for kind, _, dims, flags in parts:
        c = section_cost(kind, dims, flags)
        flash, num_ops = flash + c.flash, num_ops + c.num_ops
    return Estimate(peak, flash + code_bytes(num_ops))


def estimate_instructions(arch: Arch, techniques: Techniques = ALL, budget: int | None = None) -> float:
    """Predicted instructions of one inference (the latency model) under the schedule that
    ``build_ops(arch, techniques, budget)`` builds, from the cached section figures (what the search
    calls)."""
    return sum(section_cost(kind, dims, flags).instructions
               for kind, _, dims, flags in section_schedule(arch, techniques, budget)[1])


def peak_sram(arch: Arch, techniques: Techniques = ALL) -> int:
    return estimate(arch, techniques).peak_sram_bytes


def flash_bytes(arch: Arch, techniques: Techniques = ALL) -> int:
    return estimate(arch, techniques).flash_bytes
