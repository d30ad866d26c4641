"""The memory model on cases small enough to work out by hand, and the patch-embedding
decomposition (tokens written over the consumed image) simulated byte by byte.

The tiny arch: 8x8x1 image, patch 4 -> 2x2 patches + cls = 5 tokens, E = 8, one block, MLP 16,
10 classes, mean pooling. Sizes (int8, rounded up to 4 bytes): image 64, x 5*8 = 40, one head's
K or V 5*4 = 20, scores 5*5 = 25 -> 28, MLP hidden 5*16 = 80, int32 pooling sums 8*4 = 32.
"""

import random
from pathlib import Path

import pytest

from mcuformer.memory import (Techniques, analyse, build_ops, check_plan, estimate, greedy_by_size,
                              memory_report, official_formula_bytes, plan_arena, section_techniques)
from mcuformer.memory.ops import CODE_LIBRARY_BYTES, CODE_PER_CALL_BYTES, StemDims, decomposition_offset
from mcuformer.memory.schedule import stem_dims
from mcuformer.space import Arch, SearchSpace

ROOT = Path(__file__).resolve().parents[1]


def tiny(**kw) -> Arch:
    d = dict(img_size=8, patch_size=4, rank_ratio=1.0, embed_dim=8, depth=1, num_heads=[1], mlp_ratio=[2.0],
             num_classes=10, head_dim=4, in_chans=1, cls_token=True, pool="gap")
    d.update(kw)
    return Arch(**d)


def profile(arch, techniques):
    ops = build_ops(arch, techniques)
    plan = plan_arena(ops)
    check_plan(plan)
    return [op.kernel for op in ops], plan.liveness.live_bytes, plan


def test_tiny_all_techniques_by_hand():
    # patch_embed_pos: tokens at 0, image at 24 (token row 0 = cls + 2 patches = 24 B must precede
    #   strip 0), so max(24 + 64, 40) = 88
    # ln_kv: x 40 + K 20 + V 20 + ln row 8 = 88
    # attention_proj_residual: x 40 + K 20 + V 20 + ln 8 + q 4 + scores 8 + o 4 = 104  <- peak
    # mlp_residual: x 40 + ln 8 + hidden 16 = 64;  ln_pool: x 40 + pooled 8 + sums 32 = 80;  fc: 8 + 12
    kernels, live, plan = profile(tiny(), Techniques.all())
    assert kernels == ["patch_embed_pos", "ln_kv", "attention_proj_residual", "mlp_residual", "ln_pool", "linear"]
    assert live == [88, 88, 104, 64, 80, 20]
    assert plan.lower_bound_bytes == plan.arena_bytes == 104
    assert plan.offset("stem.x") == 0 and plan.offset("image") == 24
    assert estimate(tiny()).peak_sram_bytes == 104


def test_tiny_no_technique_by_hand():
    kernels, live, plan = profile(tiny(), Techniques.none())
    assert kernels == ["patch_embed", "pos_add", "layernorm", "linear", "matmul_qk", "softmax", "matmul_av",
                       "linear", "add", "layernorm", "linear", "gelu", "linear", "add", "layernorm", "mean_pool",
                       "linear"]
    assert live == [
        64 + 40,            # image, patches
        40 + 40,            # patches, x
        40 + 40,            # x, ln
        40 + 40 + 60,       # x, ln, qkv (5 x 12)
        40 + 60 + 28,       # x, qkv, scores
        40 + 60 + 28 + 28,  # x, qkv, scores, probs
        40 + 60 + 28 + 20,  # x, qkv, probs, o
        40 + 20 + 40,       # x, o, y
        40 + 40 + 40,       # x, y, x1
        40 + 40,            # x1, ln
        40 + 40 + 80,       # x1, ln, hidden
        40 + 80 + 80,       # x1, hidden, gelu  <- peak 200
        40 + 80 + 40,       # x1, gelu, y
        40 + 40 + 40,       # x1, y, out
        40 + 40,            # out, normed
        40 + 32 + 8,        # normed, sums, pooled
        8 + 12,             # pooled, logits
    ]
    assert plan.arena_bytes == plan.lower_bound_bytes == 200
    assert greedy_by_size(plan.liveness).arena_bytes >= 200


def test_tiny_low_rank_by_hand():
    # ranks at 0.5: qkv int(0.5*min(8,12)) = 4, proj int(0.5*min(4,8)) = 2 -> 4 B aligned, fc1 4, fc2 4
    # attention_proj_residual: x 40 + K 20 + V 20 + ln 8 + mid 4 + q 4 + scores 8 + o 4 + proj mid 4 = 112
    a = tiny(rank_ratio=0.5)
    _, live, plan = profile(a, Techniques.all())
    assert live == [88, 40 + 40 + 8 + 4, 112, 40 + 8 + 4 + 16 + 4, 80, 20]
    assert plan.arena_bytes == 112


