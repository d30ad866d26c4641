"""How fast the int8 top-1 is measured on a CPU: the torch integer path (quantize/torchpath.py, what
`mcuformer evaluate --quantized` and the pipeline's quantize stage run) against three baselines in the
same run, on the same images: the NumPy oracle (quantize/fakequant.py), the torch path with every
matmul in float64 (``TorchInt8(float32=False)``, the path before float32 was used where it is exact),
and that with a plain port of fixedpoint.requantize (a fresh tensor per operation, the first form of
the torch path). Every path must give the same logits, bit for bit; the benchmark stops if not.

    python benchmarks/int8_eval_speed.py [--model models/cifar10-zoo/int8-stm32f746] [--images 256] [--threads 1 2]
    # writes benchmarks/results/int8_eval_speed.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import run_script  # noqa: E402
from mcuformer.quantize import fakequant, torchpath  # noqa: E402
from mcuformer.quantize.model import QuantModel  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

I64 = torch.int64


def plain_requantize(acc, m, s):
    """fixedpoint.requantize transcribed operation by operation (the baseline)."""
    m, s = torch.as_tensor(m, dtype=I64, device=acc.device), torch.as_tensor(s, dtype=I64, device=acc.device)
    high = ((acc << torch.clamp(s, min=0)) * m + (1 << 30)) >> 31
    e = torch.clamp(-s, min=0)
    mask = (torch.ones_like(e) << e) - 1
    return (high >> e) + ((high & mask) > ((mask >> 1) + (high < 0).to(I64))).to(I64)


TORCH_PATHS = {  # label: (plain requantize, float32 where exact)
    "torch, plain requantize, float64 (first baseline)": (True, False),
    "torch, float64 matmuls (baseline)": (False, False),
    "torch, float32 where exact (default)": (False, True),
}
BASELINE = "torch, float64 matmuls (baseline)"


def time_torch(q, images, batch: int, plain: bool, float32: bool) -> tuple[float, np.ndarray]:
    fast = torchpath.requantize_
    torchpath.requantize_ = plain_requantize if plain else fast
    try:
        runner = torchpath.TorchInt8(q, float32=float32)
        t0 = time.perf_counter()
        out = np.concatenate([runner.forward(images[i:i + batch]).numpy() for i in range(0, len(images), batch)])
        return time.perf_counter() - t0, out
    finally:
        torchpath.requantize_ = fast


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/cifar10-zoo/int8-stm32f746"))
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--numpy-images", type=int, default=0, help="time the NumPy oracle on fewer (0: as many)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/int8_eval_speed.json"))
    args = ap.parse_args()
    args.numpy_images = args.numpy_images or args.images
    q = QuantModel.load(args.model)
    a = q.arch
    images = np.random.default_rng(0).integers(-128, 128, (args.images, a.img_size, a.img_size, a.in_chans),
                                               dtype=np.int8)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        want = np.concatenate([fakequant.forward(q, images[i:min(i + args.batch, args.numpy_images)])
                               for i in range(0, args.numpy_images, args.batch)]).astype(np.int64)
        rows.append({"path": "NumPy oracle (fakequant)", "threads": threads, "images": args.numpy_images,
                     "seconds": time.perf_counter() - t0})
        for label, (plain, float32) in TORCH_PATHS.items():
            sec, got = time_torch(q, images, args.batch, plain, float32)
            if not np.array_equal(got[:args.numpy_images], want):
                print(f"the torch path ({label}) differs from the NumPy oracle", file=sys.stderr)
                return 1
            rows.append({"path": label, "threads": threads, "images": args.images, "seconds": sec})
    print(f"int8 forward of {Path(args.model).name} ({a.short()}), "
          f"batch {args.batch}, bit-exact across paths")
    print("| path | threads | images | seconds | images/s | vs float64 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["images_per_s"] = r["images"] / r["seconds"]
    for r in rows:
        base = next(b for b in rows if b["threads"] == r["threads"] and b["path"] == BASELINE)
        r["speedup_vs_float64"] = r["images_per_s"] / base["images_per_s"]
        print(f"| {r['path']} | {r['threads']} | {r['images']} | {r['seconds']:.2f} | {r['images_per_s']:.1f} | "
              f"{r['speedup_vs_float64']:.2f}x |")
    write_json(args.output, {"model": str(Path(args.model).resolve().relative_to(ROOT))
                             if ROOT in Path(args.model).resolve().parents else Path(args.model).name,
                             "batch": args.batch, "rows": rows, "bit_exact": True,
                             "torch": torch.__version__,
                             "command": "python benchmarks/int8_eval_speed.py " + " ".join(sys.argv[1:])})
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
