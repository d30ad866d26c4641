"""int8 top-1 of the searched model against the memory budget: SRAM budgets (flash held at the STM32F746's
1 MB) and flash budgets (SRAM held at its 320 KB), evolution against random search and the hand-scaled
baseline, on the zoo supernet.

For each budget point, one `run_search` (the API behind `mcuformer search`): fitness = top-1 on the
held-out split the supernet was trained without; random search gets as many evaluations as the
evolution made, under the same budget; hand-scaled is the largest uniform subnet that fits (chosen
without accuracy). Each method's subnet is then quantised to int8 (128 calibration images) and its
int8 top-1 measured by the engine's integers on the test images. SRAM is the board's total: the arena
budget is 16 KB less (the stack/runtime reserve), as for the real boards.

    python benchmarks/budget_curve.py            # ~25 min on one core; writes benchmarks/results/budget_curve.json
                                                  # and docs/budget_curve.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import McuformerError, run_script  # noqa: E402
from mcuformer.search import EvolutionConfig  # noqa: E402
from mcuformer.search.runner import make_budget, run_search  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.train import load_checkpoint  # noqa: E402
from mcuformer.utils.io import file_sha256, write_json, write_yaml  # noqa: E402

METHODS = ("evolution #1", "random search", "hand-scaled")
BASE_SRAM_KB, BASE_FLASH_KB = 320, 1024  # the STM32F746: the budget a sweep does not vary


def relative(path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if ROOT in p.parents else p.name


def budget_points(sram_kb: list[float], flash_kb: list[float]) -> list[tuple[str, float, float]]:
    return ([("sram", s, BASE_FLASH_KB) for s in sram_kb] + [("flash", BASE_SRAM_KB, f) for f in flash_kb])


_MEASURED: dict[str, dict] = {}  # an arch found at several points (or by several methods) is measured once


def int8_top1(checkpoint, arch: Arch, folder: Path, test_limit: int) -> dict:
    key = json.dumps(arch.to_dict(), sort_keys=True)
    if key not in _MEASURED:
        _MEASURED[key] = _quantize_and_measure(checkpoint, arch, folder, test_limit)
    return _MEASURED[key]


def _quantize_and_measure(checkpoint, arch: Arch, folder: Path, test_limit: int) -> dict:
    from mcuformer.quantize.workflow import evaluate_quantized, quantize_checkpoint
    folder.mkdir(parents=True, exist_ok=True)
    write_yaml(folder / "arch.yaml", {"arch": arch.to_dict()})
    quantize_checkpoint(checkpoint, folder / "arch.yaml", folder / "int8", num_images=128)
    return evaluate_quantized(folder / "int8", checkpoint=checkpoint, limit=test_limit, progress=False)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcuformer.utils.io import atomic_write
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"evolution #1": ("tab:red", "o", "evolution"), "random search": ("tab:blue", "s", "random search"),
              "hand-scaled": ("tab:gray", "^", "hand-scaled")}
    for ax, kind, xkey, xlabel in ((axes[0], "sram", "sram_kb", f"SRAM budget (KB; flash {BASE_FLASH_KB} KB)"),
                                   (axes[1], "flash", "flash_kb", f"flash budget (KB; SRAM {BASE_SRAM_KB} KB)")):
        for method, (color, marker, label) in styles.items():
            pts = sorted((r[xkey], r["int8_top1"]) for r in rows
                         if r["sweep"] == kind and r["method"] == method and r.get("int8_top1") is not None)
            if pts:
                ax.plot(*zip(*pts), color=color, marker=marker, label=label)
        ax.set_xscale("log", base=2)
        ax.set(xlabel=xlabel, ylabel="int8 top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Searched model's int8 top-1 against the memory budget (CIFAR-10, zoo supernet)")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--sram-kb", type=float, nargs="+", default=[32, 40, 48, 64, 512])
    ap.add_argument("--flash-kb", type=float, nargs="+", default=[128, 256, 512, 1024, 2048])
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--fitness", choices=["top1", "loglik"], default=None,
                    help="the search's held-out score (default: the pipeline's)")
    ap.add_argument("--test-limit", type=int, default=1000, help="test images for float and int8 top-1 (0: all)")
    ap.add_argument("--work", default=str(ROOT / "runs/budget-curve"))
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/budget_curve.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs/budget_curve.png"))
    args = ap.parse_args()
    from mcuformer.pipeline import SEARCH_DEFAULTS
    from mcuformer.train.checkpoint import recorded_split
    fitness = args.fitness or SEARCH_DEFAULTS["fitness"]

    ckpt = Path(args.checkpoint)
    split = recorded_split(ckpt, load_checkpoint(ckpt))
    evo = EvolutionConfig(population=args.population, generations=args.generations,
                          parents=max(2, args.population // 4), mutations=args.population // 2,
                          crossovers=args.population // 2)
    rows, t_start = [], time.time()
    for sweep, sram, flash in budget_points(args.sram_kb, args.flash_kb):
        tag = f"{sweep}-sram{sram:g}-flash{flash:g}"
        budget = make_budget("stm32f746", sram_kb=sram, flash_kb=flash)
        base = {"sweep": sweep, "sram_kb": sram, "flash_kb": flash, "arena_budget_bytes": budget.sram_bytes}
        t0 = time.time()
        try:
            result = run_search(ckpt, Path(args.work) / tag, budget, evo, subsplit=split, test_limit=args.test_limit,
                                test_top_k=1, baselines=True, workers=1, resume=True, progress=False,
                                fitness=fitness)
        except McuformerError as e:  # no subnet of the space fits this budget
            print(f"{tag}: {e}")
            rows += [{**base, "method": m, "fits": False, "note": str(e)} for m in METHODS]
            continue
        for r in result["rows"]:
            if r["method"] not in METHODS:
                continue
            arch = Arch.from_dict(r["arch"])
            acc = int8_top1(ckpt, arch, Path(args.work) / tag / r["method"].replace(" ", "-").replace("#", ""),
                            args.test_limit)
            rows.append({**base, "method": r["method"], "fits": r["fits"], "summary": r["summary"],
                         "params": r["params"], "sram_bytes": r["sram_bytes"], "flash_bytes": r["flash_bytes"],
                         "heldout_top1": r["heldout_top1"], "float_top1": acc["float_top1"],
                         "int8_top1": acc["int8_top1"], "test_images": acc["count"],
                         "evaluations": r["evaluations"]})
        print(f"{tag}: " + ", ".join(f"{r['method']} {r['int8_top1']:.2f}%" for r in rows[-3:])
              + f"  ({time.time() - t0:.0f} s)", flush=True)

    print("\n| sweep | SRAM KB | flash KB | method | int8 top-1 | float top-1 | SRAM used | flash used | subnet |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "int8_top1" not in r:
            print(f"| {r['sweep']} | {r['sram_kb']:g} | {r['flash_kb']:g} | {r['method']} | no subnet fits | | | | |")
            continue
        print(f"| {r['sweep']} | {r['sram_kb']:g} | {r['flash_kb']:g} | {r['method']} | {r['int8_top1']:.2f} % | "
              f"{r['float_top1']:.2f} % | {r['sram_bytes'] / 1024:.1f} KB | {r['flash_bytes'] / 1024:.1f} KB | "
              f"{r['summary']} |")
    write_json(args.output, {"supernet": relative(ckpt), "supernet_sha256": file_sha256(ckpt),
                             "evolution": evo.to_dict(), "fitness": fitness, "test_limit": args.test_limit,
                             "base_sram_kb": BASE_SRAM_KB, "base_flash_kb": BASE_FLASH_KB,
                             "seconds": round(time.time() - t_start), "rows": rows,
                             "command": "python benchmarks/budget_curve.py " + " ".join(sys.argv[1:])})
    plot(rows, Path(args.plot))
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