def test_head_by_head_by_hand():
    # two heads of 4: all heads at once needs x 40 + K 40 + V 40 + ln 8 + q 4 + scores 8 + o 8 = 148;
    # head by head needs at most x 40 + K_h 20 + V_h 20 + O 40 + ln 8 + q 4 + scores 8 = 140
    a = tiny(num_heads=[2])
    kernels, live, plan = profile(a, Techniques.all())
    assert kernels == ["patch_embed_pos", "ln_kv", "attention", "ln_kv", "attention", "proj_residual",
                       "mlp_residual", "ln_pool", "linear"]
    assert live == [88, 88, 140, 128, 140, 80, 64, 80, 20]
    assert plan.arena_bytes == 140
    assert estimate(a, Techniques.all().without("head_by_head")).peak_sram_bytes == 148


def test_head_by_head_is_not_used_where_it_costs_memory():
    # one head: per-head needs x + K + V + O(20) + scratch = 120 > 104, so the block keeps all heads
    assert section_techniques(tiny())["blocks.0"] == Techniques.only("operator_integration", "token_overwriting")
    assert estimate(tiny()).peak_sram_bytes == estimate(tiny(), Techniques.all().without("head_by_head")).peak_sram_bytes


def test_decomposition_on_a_three_channel_image():
    # 8x8x3 image = 192 B: image + tokens = 232; tokens over the consumed image: 24 + 192 = 216
    # (the block's worst step, the layer-wise GELU, is 200)
    a = tiny(in_chans=3)
    assert estimate(a, Techniques.none()).peak_sram_bytes == 232
    assert estimate(a, Techniques.only("patch_decomposition")).peak_sram_bytes == 216
    assert plan_arena(build_ops(a, Techniques.all())).liveness.live_bytes[0] == 216
    assert estimate(a).peak_sram_bytes == 216


def test_flash_by_hand():
    # stem: conv 8x4x4x1 = 128 + bias/multiplier/shift 3 x 8 x 4 = 96, cls 8, pos 5x8 = 40 -> 272
    # block: norm1 16 + 32, qkv 96 + 3x48, exp table 512, proj 32 + 3x32, norm2 48, fc1 128 + 3x64,
    #        GELU table 256, fc2 128 + 3x32 -> 1776;  head: norm 48, fc 80 + 3x40 -> 248
    params = 272 + 1776 + 248
    assert estimate(tiny()).flash_bytes == params + CODE_LIBRARY_BYTES + 6 * CODE_PER_CALL_BYTES
    assert estimate(tiny(), Techniques.none()).flash_bytes == params + CODE_LIBRARY_BYTES + 17 * CODE_PER_CALL_BYTES
    rep = memory_report(tiny())
    assert rep.flash_bytes == estimate(tiny()).flash_bytes
    assert rep.flash["lut"] == 512 + 256 and rep.flash["embedding"] == 8 + 40 and rep.flash["norm"] == 3 * 48


def test_flash_low_rank_by_hand():
    # qkv down 8->4 (32 + 3x16) + up 4->12 (48 + 3x48); proj down 4->2 (8 + 3x8) + up 2->8 (16 + 3x32);
    # fc1 down 8->4 (80) + up 4->16 (64 + 3x64); fc2 down 16->4 (64 + 3x16) + up 4->8 (32 + 3x32)
    block = 48 + (80 + 192) + 512 + (32 + 112) + 48 + (80 + 256) + 256 + (112 + 128)
    assert estimate(tiny(rank_ratio=0.5)).flash_bytes == 272 + block + 248 + CODE_LIBRARY_BYTES + 6 * CODE_PER_CALL_BYTES


def test_macs_by_hand():
    # dense: patch 4 x 16 x 8 = 512; k,v 5 x 2 x 4 x 8 = 320 and q 5 x 4 x 8 = 160 (= the qkv linear's
    # 480); scores and AV 2 x 5 x 5 x 4 = 200; proj 5 x 4 x 8 = 160; fc1, fc2 2 x 5 x 8 x 16; head 80
    dense = 512 + 480 + 200 + 160 + 1280 + 80
    for t in (Techniques.all(), Techniques.none()):
        assert sum(op.macs for op in build_ops(tiny(), t)) == dense
    # low rank: the fused attention computes the qkv down factor (8 x 4 per token) once more for q
    low = tiny(rank_ratio=0.5)
    layerwise = 512 + 5 * (8 * 4 + 4 * 12) + 200 + 5 * (4 * 2 + 2 * 8) + 5 * (8 * 4 + 4 * 16) + 5 * (16 * 4 + 4 * 8) + 80
    assert sum(op.macs for op in build_ops(low, Techniques.none())) == layerwise
    assert sum(op.macs for op in build_ops(low, Techniques.all())) == layerwise + 5 * 8 * 4


