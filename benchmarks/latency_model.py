"""Calibrate and check the latency model (mcuformer.memory.latency) against the emulated Cortex-M7.

Random archs of CIFAR-like and small-ImageNet-like shapes (embedding 24-128, 1-4 heads of 8-32, MLP
ratio 1-4, dense or low rank, cls or mean pooling, 17-65 tokens) with random technique sets are
exported with random weights and run once in QEMU (mps2-an500, -icount shift=0, DSP build) with a
SysTick read after every kernel call (benchmarks/engine_profile.py). The first half of the archs fits
the instructions per unit of work (least squares, non-negative, on every kernel call); the second half
checks whole-inference predictions against the emulator's count. QEMU counts instructions, not cycles.

    python benchmarks/latency_model.py                # ~10 min; writes benchmarks/results/latency_model.json
    python benchmarks/latency_model.py --archs 12     # quicker
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine_profile import profile  # noqa: E402
from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import TECHNIQUES, Techniques, build_ops, check_arch  # noqa: E402
from mcuformer.memory.latency import COEFFICIENTS, UNITS, op_work, predicted_instructions  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402

TARGET = 0.05  # whole-inference prediction within 5 %


def random_arch(rng: random.Random) -> Arch:
    while True:
        depth = rng.randint(1, 2)
        cls = rng.random() < 0.5
        arch = Arch(img_size=32, patch_size=rng.choice([4, 8]), rank_ratio=rng.choice([0.5, 1.0]),
                    embed_dim=rng.choice([24, 32, 48, 64, 96, 128]), depth=depth,
                    num_heads=tuple(rng.randint(1, 4) for _ in range(depth)),
                    mlp_ratio=tuple(rng.choice([1.0, 2.0, 3.0, 4.0]) for _ in range(depth)),
                    num_classes=10, head_dim=rng.choice([8, 16, 32]), cls_token=cls,
                    pool=rng.choice(["cls", "gap"]) if cls else "gap")
        try:
            check_arch(arch)
            return arch
        except Exception:
            continue


def measure(i: int, tmp: Path):
    rng = random.Random(7000 + i)
    arch = random_arch(rng)
    flags = Techniques(**{t: rng.random() < 0.5 for t in TECHNIQUES})
    folder = tmp / f"m{i}"
    schedule = rng.choice(["fastest", "smallest"])
    info = export_model(random_quant_model(arch, seed=i), folder, "stm32h743", flags, schedule=schedule)
    counts = dict(profile(folder))
    ops = build_ops(arch, flags, info["schedule_budget_bytes"])
    rows = [(op, counts[f"{op.name}:{op.kernel}"]) for op in ops]
    return arch, flags, rows


def fit(rows) -> dict:
    from scipy.optimize import nnls

    a = np.array([[op_work(op)[u] for u in UNITS] for op, _ in rows], np.float64)
    b = np.array([count for _, count in rows], np.float64)
    # relative least squares: each call weighs by 1 / its count, so small kernels count too
    weight = 1.0 / np.maximum(b, 100.0)
    coef, _ = nnls(a * weight[:, None], b * weight)
    return {u: round(float(c), 3) for u, c in zip(UNITS, coef)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=44, help="archs in all (half fit, half check)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/latency_model.json"))
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuformer-latency-") as tmp:
        measured = [measure(i, Path(tmp)) for i in range(args.archs)]
    half = args.archs // 2
    fitted = fit([r for _, _, rows in measured[:half] for r in rows])
    print("instructions per unit of work (fitted on", half, "archs):")
    for u in UNITS:
        print(f"  {u:<18} {fitted[u]:>9.3f}   (in the package: {COEFFICIENTS[u]})")
    print(f"\n{'arch':<44} {'techniques':<40} {'measured':>11} {'predicted':>11} {'error':>7}")
    checks = []
    for i, (arch, flags, rows) in enumerate(measured):
        ops = [op for op, _ in rows]
        real = sum(c for _, c in rows)
        for name, coef in (("fitted", fitted), ("package", COEFFICIENTS)):
            pred = predicted_instructions(ops, coef)
            checks.append({"arch": arch.short(), "techniques": flags.label(), "set": "fit" if i < half else "check",
                           "coefficients": name, "measured": real, "predicted": round(pred),
                           "error": round(pred / real - 1, 4)})
        row = checks[-2]
        print(f"{arch.short():<44} {flags.label()[:40]:<40} {real:>11,} {row['predicted']:>11,} "
              f"{100 * row['error']:>6.1f}%{'' if i >= half else '  (fit)'}")
    held = [c for c in checks if c["set"] == "check" and c["coefficients"] == "fitted"]
    worst = max(abs(c["error"]) for c in held)
    pkg = max(abs(c["error"]) for c in checks if c["set"] == "check" and c["coefficients"] == "package")
    print(f"\nheld-out archs: {len(held)}, worst error {100 * worst:.1f}% with the fitted coefficients, "
          f"{100 * pkg:.1f}% with the package's (target {100 * TARGET:.0f}%)")
    write_json(args.output, {
        "what": "latency model (mcuformer.memory.latency) vs QEMU instruction counts (mps2-an500 -cpu cortex-m7 "
                "-icount shift=0, DSP build); instructions, not cycles",
        "fitted": fitted, "package": COEFFICIENTS, "archs": args.archs, "checks": checks,
        "worst_heldout_error_fitted": worst, "worst_heldout_error_package": pkg, "target": TARGET,
        "seconds": round(time.time() - t0, 1)})
    print(f"wrote {args.output}")
    return 0 if pkg <= TARGET else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
