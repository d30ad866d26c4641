"""int8 vs float top-1 of subnets of the tiny CIFAR-10 supernet on the full test set, the NumPy
reference checked bit for bit against the vectorised path, and the per-tensor cosine report.

    python benchmarks/quant_accuracy.py [--limit N] [--reference-images 200]
writes benchmarks/results/quant_accuracy.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mcuformer.api import evaluate_quantized, quantize_checkpoint
from mcuformer.data.datasets import spread
from mcuformer.errors import run_script
from mcuformer.memory import Techniques
from mcuformer.quantize.reference import reference_logits
from mcuformer.quantize.report import cosine_report
from mcuformer.quantize import fakequant
from mcuformer.quantize.workflow import _dataset, load_subnet
from mcuformer.utils.io import write_json

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "models/cifar10-tiny/supernet.pt"


def test_images(state, arch, n: int) -> torch.Tensor:
    ds = _dataset(state, arch, None, "val")
    ds = ds.subset(spread(len(ds), n))
    return torch.stack([ds[i][0] for i in range(len(ds))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="test images (0: all 10k)")
    ap.add_argument("--reference-images", type=int, default=200)
    ap.add_argument("--report-images", type=int, default=500)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/quant_accuracy.json"))
    args = ap.parse_args()
    rows = []
    for arch in ("largest", "smallest"):
        for method in ("minmax", "percentile"):
            with tempfile.TemporaryDirectory() as tmp:
                q = quantize_checkpoint(CHECKPOINT, arch, tmp, method=method, num_images=256, seed=0)
                t0 = time.time()
                r = evaluate_quantized(tmp, checkpoint=CHECKPOINT, limit=args.limit, progress=False)
                r.update(name=arch, method=method, eval_seconds=round(time.time() - t0, 1))
                model, state = load_subnet(CHECKPOINT, q.arch)
                if method == "minmax":
                    images = q.quantize_image(test_images(state, q.arch, args.reference_images))
                    fast = fakequant.forward(q, images)
                    r["reference_bit_exact"] = {
                        name: bool(np.array_equal(reference_logits(q, images, t), fast))
                        for name, t in (("all", Techniques.all()), ("none", Techniques.none()))}
                    r["reference_images"] = len(images)
                cos = cosine_report(q, model, test_images(state, q.arch, args.report_images))
                r["cosine"] = {c["tensor"]: round(c["cosine"], 5) for c in cos}
                r["min_cosine"] = min(cos, key=lambda c: c["cosine"])
            print(f"{arch:8s} {method:10s} float {r['float_top1']:.2f}  int8 {r['int8_top1']:.2f}  "
                  f"drop {r['drop']:+.2f}  agree {r['agreement']:.2f}  min cos {r['min_cosine']['cosine']:.4f} "
                  f"({r['min_cosine']['tensor']})  ref {r.get('reference_bit_exact')}", flush=True)
            rows.append(r)
    write_json(args.output, {"checkpoint": str(CHECKPOINT.relative_to(ROOT)), "calibration": "256 train images, seed 0",
                             "test_images": rows[0]["count"], "machine": platform.processor() or platform.machine(),
                             "torch": torch.__version__, "results": rows})


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
