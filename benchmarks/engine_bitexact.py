"""Bit-exactness of the C engine at scale: random archs of every shape the engine must handle (padded
grids, 1 or 3 channels, cls token or not, mean or cls pooling, dense or low rank, odd widths, head
widths 4-16), random technique sets, random weights, exported for the STM32F746 under both schedules
(even archs: the smallest arena; odd: the fastest that fits), then

- on the host: gcc -O2, then gcc -O1 with AddressSanitizer and UndefinedBehaviorSanitizer, 2 images;
- on the emulated Cortex-M7 (QEMU mps2-an500, DSP build): 2 images;

int8 logits compared with the NumPy integer reference (mcuformer.verify), guard bytes checked. The CI
tests (tests/test_engine.py) run fewer; this is the closing figure.

    python benchmarks/engine_bitexact.py                  # 100 host + 12 M7 archs, ~3 min on 2 idle cores
    python benchmarks/engine_bitexact.py --host 20 --m7 4
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import TECHNIQUES, Techniques, check_arch  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402


def random_arch(rng: random.Random, rel_pos_choices: tuple[int, ...] = ()) -> Arch:
    """A small random arch the engine can build; ``rel_pos_choices`` draws a relative-position clip too."""
    while True:
        img = rng.choice([8, 9, 12, 16, 20])
        cls = rng.random() < 0.5
        depth = rng.randint(1, 3)
        arch = Arch(img_size=img, patch_size=rng.choice([2, 3, 4, 5]), rank_ratio=rng.choice([0.25, 0.5, 0.75, 1.0]),
                    embed_dim=rng.choice([8, 12, 16, 20, 24, 30, 32]), depth=depth,
                    num_heads=tuple(rng.randint(1, 3) for _ in range(depth)),
                    mlp_ratio=tuple(rng.choice([1.0, 1.5, 2.0, 2.5]) for _ in range(depth)),
                    num_classes=rng.randint(2, 12), head_dim=rng.choice([4, 6, 8, 16]), in_chans=rng.choice([1, 3]),
                    cls_token=cls, pool=rng.choice(["cls", "gap"]) if cls else "gap",
                    rel_pos=rng.choice(rel_pos_choices) if rel_pos_choices else 0)
        try:
            check_arch(arch)
        except Exception:
            continue
        if arch.num_tokens <= 101:
            return arch


def print_summary(rows: list[dict]) -> dict:
    """Archs and bit-exact archs per (target, schedule), printed as a table; also the benchmark's JSON."""
    summary = {}
    for target in ("host", "cortex-m7"):
        for schedule in ("smallest", "fastest"):
            part = [r for r in rows if r["target"] == target and r["schedule"] == schedule]
            summary[f"{target} {schedule}"] = {"archs": len(part), "bit_exact": sum(r["ok"] for r in part)}
    print(f"{'target, schedule':<28} {'archs':>6} {'bit-exact':>10}")
    for key, s in summary.items():
        print(f"{key:<28} {s['archs']:>6} {s['bit_exact']:>10}")
    return summary


def check_one(tmp: Path, i: int, target: str, arch: Arch, rng: random.Random, portable_too: bool = False) -> dict:
    """Exports ``arch`` with random weights (seed i), techniques drawn from ``rng`` and i's schedule, and
    verifies it on ``target`` (the host with the sanitizers); ``portable_too``: also the portable kernels."""
    flags = Techniques(**{t: rng.random() < 0.6 for t in TECHNIQUES})
    schedule = "fastest" if i % 2 else "smallest"
    folder = tmp / f"{target}-{i}"
    info = export_model(random_quant_model(arch, seed=i), folder, "stm32f746", flags, schedule=schedule)
    r = verify(folder, target, images=2, seed=i, sanitize=True)
    ok = r.bit_exact and r.guard_damage == 0 and (target != "host" or r.sanitizers)
    portable = None
    if portable_too:
        p = verify(folder, target, images=2, seed=i, portable=True)
        portable = p.bit_exact and p.predictions == r.predictions
        ok = ok and portable
    kernels = sorted({line.split("mcu_")[1].split("(")[0] for line in (folder / "mcuformer_model.c").read_text()
                      .splitlines() if line.strip().startswith("mcu_") and "(" in line})
    return {"index": i, "target": target, "arch": arch.short(), "rel_pos": arch.rel_pos, "tokens": arch.num_tokens,
            "techniques": flags.label(), "schedule": schedule, "arena_bytes": info["arena_bytes"],
            "bit_exact": r.bit_exact, "portable_bit_exact": portable, "guard_damage": r.guard_damage, "ok": ok,
            "kernels": kernels, "instructions": r.instructions_per_inference if target == "cortex-m7" else None}


def one(tmp: Path, i: int, target: str) -> dict:
    rng = random.Random(50_000 + i)
    return check_one(tmp, i, target, random_arch(rng), rng)


def check_all(one, tmp: Path, host: int, m7: int, workers: int) -> list[dict]:
    """``one(tmp, index, target)`` for ``host`` archs on the host and ``m7`` on the emulated M7, in parallel."""
    jobs = [(i, "host") for i in range(host)] + [(10_000 + i, "cortex-m7") for i in range(m7)]
    with ThreadPoolExecutor(workers) as pool:
        return list(tqdm(pool.map(lambda job: one(tmp, *job), jobs), total=len(jobs), desc="archs", unit="arch"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", type=int, default=100, help="random archs on the host (ASan + UBSan)")
    ap.add_argument("--m7", type=int, default=12, help="random archs on the emulated Cortex-M7")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/engine_bitexact.json"))
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuformer-bitexact-") as tmp:
        rows = check_all(one, Path(tmp), args.host, args.m7, args.workers)
    elapsed = time.time() - t0
    summary = print_summary(rows)
    kernels = sorted({k for r in rows for k in r["kernels"]})
    print(f"kernels exercised: {len(kernels)}: {', '.join(kernels)}")
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"NOT bit-exact: {r}")
    write_json(args.output, {"what": "random archs, random techniques, both schedules: int8 logits vs the NumPy "
                                     "integer reference; host gcc -O2 then ASan+UBSan; Cortex-M7 in QEMU (DSP)",
                             "summary": summary, "kernels": kernels, "archs": rows, "seconds": round(elapsed, 1)})
    print(f"wrote {args.output} ({elapsed:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
