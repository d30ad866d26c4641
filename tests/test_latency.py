"""The latency model (mcuformer.memory.latency), the fastest schedule that fits (schedule.py, the memory
report, the exporter) and the search's --max-latency-ms."""

import json
import random
import shutil

import pytest

from mcuformer.codegen.export import export_model
from mcuformer.memory import (TECHNIQUES, Techniques, build_ops, check_arch, estimate, estimate_instructions,
                              get_board, memory_report, plan_arena)
from mcuformer.memory.latency import UNITS, op_work, predicted_instructions
from mcuformer.quantize.synthetic import random_quant_model
from mcuformer.space import Arch, SearchSpace

from conftest import ROOT, assert_one_line_error, run_cli

CIFAR_LARGEST = Arch(img_size=32, patch_size=4, rank_ratio=1.0, embed_dim=64, depth=3, num_heads=(4, 4, 4),
                     mlp_ratio=(2.0, 2.0, 2.0), num_classes=10, head_dim=16)
HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
CKPT = ROOT / "models/cifar10-tiny/supernet.pt"


def _random_arch(rng: random.Random) -> Arch:
    while True:
        depth = rng.randint(1, 3)
        cls = rng.random() < 0.5
        arch = Arch(img_size=rng.choice([16, 32]), patch_size=rng.choice([2, 4, 8]),
                    rank_ratio=rng.choice([0.25, 0.5, 1.0]), embed_dim=rng.choice([16, 32, 64]), depth=depth,
                    num_heads=tuple(rng.randint(1, 4) for _ in range(depth)),
                    mlp_ratio=tuple(rng.choice([1.0, 2.0, 4.0]) for _ in range(depth)), num_classes=10,
                    head_dim=rng.choice([8, 16]), cls_token=cls, pool=rng.choice(["cls", "gap"]) if cls else "gap")
        try:
            check_arch(arch)
            return arch
        except Exception:
            continue


def test_op_work_counts_what_each_kernel_does():
    """Exact units of a layer-wise block: LayerNorm elements, qkv outputs and calls, scores, AV outputs."""
    n, e, h, hd = CIFAR_LARGEST.num_tokens, 64, 4, 16
    ops = {op.name: op for op in build_ops(CIFAR_LARGEST, Techniques.none())}
    assert op_work(ops["blocks.0.norm1"]) == {"calls": 1, "ln_elements": n * e, "ln_rows": n}
    assert op_work(ops["blocks.0.attn.qkv"]) == {"calls": 1, "mm_macs": n * e * 3 * h * hd,
                                                   "mm_outputs": n * 3 * h * hd, "mm_calls": n}
    assert op_work(ops["blocks.0.attn.qk"]) == {"calls": 1, "attn_macs": h * n * n * hd, "attn_outputs": h * n * n}
    assert op_work(ops["blocks.0.attn.av"]) == {"calls": 1, "attn_macs": h * n * n * hd, "attn_outputs": n * h * hd}
    assert op_work(ops["blocks.0.attn.softmax"])["softmax_elements"] == h * n * n
    # fused attention over all heads: the same attention work, LayerNorm once per query row
    fused = {op.name: op for op in build_ops(CIFAR_LARGEST, Techniques.only("operator_integration"))}
    rows = op_work(fused["blocks.0.attn.rows"])
    assert rows["attn_macs"] == 2 * h * n * n * hd and rows["ln_elements"] == n * e and rows["mm_calls"] == n * h


def test_every_kernel_of_every_schedule_has_a_rule():
    rng = random.Random(3)
    for _ in range(30):
        arch = _random_arch(rng)
        flags = Techniques(**{t: rng.random() < 0.5 for t in TECHNIQUES})
        ops = build_ops(arch, flags)
        assert all(set(op_work(op)) <= set(UNITS) for op in ops)
        assert predicted_instructions(ops) > sum(op.macs for op in ops)  # more than one instruction per MAC


def test_the_fastest_schedule_fits_the_budget_and_is_not_slower():
    rng = random.Random(5)
    board = get_board("stm32f746")
    for _ in range(20):
        arch = _random_arch(rng)
        smallest = build_ops(arch)
        budget = board.arena_budget_bytes
        fast = build_ops(arch, budget=budget)
        assert plan_arena(fast).arena_bytes <= budget or plan_arena(smallest).arena_bytes > budget
        assert predicted_instructions(fast) <= predicted_instructions(smallest)
        assert estimate_instructions(arch, budget=budget) == pytest.approx(predicted_instructions(fast))
        # a budget of the smallest arena itself leaves the smallest-arena schedule
        tight = estimate(arch).peak_sram_bytes
        assert [op.name for op in build_ops(arch, budget=tight)] == [op.name for op in smallest]


def test_memory_report_shows_both_schedules():
    rep = memory_report(CIFAR_LARGEST, "stm32f746", schedule="fastest")
    s = rep.schedules()
    assert rep.plan is rep.fastest and rep.peak_sram_bytes == s["fastest"]["arena_bytes"]
    assert s["smallest"]["arena_bytes"] < s["fastest"]["arena_bytes"] <= rep.board.arena_budget_bytes
    assert s["fastest"]["predicted_instructions"] < s["smallest"]["predicted_instructions"]
    text = rep.format()
    assert "smallest-arena schedule" in text and "fastest schedule that fits" in text and "<- chosen" in text
    # head by head only where memory needs it: none of the blocks here
    assert all("head_by_head" not in v.enabled() for k, v in rep.sections.items() if k.startswith("blocks."))
    # a board whose budget is the smallest arena: the smallest-arena schedule, head by head included
    tight = get_board("stm32f746").with_overrides(sram_kb=16 + s["smallest"]["arena_bytes"] / 1024)
    rep = memory_report(CIFAR_LARGEST, tight, schedule="fastest")
    assert rep.peak_sram_bytes == s["smallest"]["arena_bytes"]
    assert any("head_by_head" in v.enabled() for v in rep.sections.values())