def test_official_formula():
    # E((N+1)(1+m) + E m r), N = (img/p)^2 as a float
    assert official_formula_bytes(tiny()) == 8 * (5 * 3 + 8 * 2 * 1.0)
    t = SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(0.9, 20).largest()
    assert round(official_formula_bytes(t)) == 324562  # the figure quoted from the official code (317 KB)
    t28 = SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(0.9, 28).largest()
    assert official_formula_bytes(t28) == pytest.approx(216 * ((73.469387755 + 1) * 5 + 216 * 4 * 0.9))


@pytest.mark.parametrize("img,patch,chans,embed,cls,expected", [
    (240, 16, 3, 216, True, (1 + 15) * 216),      # token row 0 must precede strip 0
    (240, 28, 3, 216, True, (1 + 9) * 216),       # padded: 9x9 grid, 6 px above
    (32, 2, 3, 192, False, 16 * 16 * 192 - 15 * 2 * 32 * 3),  # tokens outgrow the image: the last row binds
])
def test_decomposition_offset(img, patch, chans, embed, cls, expected):
    a = Arch(img_size=img, patch_size=patch, rank_ratio=0.9, embed_dim=embed, depth=1, num_heads=[3],
             mlp_ratio=[4.0], num_classes=10, in_chans=chans, cls_token=cls)
    assert decomposition_offset(stem_dims(a)) == expected


def _simulate_patch_embedding(d: StemDims) -> None:
    """Run the decomposed patch embedding's memory traffic byte by byte: patches in row-major order,
    each token written right after its patch is read, the cls row last. No write may touch an image
    byte that a later patch still has to read."""
    shift, g, e, row = decomposition_offset(d), d.grid, d.embed_dim, d.img_size * d.in_chans
    image_bytes = d.image_bytes
    for q in range(g * g):
        start = (int(d.cls_token) + q) * e
        for w in range(start, start + e):
            idx = w - shift
            if 0 <= idx < image_bytes:
                y, x = idx // row, (idx % row) // d.in_chans
                owner = ((y + d.pad_before) // d.patch_size) * g + (x + d.pad_before) // d.patch_size
                assert owner <= q, f"token {q} overwrites unread pixels of patch {owner}"


@pytest.mark.parametrize("patch", [16, 20, 24, 28, 32])
def test_decomposition_never_overwrites_unread_pixels_T(patch):
    a = SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(0.9, patch).largest()
    _simulate_patch_embedding(stem_dims(a))


def test_decomposition_never_overwrites_unread_pixels_random():
    rng = random.Random(3)
    for _ in range(40):
        img = rng.randint(4, 48)
        a = Arch(img_size=img, patch_size=rng.randint(1, img), rank_ratio=1.0, embed_dim=rng.randint(1, 64), depth=1,
                 num_heads=[1], mlp_ratio=[1.0], num_classes=2, in_chans=rng.choice([1, 3]),
                 cls_token=rng.random() < 0.5)
        _simulate_patch_embedding(stem_dims(a))


def test_token_overwriting_alone_by_hand():
    # layer-wise kernels; softmax, GELU, the adds and the final LayerNorm write over their input
    kernels, live, plan = profile(tiny(), Techniques.only("token_overwriting"))
    assert live == [
        64 + 40,            # image, patches
        40,                 # pos add in place
        40 + 40,            # x, ln
        40 + 40 + 60,       # x, ln, qkv
        40 + 60 + 28,       # x, qkv, scores
        40 + 60 + 28,       # softmax in place
        40 + 60 + 28 + 20,  # x, qkv, probs, o
        40 + 20 + 40,       # x, o, y
        40 + 40,            # x1 over x, y
        40 + 40,            # x1, ln
        40 + 40 + 80,       # x1, ln, hidden  <- peak 160
        40 + 80,            # GELU in place
        40 + 80 + 40,       # x1, gelu, y
        40 + 40,            # out over x1, y
        40,                 # final LayerNorm in place
        40 + 32 + 8,        # normed, sums, pooled
        8 + 12,             # pooled, logits
    ]
    assert plan.arena_bytes == 160
    live_buffers = analyse(build_ops(tiny(), Techniques.only("token_overwriting"))).buffers
    x_buffer = next(b for b in live_buffers if b.members[0][0].name == "stem.patches")
    assert [t.name for t, _ in x_buffer.members] == ["stem.patches", "stem.x", "blocks.0.x1", "blocks.0.out",
                                                     "head.norm.out"]
