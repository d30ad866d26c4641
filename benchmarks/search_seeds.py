"""Evolution against random search over several seeds, at equal evaluations, on the zoo supernet.

One search per budget is one draw of noise: the budget curve's gaps to random search (-0.69 to +0.28 points
on the 10k test, stage-11 supernet) cannot tell the methods apart. Here, at each budget, evolution and random
search each run with seeds 0..S-1; random search gets as many evaluations as that seed's evolution made. For
every pick the table gives its held-out fitness (what both maximise, on the split the supernet was trained
without) and its float top-1 on the test images; per method the mean and standard deviation over seeds, and,
paired by seed, how often evolution's pick beats random search's and the mean difference with its standard error.
One fitness cache serves every run, so a subnet is scored once.

    python benchmarks/search_seeds.py     # 21 min on 2 cores; writes benchmarks/results/search_seeds.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.utils.io import file_sha256, write_json  # noqa: E402

METHODS = ("evolution", "random search")


def relative(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if ROOT in p.parents else p.name


def paired(rows: list[dict], key: str) -> dict:
    """Evolution minus random search, seed by seed: wins, ties, mean difference and its standard error."""
    by = {(r["method"], r["seed"]): r[key] for r in rows}
    diffs = [by[("evolution", s)] - by[("random search", s)] for m, s in by if m == "evolution"]
    sem = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None
    return {"wins": sum(d > 0 for d in diffs), "ties": sum(d == 0 for d in diffs), "seeds": len(diffs),
            "mean_difference": statistics.fmean(diffs), "standard_error": sem}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--budgets", nargs="+", default=["320:1024", "320:256"],
                    help="SRAM_KB:FLASH_KB pairs on the STM32F746 (default: the board itself, and 256 KB flash)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--population", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--generations", type=int, default=None, help="default: the pipeline's")
    ap.add_argument("--test-limit", type=int, default=0, help="test images for float top-1 (0: all 10,000)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/search_seeds.json"))
    args = ap.parse_args()

    from tqdm import tqdm

    from mcuformer.pipeline import SEARCH_DEFAULTS
    from mcuformer.search import EvolutionConfig
    from mcuformer.search.baselines import random_candidates
    from mcuformer.search.evolution import Feasibility, Scored, evolve, rank
    from mcuformer.search.fitness import (FitnessCache, default_heldout_split, heldout_dataset, load_supernet,
                                          preload, resolve_search_data, test_dataset)
    from mcuformer.search.runner import make_budget
    from mcuformer.train.distributed import init_distributed
    from mcuformer.train.evaluate import evaluate_archs

    budgets = []
    for b in args.budgets:
        try:
            sram, flash = (float(x) for x in b.split(":"))
        except ValueError:
            sys.exit(f"search_seeds.py: error: --budgets takes SRAM_KB:FLASH_KB pairs, got {b!r}")
        budgets.append((sram, flash))
    if args.seeds < 2:
        sys.exit("search_seeds.py: error: --seeds must be at least 2 (a spread needs two runs)")
    population = args.population or SEARCH_DEFAULTS["population"]
    generations = args.generations or SEARCH_DEFAULTS["generations"]
    fitness = SEARCH_DEFAULTS["fitness"]

    ckpt = Path(args.checkpoint)
    info = init_distributed("cpu")
    net = load_supernet(ckpt, info)
    data = resolve_search_data(net, None)
    split = default_heldout_split(net, data)
    if split is None:
        sys.exit(f"search_seeds.py: error: {ckpt} records no held-out split it was trained without")
    heldout, _ = heldout_dataset(net, data, split)
    cache = FitnessCache(net.model, preload(heldout, info, 500, 1), info, "auto", fitness)
    test_batches = preload(test_dataset(net, data, args.test_limit), info, 500, 1)
    test_top1: dict = {}

    def float_top1(archs) -> list[float]:
        new = [a for a in dict.fromkeys(archs) if a not in test_top1]
        for a, acc in zip(new, evaluate_archs(net.model, new, test_batches, info, "auto", progress=False)):
            test_top1[a] = (acc.top1, acc.count)
        return [test_top1[a][0] for a in archs]

    rows, t_start = [], time.time()
    for sram, flash in budgets:
        budget = make_budget("stm32f746", sram_kb=sram, flash_kb=flash)
        feasible = Feasibility(budget)
        for seed in tqdm(range(args.seeds), desc=f"SRAM {sram:g} KB, flash {flash:g} KB", unit="seed"):
            cfg = EvolutionConfig(population=population, generations=generations, parents=max(2, population // 5),
                                  mutations=population // 2, crossovers=population // 2, seed=seed)
            t0 = time.time()
            state = evolve(net.space, net.num_classes, budget, cache.evaluate, cfg)
            best_evo, n = state.ranked()[0], len(state.evaluated)
            t_evo = time.time() - t0
            t0 = time.time()
            drawn = random_candidates(net.space, net.num_classes, feasible, n, seed, cfg.max_tries)
            best_rnd = rank([Scored(a, f, *feasible.measure(a)[:2]) for a, f in zip(drawn, cache.evaluate(drawn))])[0]
            t_rnd = time.time() - t0
            for method, pick, evaluations, seconds in (("evolution", best_evo, n, t_evo),
                                                       ("random search", best_rnd, len(drawn), t_rnd)):
                sram_b, flash_b, _ = budget.measure(pick.arch)
                rows.append({"sram_kb": sram, "flash_kb": flash, "method": method, "seed": seed,
                             "evaluations": evaluations, "fitness": pick.fitness,
                             "heldout_top1": cache.heldout_top1([pick.arch])[0],
                             "test_top1": float_top1([pick.arch])[0], "sram_bytes": sram_b, "flash_bytes": flash_b,
                             "summary": pick.arch.short(), "arch": pick.arch.to_dict(),
                             "seconds_with_shared_cache": round(seconds, 1)})

    summary = []
    print(f"\nfitness: held-out {fitness} on {len(heldout)} images; float top-1 on "
          f"{next(iter(test_top1.values()))[1]:,} test images; {args.seeds} seeds; population {population}, "
          f"{generations} generations\n")
    print("| SRAM KB | flash KB | method | fitness, mean ± sd | test top-1, mean ± sd | mean flash KB |")
    print("|---|---|---|---|---|---|")
    for sram, flash in budgets:
        here = [r for r in rows if (r["sram_kb"], r["flash_kb"]) == (sram, flash)]
        for method in METHODS:
            mine = [r for r in here if r["method"] == method]
            f, t = [r["fitness"] for r in mine], [r["test_top1"] for r in mine]
            fl = statistics.fmean(r["flash_bytes"] for r in mine) / 1024
            print(f"| {sram:g} | {flash:g} | {method} | {statistics.fmean(f):.4f} ± {statistics.stdev(f):.4f} | "
                  f"{statistics.fmean(t):.2f} ± {statistics.stdev(t):.2f} % | {fl:.0f} |")
        s = {"sram_kb": sram, "flash_kb": flash, "fitness": paired(here, "fitness"),
             "test_top1": paired(here, "test_top1")}
        summary.append(s)
    print("\n| SRAM KB | flash KB | evolution > random: fitness (wins, mean diff ± s.e.) "
          "| test top-1 (wins, mean diff ± s.e.) |")
    print("|---|---|---|---|")
    for s in summary:
        f, t = s["fitness"], s["test_top1"]
        print(f"| {s['sram_kb']:g} | {s['flash_kb']:g} | {f['wins']}/{f['seeds']}, {f['mean_difference']:+.4f} ± "
              f"{f['standard_error']:.4f} | {t['wins']}/{t['seeds']}, {t['mean_difference']:+.2f} ± "
              f"{t['standard_error']:.2f} pt |")
    write_json(args.output, {"supernet": relative(ckpt), "supernet_sha256": file_sha256(ckpt), "fitness": fitness,
                             "heldout_images": len(heldout), "test_images": next(iter(test_top1.values()))[1],
                             "seeds": args.seeds, "population": population, "generations": generations,
                             "seconds": round(time.time() - t_start), "summary": summary, "rows": rows,
                             "command": "python benchmarks/search_seeds.py " + " ".join(sys.argv[1:])})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