def test_export_keeps_the_smallest_schedule_where_the_fastest_would_not_fit_the_flash(tmp_path):
    # The fastest schedule's extra kernel calls cost code; on a board whose flash holds the smallest
    # schedule (what the search checks) but not the fastest, export takes the smallest and says so.
    small = memory_report(CIFAR_LARGEST, "stm32f746", schedule="smallest")
    fast = memory_report(CIFAR_LARGEST, "stm32f746", schedule="fastest")
    assert fast.flash_bytes > small.flash_bytes  # more kernel calls, more code
    q = random_quant_model(CIFAR_LARGEST, seed=3)
    tight = get_board("stm32f746").with_overrides(flash_kb=small.flash_bytes / 1024)
    info = export_model(q, tmp_path / "tight", tight, schedule="fastest")
    assert info["schedule"] == "smallest" and info["schedule_requested"] == "fastest"
    assert info["planned_flash_bytes"] == small.flash_bytes and info["fits"] and info["schedule_budget_bytes"] is None
    roomy = export_model(q, tmp_path / "roomy", "stm32f746", schedule="fastest")
    assert roomy["schedule"] == "fastest" and "schedule_requested" not in roomy
    assert roomy["planned_flash_bytes"] == fast.flash_bytes


def test_memory_cli_schedule():
    out = run_cli("memory", "--space", ROOT / "configs/cifar10-tiny.yaml", "--which", "largest", "--schedule",
                  "fastest", check=True).stdout
    fastest = next(ln for ln in out.splitlines() if ln.startswith("fastest schedule that fits"))
    assert fastest.endswith("<- chosen") and "instructions predicted" in fastest
    assert_one_line_error(run_cli("memory", "--space", ROOT / "configs/cifar10-tiny.yaml", "--schedule", "x"),
                          "--schedule 'x': use smallest or fastest")


def test_export_records_the_schedule(tmp_path):
    arch = Arch(img_size=8, patch_size=4, rank_ratio=0.5, embed_dim=16, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                num_classes=3, head_dim=8)
    q = random_quant_model(arch)
    fast = export_model(q, tmp_path / "f", "stm32f746")
    small = export_model(q, tmp_path / "s", "stm32f746", schedule="smallest")
    assert fast["schedule"] == "fastest" and fast["schedule_budget_bytes"] == get_board("stm32f746").arena_budget_bytes
    assert small["schedule_budget_bytes"] is None and small["arena_bytes"] <= fast["arena_bytes"]
    assert fast["predicted_instructions"] <= small["predicted_instructions"]
    q.save(tmp_path / "q")
    assert_one_line_error(run_cli("export", "--quantized", tmp_path / "q", "--output", tmp_path / "x",
                                  "--schedule", "slowest"), "--schedule 'slowest': use fastest or smallest")
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not CKPT.exists(), reason="needs models/cifar10-tiny/supernet.pt")
def test_search_max_latency(tmp_path, cifar_archive):
    """An impossible latency stops at once; a search under a latency keeps only subnets whose predicted
    latency meets it, and (with the ARM tools) its best arch, exported with random weights, meets it on
    the emulated Cortex-M7 at the board's clock within the model's 5 %."""
    space = SearchSpace.load(ROOT / "configs/cifar10-tiny.yaml")
    proc = run_cli("search", "--checkpoint", CKPT, "--output", tmp_path / "x", "--max-latency-ms", "0.01")
    assert_one_line_error(proc, "--max-latency-ms 0.01 is below the smallest subnets' predicted")
    board = get_board("stm32f746")
    from mcuformer.search.budget import Budget
    budget = Budget(board)
    limit = round(0.5 * (budget.latency_ms(space.smallest(10)) + budget.latency_ms(space.largest(10))), 1)
    out = tmp_path / "s"
    run_cli("search", "--checkpoint", CKPT, "--output", out, "--max-latency-ms", str(limit), "--population", "8",
            "--generations", "2", "--parents", "3", "--mutations", "4", "--crossovers", "4", "--per-class", "10",
            "--heldout-limit", "100", "--test-limit", "100", "--top-k", "1", "--no-baselines", "--workers", "0",
            check=True)
    result = json.loads((out / "result.json").read_text())
    assert result["budget"]["max_latency_ms"] == limit
    assert all(r["fits"] and r["predicted_latency_ms"] <= limit for r in result["rows"])
    best = Arch.load(out / "best_arch.yaml")
    if HAVE_ARM:
        from mcuformer.verify import verify
        folder = tmp_path / "engine"
        export_model(random_quant_model(best), folder, board)
        m7 = verify(folder, "cortex-m7", images=1)
        assert m7.bit_exact
        assert m7.instructions_per_inference / (board.clock_mhz * 1e3) <= 1.05 * limit
