"""The memory model over random subnets of both spaces (random search-space factors too): every
plan is valid, reaches the lower bound (the target is <= 1.05x), equals the fast estimate, and no
technique switched on ever raises the peak."""

import itertools
import random
from pathlib import Path

import pytest

from mcuformer.memory import (TECHNIQUES, Techniques, build_ops, check_plan, estimate, greedy_by_size,
                              plan_arena, section_techniques)
from mcuformer.memory.ops import ALIGN
from mcuformer.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]

T = SearchSpace.load(ROOT / "configs/mcu-T.yaml")
CIFAR = SearchSpace.load(ROOT / "configs/cifar10.yaml")
EVERY_SET = [Techniques(*bits) for bits in itertools.product([False, True], repeat=len(TECHNIQUES))]


def random_archs(n: int, seed: int):
    """Half T, half CIFAR; each from a random (rank ratio, patch size) point of its evolution grid."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        space = (T, CIFAR)[k % 2]
        point = space.with_factors(rng.choice(space.evolution["rank_ratio"]), rng.choice(space.evolution["patch_size"]))
        out.append(point.sample(rng))
    return out


ARCHS = random_archs(200, seed=1)


def test_random_archs_cover_the_spaces():
    assert len(ARCHS) >= 200
    assert {a.patch_size for a in ARCHS if a.img_size == 240} == {16, 20, 24, 28, 32}
    assert {a.patch_size for a in ARCHS if a.img_size == 32} == {2, 4, 8}
    assert len({a.rank_ratio for a in ARCHS}) >= 15


@pytest.mark.parametrize("chunk", range(4))
def test_plans_are_valid_and_reach_the_lower_bound(chunk):
    rng = random.Random(chunk)
    for arch in ARCHS[chunk::4]:
        techniques = Techniques.all() if rng.random() < 0.5 else rng.choice(EVERY_SET)
        plan = plan_arena(build_ops(arch, techniques))
        check_plan(plan)  # no two live tensors overlap, every offset aligned and inside the arena
        assert all(off % ALIGN == 0 for off in plan.offsets().values())
        assert plan.arena_bytes <= 1.05 * plan.lower_bound_bytes
        assert plan.arena_bytes == plan.lower_bound_bytes, (arch, techniques)
        assert estimate(arch, techniques).peak_sram_bytes == plan.arena_bytes, (arch, techniques)


def test_layerwise_baseline_is_valid_and_never_beats_the_planner():
    for arch in ARCHS[:40]:
        ops = build_ops(arch, Techniques.none())
        baseline, ours = greedy_by_size(ops), plan_arena(ops)
        check_plan(baseline)
        assert baseline.arena_bytes >= ours.arena_bytes == ours.lower_bound_bytes


def test_check_plan_catches_an_overlap():
    plan = plan_arena(build_ops(ARCHS[0]))
    live = plan.liveness
    at = [[i for i, buf in enumerate(live.buffers) if buf.first <= s <= buf.last] for s in range(len(live.ops))]
    a, b = next(ids for ids in at if len(ids) >= 2)[:2]
    plan.buffer_offsets[b] = plan.buffer_offsets[a]
    with pytest.raises(AssertionError):
        check_plan(plan)


def test_switching_a_technique_off_never_lowers_the_planned_peak():
    archs = ARCHS[:12] + [T.with_factors(0.9, 16).largest(), CIFAR.largest(), T.with_factors(0.4, 32).smallest()]
    for arch in archs:
        peak = {t: plan_arena(build_ops(arch, t)).arena_bytes for t in EVERY_SET}
        for t in EVERY_SET:
            for name in t.enabled():
                assert peak[t.without(name)] >= peak[t], (arch.short(), t.label(), name)
        assert peak[Techniques.all()] < peak[Techniques.none()]


def test_switching_a_technique_off_never_lowers_the_estimate():
    for arch in ARCHS:
        peak = {t: estimate(arch, t).peak_sram_bytes for t in EVERY_SET}
        for t in EVERY_SET:
            for name in t.enabled():
                assert peak[t.without(name)] >= peak[t], (arch.short(), t.label(), name)


def test_estimate_flash_equals_the_op_list():
    from mcuformer.memory.report import flash_breakdown

    for arch in ARCHS[:60]:
        t = random.Random(arch.depth).choice(EVERY_SET)
        assert estimate(arch, t).flash_bytes == sum(flash_breakdown(build_ops(arch, t)).values())


def test_sections_that_are_not_the_bottleneck_keep_the_cheaper_schedule():
    # at 240 px the input image is the peak, so the blocks need not run head by head (which
    # recomputes LayerNorm and the qkv down factor per head); on CIFAR the blocks are the peak
    t20 = T.with_factors(0.9, 20).largest()
    assert set(section_techniques(t20).values()) >= {Techniques.only("operator_integration", "token_overwriting")}
    assert not any(t.head_by_head for t in section_techniques(t20).values())
    cheap = sum(op.macs for op in build_ops(t20))
    assert cheap < 1.06 * sum(op.macs for op in build_ops(t20, Techniques.none()))
    assert section_techniques(CIFAR.largest())["blocks.0"] == Techniques.only(
        "operator_integration", "token_overwriting", "head_by_head")


def test_planning_is_deterministic():
    arch = ARCHS[5]
    a, b = plan_arena(build_ops(arch)), plan_arena(build_ops(arch))
    assert a.offsets() == b.offsets() and a.strategy == b.strategy


def test_weights_dominate_flash_and_match_the_parameter_count():
    # every weight and bias element of the subnet is stored once (int8 weights, int32 biases)
    from mcuformer.memory import unique_params

    for arch in ARCHS[:20]:
        params = unique_params(build_ops(arch)).values()
        weights = sum(p.shape[0] * p.shape[1] for p in params if p.kind == "weight")
        embeddings = sum(p.shape[0] * (p.shape[1] if len(p.shape) > 1 else 1) for p in params if p.kind == "embedding")
        norms = sum(p.shape[0] for p in params if p.kind == "norm")
        # Arch.num_params counts one bias per linear; we keep an int32 bias per factor (see ops.factor_params)
        factor_biases = sum(p.shape[0] for p in params if p.kind == "bias")
        extra_biases = sum(r for i in range(arch.depth) for _, _, r in arch.linear_shapes(i).values() if r)
        assert weights + embeddings + norms + factor_biases - extra_biases == arch.num_params()
