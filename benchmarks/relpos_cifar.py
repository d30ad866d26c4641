"""CIFAR-10 top-1 of the same supernet trained with and without 2-D relative position encoding at
equal training compute: the same space, recipe, seed, images and number of steps; only the
attention's relative position tables (``rel_pos``) differ. Reports the largest and smallest
subnets' top-1 on the first N test images after training, and the wall time of each run.

    python benchmarks/relpos_cifar.py                     # cifar10-tiny, 3 epochs on 10k images (CPU)
    python benchmarks/relpos_cifar.py --space configs/cifar10.yaml --epochs 30 --limit-train 0 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.train import TrainConfig, train_supernet  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "configs/cifar10-tiny.yaml"))
    ap.add_argument("--config", default=str(ROOT / "configs/train-cifar10-cpu.yaml"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--limit-train", type=int, default=10000, help="training images (0: all 50k)")
    ap.add_argument("--limit-eval", type=int, default=2000, help="test images scored at the end")
    ap.add_argument("--rel-pos", type=int, default=14, help="clipping distance of the rel-pos run (official 14)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/relpos_cifar.json"))
    args = ap.parse_args()

    base = SearchSpace.load(args.space)
    rows = []
    for rel in (0, args.rel_pos):
        space = dataclasses.replace(base, rel_pos=rel, name=f"{base.name}-relpos{rel}")
        cfg = TrainConfig.load(args.config)
        cfg = dataclasses.replace(cfg, epochs=args.epochs, limit_train=args.limit_train, limit_eval=args.limit_eval,
                                  eval_every=args.epochs, device=args.device, workers=1)
        with tempfile.TemporaryDirectory() as out:
            t = time.time()
            summary = train_supernet(space, out, cfg, progress=False)
            wall = time.time() - t
        ev = summary["history"][-1]["eval"]
        rows.append({"rel_pos": rel, "params_largest": space.largest(10).num_params(),
                     "epochs": summary["epochs_done"], "limit_train": args.limit_train,
                     "top1_largest": ev["largest"]["top1"], "top1_smallest": ev["smallest"]["top1"],
                     "eval_images": args.limit_eval, "wall_s": round(wall, 1)})
        print(f"rel_pos {rel}: largest {rows[-1]['top1_largest']:.2f}%, smallest {rows[-1]['top1_smallest']:.2f}% "
              f"({wall:.0f} s)", flush=True)
    print("\n| rel_pos | params (largest) | epochs x images | top-1 largest | top-1 smallest | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rel_pos']} | {r['params_largest']:,} | {r['epochs']} x {r['limit_train'] or 50000} | "
              f"{r['top1_largest']:.2f}% | {r['top1_smallest']:.2f}% | {r['wall_s']} |")
    write_json(args.output, {"space": base.name, "config": Path(args.config).name, "rows": rows,
                             "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                             "machine": platform.machine(),
                             "command": "python benchmarks/relpos_cifar.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
