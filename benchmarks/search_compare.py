"""Evolutionary search vs random search vs hand-scaled, per memory budget (issue 4's "must show").

For each budget, one `run_search` (the API behind `mcuformer search`) on the trained tiny CIFAR-10
supernet: fitness = top-1 on 1000 held-out train images (100 per class, seed 0); the finalists are
re-scored on the 10k test set. Random search gets as many evaluations as the evolution made, under
the same budget; hand-scaled is the largest uniform subnet that fits (chosen without accuracy).

    python benchmarks/search_compare.py --subsplit runs/search/heldout-100.json   # writes benchmarks/results/search_compare.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.search import EvolutionConfig  # noqa: E402
from mcuformer.search.runner import make_budget, run_search  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.train import load_checkpoint, space_of  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

# (tag, SRAM KB, flash KB): the arena is SRAM less the 16 KB stack/runtime reserve. In the tiny space
# no subnet is excluded at 320 KB / 1 MB nor at 128 KB / 512 KB, so both are the same search
# (LOOSE checks that); the two tight budgets are where the memory model binds.
BUDGETS = [("f746-320k-1m", None, None), ("arena8k-128k", 24, 128), ("arena6k-96k", 22, 96)]
LOOSE = (128, 512)
DEFAULT = EvolutionConfig()  # population 50, 20 generations, 25 + 25 children, top 10
SMALL = EvolutionConfig(population=20, generations=10, parents=5, mutations=10, crossovers=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-tiny/supernet.pt"))
    ap.add_argument("--subsplit", default=None, help="held-out sub-split JSON (default: 100 per class, seed 0)")
    ap.add_argument("--output", default=str(ROOT / "runs/search-compare"))
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/search_compare.json"))
    ap.add_argument("--setting", choices=["small", "default"], default="small",
                    help="small: population 20, 10 generations, 10 + 10 children, top 5 (~200 evaluations; "
                         "the measured table); default: the paper's 50 x 20 (~1000 evaluations, ~2 min per budget "
                         "on an idle 2-core CPU)")
    ap.add_argument("--top-k", type=int, default=3, help="evolution finalists re-scored on the test set")
    args = ap.parse_args()
    cfg = SMALL if args.setting == "small" else DEFAULT
    runs = [(tag, sram, flash, args.setting, cfg) for tag, sram, flash in BUDGETS]
    space = space_of(load_checkpoint(args.checkpoint))
    loose = make_budget("stm32f746", *LOOSE)
    out = {"checkpoint": args.checkpoint, "runs": [],
           f"every_subnet_fits_{LOOSE[0]}k_{LOOSE[1]}k": all(loose.fits(a) for a in largest_corners(space))}
    for tag, sram, flash, setting, cfg in runs:
        budget = make_budget("stm32f746", sram, flash)
        t = time.time()
        res = run_search(args.checkpoint, Path(args.output) / f"{tag}-{setting}", budget, cfg,
                         subsplit=args.subsplit, test_top_k=args.top_k, resume=True, progress=False)
        res.update(tag=tag, setting=setting, seconds=round(time.time() - t, 1))
        out["runs"].append(res)
        write_json(args.json, out)
        print(f"{tag} ({setting}): {time.time() - t:.0f} s", flush=True)
    print(markdown(out))
    return 0


def largest_corners(space):
    """The largest subnet at each (rank, patch): memory grows with width, depth, heads and MLP ratio."""
    big = space.largest().to_dict()
    return [Arch(**{**big, "rank_ratio": r, "patch_size": p})
            for r in space.rank_ratio for p in space.patch_size]


def markdown(out: dict) -> str:
    lines = ["| budget (arena SRAM / flash) | search | method | evals | held-out top-1 | test top-1 | SRAM KB | "
             "flash KB | fits | binds | subnet |", "|---|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for run in out["runs"]:
        b = run["budget"]
        label = f"{b['arena_sram_bytes'] / 1024:g} KB / {b['flash_bytes'] / 1024:g} KB"
        for r in run["rows"]:
            if r["method"] not in ("evolution #1", "random search", "hand-scaled"):
                continue
            binds = _binding(r, b)
            lines.append(f"| {label} | {run['setting']} | {r['method'].replace(' #1', '')} | {r['evaluations']} | "
                         f"{r['heldout_top1']:.2f} | {r['test_top1']:.2f} | {r['sram_bytes'] / 1024:.2f} | "
                         f"{r['flash_bytes'] / 1024:.1f} | {r['fits']} | {binds} | {r['summary']} |")
    return "\n".join(lines)


def _binding(row: dict, budget: dict) -> str:
    s, f = row["sram_bytes"] / budget["arena_sram_bytes"], row["flash_bytes"] / budget["flash_bytes"]
    which = "SRAM" if s >= f else "flash"
    return f"{which} {100 * max(s, f):.0f}%"


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
