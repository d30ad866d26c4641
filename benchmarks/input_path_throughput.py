"""Training images/s of the two input paths on the same supernet, sampling and steps, in one run:
the DataLoader path (per-image CPU transforms in worker processes) against the device-resident path
(the split decoded once onto the device, whole-batch augmentation there). Timed by the trainer itself
(training steps only; the one-off decode to the device is reported apart).

    python benchmarks/input_path_throughput.py                       # GPU if present, else CPU
    python benchmarks/input_path_throughput.py --steps 20 --batch 64 # a short CPU run
"""

from __future__ import annotations

import argparse
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


def measure(space, cfg_dict, data_on_device: str, data_path) -> dict:
    cfg = TrainConfig.from_dict({**cfg_dict, "data_on_device": data_on_device})
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = train_supernet(space, out, cfg, data_path, progress=False)
        wall = time.perf_counter() - t0
    rec = summary["history"][-1]
    return {"path": "device-resident" if data_on_device == "on" else f"DataLoader ({cfg.workers} workers)",
            "img_per_s": round(rec["img_per_s"], 1), "train_seconds": rec["seconds"], "wall_seconds": round(wall, 1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default=str(ROOT / "configs/cifar10.yaml"))
    ap.add_argument("--config", default=str(ROOT / "configs/train-cifar10-gpu.yaml"))
    ap.add_argument("--data-path", default=None)
    ap.add_argument("--steps", type=int, default=None, help="training steps per path (default 60 GPU, 10 CPU)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/input_path_throughput.json"))
    args = ap.parse_args(argv)
    gpu = torch.cuda.is_available()
    from mcuformer.utils.io import read_structured
    cfg = dict(read_structured(args.config))
    cfg.update(epochs=1, steps_per_epoch=args.steps or (60 if gpu else 10), eval_every=1, limit_eval=cfg.get(
        "eval_batch_size", 256), time_budget_s=0, checkpoint_every_s=0)
    if args.batch:
        cfg["batch_size"] = args.batch
    if args.workers is not None:
        cfg["workers"] = args.workers
    space = SearchSpace.load(args.space)
    rows = [measure(space, cfg, "off", args.data_path), measure(space, cfg, "on", args.data_path)]
    speedup = rows[1]["img_per_s"] / max(rows[0]["img_per_s"], 1e-9)
    print(f"{'input path':<28} {'img/s':>9} {'train s':>8} {'wall s':>7}")
    for r in rows:
        print(f"{r['path']:<28} {r['img_per_s']:>9.1f} {r['train_seconds']:>8.1f} {r['wall_seconds']:>7.1f}")
    print(f"device-resident / DataLoader: {speedup:.2f}x "
          f"({'GPU ' + torch.cuda.get_device_name() if gpu else 'CPU, ' + str(torch.get_num_threads()) + ' threads'})")
    write_json(args.output, {"rows": rows, "speedup": round(speedup, 3), "space": Path(args.space).name,
                             "config": Path(args.config).name, "steps": cfg["steps_per_epoch"],
                             "batch": cfg["batch_size"], "sampling": cfg.get("sampling"),
                             "device": torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
                             "torch": torch.__version__})
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
