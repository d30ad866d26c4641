"""Relative position in the int8 engine, measured:

1. bit-exactness: random archs with 2-D relative position (clip 1, 2, 3 or the official 14; padded
   grids, cls token or not, dense or low rank, odd widths), random technique sets, random weights,
   exported for the STM32F746 under both schedules (even archs: the smallest arena, fused attention
   rows; odd: the fastest, mostly layer-wise), int8 logits against the NumPy integer reference
   (mcuformer.verify) on the host (gcc -O2, then ASan + UBSan) and on the emulated Cortex-M7 (DSP build;
   the first M7 arch also with the portable kernels), guard bytes checked;
2. cost on the emulated Cortex-M7: the tiny CIFAR-10 space's largest subnet (random weights) with
   rel_pos 14 and without, under the smallest-arena and the fastest schedule: instructions per
   inference (QEMU counts, not cycles), MACs, arena and flash;
3. int8 against float: the cosine of the int8 logits (dequantised) with the float model's, and the
   top-1 agreement, on random images for random-weight rel-pos models and the same archs without
   relative position.

    python benchmarks/relpos_engine.py            # 30 host + 5 M7 archs, ~3 min on 2 cores
    python benchmarks/relpos_engine.py --host 10 --m7 2 --no-cost
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402

import engine_bitexact  # noqa: E402  (the sibling benchmark's random archs)


def random_arch(rng: random.Random) -> Arch:
    return engine_bitexact.random_arch(rng, rel_pos_choices=(1, 2, 3, 14))


def one(tmp: Path, i: int, target: str) -> dict:
    rng = random.Random(70_000 + i)
    return engine_bitexact.check_one(tmp, i, target, random_arch(rng), rng,
                                     portable_too=target == "cortex-m7" and i == 10_000)


def agreement(count: int, images: int = 64) -> list[dict]:
    """int8 vs float on random images, each arch with and without relative position."""
    import torch

    from mcuformer.quantize import fakequant
    from mcuformer.quantize.calibrate import calibrate
    from mcuformer.quantize.model import build_quant_model
    from mcuformer.quantize.synthetic import random_float_model

    rows = []
    for i in range(count):
        base = random_arch(random.Random(90_000 + i))
        for arch in (base, replace(base, rel_pos=0)):
            model = random_float_model(arch, seed=i)
            x = torch.randn(2 * images, arch.in_chans, arch.img_size, arch.img_size,
                            generator=torch.Generator().manual_seed(i))
            q = build_quant_model(model, calibrate(model, [x[:images]]))
            test = x[images:]
            with torch.no_grad():
                f = model(test).numpy()
            s, z = q.act["logits"]
            d = (fakequant.forward(q, q.quantize_image(test)).astype(np.float64) - z) * s
            cos = float((f * d).sum() / (np.linalg.norm(f) * np.linalg.norm(d)))
            rows.append({"arch": arch.short(), "rel_pos": arch.rel_pos, "cosine": round(cos, 5),
                         "top1_agreement": round(100.0 * float((f.argmax(1) == d.argmax(1)).mean()), 2)})
    return rows


def m7_cost(tmp: Path) -> list[dict]:
    from mcuformer.space import SearchSpace

    base = SearchSpace.load(ROOT / "configs/cifar10-tiny.yaml").largest(10)
    rows = []
    for rel in (0, 14):
        arch = replace(base, rel_pos=rel)
        q = random_quant_model(arch, seed=0)
        for schedule in ("smallest", "fastest"):
            folder = tmp / f"cost-{rel}-{schedule}"
            info = export_model(q, folder, "stm32f746", schedule=schedule)
            r = verify(folder, "cortex-m7", images=1)
            rows.append({"arch": arch.short(), "rel_pos": rel, "schedule": schedule, "bit_exact": r.bit_exact,
                         "instructions": r.instructions_per_inference, "macs": info["macs"],
                         "arena_bytes": info["arena_bytes"], "flash_bytes": info["planned_flash_bytes"]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", type=int, default=30, help="random rel-pos archs on the host (ASan + UBSan)")
    ap.add_argument("--m7", type=int, default=5, help="random rel-pos archs on the emulated Cortex-M7")
    ap.add_argument("--agreement", type=int, default=10, help="archs for int8 vs float (each with and without)")
    ap.add_argument("--no-cost", action="store_true", help="skip the M7 cost of the tiny space's largest subnet")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/relpos_engine.json"))
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuformer-relpos-") as tmp:
        rows = engine_bitexact.check_all(one, Path(tmp), args.host, args.m7, args.workers)
        cost = [] if args.no_cost else m7_cost(Path(tmp))
    summary = engine_bitexact.print_summary(rows)
    kernels = sorted({k for r in rows for k in r["kernels"]})
    print(f"kernels exercised: {', '.join(kernels)}")
    print(f"clip distances: {sorted({r['rel_pos'] for r in rows})}")
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"NOT bit-exact: {r}")
    if cost:
        print(f"\n{'M7 cost, ' + cost[0]['arch']:<60} {'instructions':>13} {'MACs':>10} {'arena B':>8} "
              f"{'flash B':>8} {'exact':>6}")
        for c in cost:
            print(f"{'rel_pos ' + str(c['rel_pos']) + ', ' + c['schedule']:<60} {c['instructions']:>13,.0f} "
                  f"{c['macs']:>10,} {c['arena_bytes']:>8,} {str(c['flash_bytes']):>8} {str(c['bit_exact']):>6}")
        bad += [c for c in cost if not c["bit_exact"]]
    agree = agreement(args.agreement)
    print(f"\n{'int8 vs float (64 random images)':<34} {'archs':>6} {'mean cosine':>12} {'min cosine':>11} "
          f"{'top-1 agree %':>14}")
    for rel in (True, False):
        part = [a for a in agree if bool(a["rel_pos"]) == rel]
        if part:
            print(f"{'with rel_pos' if rel else 'same archs, rel_pos 0':<34} {len(part):>6} "
                  f"{np.mean([a['cosine'] for a in part]):>12.4f} {min(a['cosine'] for a in part):>11.4f} "
                  f"{np.mean([a['top1_agreement'] for a in part]):>14.1f}")
    elapsed = time.time() - t0
    write_json(args.output, {"what": "random archs with 2-D relative position, random techniques, both schedules: "
                                     "int8 logits vs the NumPy integer reference; host gcc -O2 then ASan+UBSan; "
                                     "Cortex-M7 in QEMU (DSP, the first also portable); int8 vs float on random "
                                     "images with and without rel_pos",
                             "summary": summary, "kernels": kernels, "archs": rows, "m7_cost": cost, "agreement": agree,
                             "seconds": round(elapsed, 1)})
    print(f"wrote {args.output} ({elapsed:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
