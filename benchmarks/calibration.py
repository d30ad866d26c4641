"""Min/max against percentile calibration on trained subnets: int8 top-1 on the full test split and agreement
with the float subnet, per calibration seed (which 256 training images set the ranges).

    python benchmarks/calibration.py [--subnet LABEL CHECKPOINT ARCH ...] [--seeds 0 1] [--limit N]

Without --subnet it measures the F746 zoo model's subnet with the zoo supernet's inherited weights. The
fine-tuned zoo checkpoints (`mcuformer finetune` outputs, not committed) go in with --subnet. Writes
benchmarks/results/calibration.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from mcuformer.errors import run_script
from mcuformer.quantize.settings import DEFAULT_CALIBRATION_IMAGES, DEFAULT_PERCENTILE
from mcuformer.utils.checks import input_file
from mcuformer.utils.io import write_json, write_yaml

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models/cifar10-zoo"
METHODS = ("minmax", "percentile")


def measure(checkpoint: Path, arch_file: Path, seed: int, limit: int) -> dict:
    """int8 top-1 and float agreement of one subnet under each calibration method, the same images."""
    from mcuformer.api import evaluate_quantized, quantize_checkpoint

    row = {}
    for method in METHODS:  # min/max ignores the percentile
        with tempfile.TemporaryDirectory() as tmp:
            quantize_checkpoint(checkpoint, arch_file, tmp, num_images=DEFAULT_CALIBRATION_IMAGES, seed=seed,
                                method=method, percentile=DEFAULT_PERCENTILE)
            r = evaluate_quantized(tmp, checkpoint=checkpoint, limit=limit, progress=False)
        row.update(arch=r["arch"], count=r["count"], float_top1=r["float_top1"])
        row[method] = {"int8_top1": r["int8_top1"], "agreement": r["agreement"]}
    row["gain"] = round(row["percentile"]["int8_top1"] - row["minmax"]["int8_top1"], 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subnet", nargs=3, action="append", metavar=("LABEL", "CHECKPOINT", "ARCH"),
                    help="a subnet to measure: a label, its checkpoint and its arch file (repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--limit", type=int, default=0, help="test images (0: all)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/calibration.json"))
    args = ap.parse_args()
    if args.limit < 0 or any(s < 0 for s in args.seeds):
        ap.error("--limit and --seeds must not be negative")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subnets = args.subnet
        if not subnets:
            arch = json.loads((ZOO / "int8-stm32f746/zoo.json").read_text())["arch"]
            write_yaml(Path(tmp) / "arch.yaml", {"arch": arch})
            subnets = [["F746 zoo subnet, inherited weights", str(ZOO / "supernet.pt"), str(Path(tmp) / "arch.yaml")]]
        for label, checkpoint, arch_file in subnets:
            input_file(checkpoint, "checkpoint")
            input_file(arch_file, "arch file")
            for seed in args.seeds:
                t0 = time.time()
                row = {"subnet": label, "seed": seed, **measure(Path(checkpoint), Path(arch_file), seed, args.limit)}
                row["seconds"] = round(time.time() - t0, 1)
                rows.append(row)
                print(f"{label} (seed {seed}): min/max {row['minmax']['int8_top1']:.2f} %, percentile "
                      f"{row['percentile']['int8_top1']:.2f} % ({row['gain']:+.2f}), float {row['float_top1']:.2f} %")
    print(f"\n| subnet | seed | float | min/max int8 (agreement) | percentile {DEFAULT_PERCENTILE:g} int8 (agreement) |"
          " gain |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['subnet']} | {r['seed']} | {r['float_top1']:.2f} | {r['minmax']['int8_top1']:.2f} "
              f"({r['minmax']['agreement']:.2f}) | {r['percentile']['int8_top1']:.2f} "
              f"({r['percentile']['agreement']:.2f}) | {r['gain']:+.2f} |")
    command = "python " + shlex.join([f"benchmarks/{Path(__file__).name}", *sys.argv[1:]])
    write_json(Path(args.output), {"command": command, "calibration_images": DEFAULT_CALIBRATION_IMAGES,
                                   "percentile": DEFAULT_PERCENTILE, "results": rows})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
