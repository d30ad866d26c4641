"""Top-1 against images seen for two supernet training recipes, on the same space, data, schedule and
steps: uniform sampling (one random subnet per step) and the sandwich rule with in-place distillation
(largest + smallest + random subnets per step, the largest's soft predictions teaching the others).

Three subnets are tracked: the largest, the smallest, and the largest subnet within an int8 flash budget
(1 MB where the space reaches past it; on a space that never does, the midpoint of its flash range, named in
the output). Equal images seen means equal data, not equal compute: the sandwich step runs 2 + R subnets, so
the wall time of each recipe is reported beside its accuracy.

    python benchmarks/accuracy_vs_compute.py                    # CPU-sized: cifar10-tiny, 4 x 25k images
    python benchmarks/accuracy_vs_compute.py --images 400000 --points 8 --space configs/cifar10.yaml
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import flash_bytes  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.train import TrainConfig, train_supernet  # noqa: E402
from mcuformer.utils.io import atomic_write, read_structured, write_json  # noqa: E402

RECIPES = {
    "uniform": {"sampling": "uniform", "distill": "none"},
    "sandwich+distill": {"sampling": "sandwich", "distill": "inplace"},
}


def budget_subnet(space: SearchSpace, num_classes: int, flash_kb: float | None, draws: int = 400):
    """(arch, budget KB): the most parameters within the flash budget among seeded random draws + the ends."""
    lo, hi = flash_bytes(space.smallest(num_classes)), flash_bytes(space.largest(num_classes))
    if flash_kb is None:
        flash_kb = 1024.0 if hi > 1024 * 1024 else round((lo + hi) / 2 / 1024, 1)
    rng = random.Random(0)
    cands = [space.sample(rng, num_classes) for _ in range(draws)] + [space.smallest(num_classes)]
    fits = [a for a in cands if flash_bytes(a) <= flash_kb * 1024]
    if not fits:
        raise SystemExit(f"no subnet of {space.name} fits {flash_kb} KB of flash")
    return max(fits, key=lambda a: (a.num_params(), a.short())), flash_kb


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "configs/cifar10-tiny.yaml"))
    ap.add_argument("--config", default=str(ROOT / "configs/train-cifar10-cpu.yaml"))
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--images", type=int, default=100_000, help="training images seen per recipe")
    ap.add_argument("--points", type=int, default=4, help="evaluations along the way (= epochs of the schedule)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--limit-eval", type=int, default=10_000, help="test images per evaluation (10k: all)")
    ap.add_argument("--flash-kb", type=float, default=None)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/accuracy_vs_compute.json"))
    ap.add_argument("--plot", default=str(ROOT / "docs/accuracy_vs_compute.png"))
    args = ap.parse_args(argv)

    space = SearchSpace.load(args.space)
    base = dict(read_structured(args.config))
    batch = args.batch or int(base.get("batch_size", 128))
    steps = max(1, args.images // (args.points * batch))
    base.update(epochs=args.points, steps_per_epoch=steps, batch_size=batch, eval_every=1,
                limit_eval=args.limit_eval, device="cpu" if not torch.cuda.is_available() else "auto")
    num_classes = space.num_classes or 10
    mid, flash_kb = budget_subnet(space, num_classes, args.flash_kb)
    print(f"space {space.name}; {args.points} x {steps} steps x {batch} images per recipe; budget subnet "
          f"(flash <= {flash_kb:g} KB): {mid.short()}, {flash_bytes(mid) / 1024:.1f} KB, {mid.num_params():,} params")
    runs = {}
    for name in args.recipes.split(","):
        cfg = TrainConfig.from_dict({**base, **RECIPES[name]})
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            summary = train_supernet(space, out, cfg, args.data_path, progress=True, extra_eval={"budget": mid})
            wall = time.perf_counter() - t0
        points = [{"images_seen": h["images_seen"], "train_seconds": h["seconds"],
                   **{k: v["top1"] for k, v in h["eval"].items()}} for h in summary["history"] if "eval" in h]
        runs[name] = {"config": {**RECIPES[name], "sandwich_random": cfg.sandwich_random}, "points": points,
                      "wall_seconds": round(wall, 1)}
        print(f"  {name}: {wall:.0f} s")

    print(f"\n{'recipe':<18} {'images':>9} {'largest':>8} {'smallest':>9} {'budget':>8} {'train s':>8}")
    for name, run in runs.items():
        secs = 0.0
        for p in run["points"]:
            secs += p["train_seconds"]
            print(f"{name:<18} {p['images_seen']:>9,} {p['largest']:>7.2f}% {p['smallest']:>8.2f}% "
                  f"{p['budget']:>7.2f}% {secs:>8.0f}")
    write_json(args.output, {"space": space.name, "config": Path(args.config).name, "images_per_recipe":
                             args.points * steps * batch, "eval_images": args.limit_eval,
                             "budget_subnet": {"arch": mid.short(), "flash_kb": flash_kb,
                                               "flash_bytes": flash_bytes(mid), "params": mid.num_params()},
                             "device": "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
                             "runs": runs})
    _plot(runs, flash_kb, Path(args.plot))
    print(f"wrote {args.output} and {args.plot}")
    return 0


def _plot(runs: dict, flash_kb: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, key, title in zip(axes, ("largest", "smallest", "budget"),
                              ("largest subnet", "smallest subnet", f"best within {flash_kb:g} KB flash")):
        for name, run in runs.items():
            ax.plot([p["images_seen"] / 1000 for p in run["points"]], [p[key] for p in run["points"]], marker="o",
                    ms=3, label=f"{name} ({run['wall_seconds']:.0f} s)")
        ax.set(title=title, xlabel="training images seen (thousands)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on the test split (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), mode="wb")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
