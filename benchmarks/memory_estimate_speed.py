"""Speed of the memory estimate on one CPU core: archs per second for the official T space.

The search needs peak SRAM and flash for every candidate; ``estimate`` gives both without building
the op list, from per-section figures cached by section shape. Rows:

  estimate, T space (r 0.9, p 16)     the search's steady state: random subnets of one space
  estimate, T evolution grid          random subnets of random (rank ratio, patch size) grid points,
                                      caches filling as it goes (search-space evolution)
  estimate, cold                      every cache cleared before every arch (first touch, worst case)
  build_ops + plan_arena              the full op list and arena plan (what the code generator asks)
  memory_report                       everything: plan, baseline, 10-way technique ablation

    python benchmarks/memory_estimate_speed.py            # writes benchmarks/results/memory_estimate_speed.json
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import build_ops, estimate, memory_report, plan_arena  # noqa: E402
from mcuformer.memory.schedule import clear_caches  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

TARGET_ARCHS_PER_S = 2000


def rate(fn, archs, before=None) -> float:
    start = time.perf_counter()
    for a in archs:
        if before:
            before()
        fn(a)
    return len(archs) / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "configs/mcu-T.yaml"))
    ap.add_argument("--n", type=int, default=20000, help="archs for the estimate rows")
    ap.add_argument("--n-full", type=int, default=100, help="archs for the full-plan rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/memory_estimate_speed.json"))
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    space = SearchSpace.load(args.space)
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.n)]
    grid = [space.with_factors(r, p) for r in space.evolution["rank_ratio"] for p in space.evolution["patch_size"]]
    grid_archs = [rng.choice(grid).sample(rng) for _ in range(args.n)]

    clear_caches()
    rows = []
    estimate(archs[0])  # fill the one space's section caches as a search's first generation does
    rows.append(("estimate, T space (r 0.9, p 16)", args.n, rate(estimate, archs)))
    clear_caches()
    rows.append(("estimate, T evolution grid (60 spaces)", args.n, rate(estimate, grid_archs)))
    cold = archs[: max(1, args.n_full)]
    rows.append(("estimate, cold (caches cleared per arch)", len(cold), rate(estimate, cold, clear_caches)))
    full = grid_archs[: args.n_full]
    rows.append(("build_ops + plan_arena", len(full), rate(lambda a: plan_arena(build_ops(a)), full)))
    few = full[: max(1, args.n_full // 5)]
    rows.append(("memory_report (plan, baseline, ablation)", len(few), rate(memory_report, few)))

    print(f"memory estimate speed, one core ({platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}); target >= {TARGET_ARCHS_PER_S} archs/s")
    print(f"{'path':<44} {'archs':>7} {'archs/s':>11}")
    for name, n, r in rows:
        print(f"{name:<44} {n:>7} {r:>11,.0f}")
    ok = rows[0][2] >= TARGET_ARCHS_PER_S and rows[1][2] >= TARGET_ARCHS_PER_S
    print(f"search path (estimate) meets the target: {'yes' if ok else 'NO'}")
    write_json(args.out, {
        "space": Path(args.space).name, "seed": args.seed, "python": platform.python_version(),
        "machine": platform.machine(), "target_archs_per_s": TARGET_ARCHS_PER_S, "meets_target": ok,
        "rows": [{"path": name, "archs": n, "archs_per_s": round(r, 1)} for name, n, r in rows],
    })
    print(f"wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
