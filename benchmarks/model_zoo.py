"""The model zoo's searched int8 models: for each board, search the committed supernet within the
board's arena budget and flash, quantise the best subnet, measure its int8 top-1 on the full test
split, export the C engine, verify it on the host and the emulated Cortex-M7, and keep the int8
model (params.npz + manifest.json, a few hundred KB) with a manifest of the measured figures.

    python benchmarks/model_zoo.py [--checkpoint models/cifar10-tiny/supernet.pt] [--boards stm32f746 stm32f427]
    # ~2 min per board on 2 cores; writes models/<name>/int8-<board>/ and benchmarks/results/model_zoo.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.memory import get_board  # noqa: E402
from mcuformer.pipeline import PipelineConfig, engine_stage, quantize_stage, search_stage  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-tiny/supernet.pt"))
    ap.add_argument("--boards", nargs="+", default=["stm32f746", "stm32f427"])
    ap.add_argument("--data-path", default=None, help="default: the CIFAR-10 archive")
    ap.add_argument("--work", default=str(ROOT / "runs/zoo"), help="search/engine working folders")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/model_zoo.json"))
    args = ap.parse_args()
    ckpt = Path(args.checkpoint)
    rows = []
    for name in args.boards:
        board = get_board(name)
        t0 = time.time()
        cfg = PipelineConfig(space=[], train_config=Path(), output=Path(args.work) / name,
                             data_path=Path(args.data_path) if args.data_path else None, board=name)
        searched = search_stage(cfg, ckpt, board, workers=1, progress=True)
        acc = quantize_stage(cfg, ckpt, searched, progress=True)
        engine = engine_stage(cfg, board, progress=True)
        m7 = engine.get("cortex_m7") or {}
        dest = ckpt.parent / f"int8-{name}"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(cfg.output / "int8", dest, ignore=shutil.ignore_patterns("accuracy.json"))
        row = {
            "board": board.to_dict(), "model": str(dest.relative_to(ROOT)), "supernet": str(ckpt),
            "arch": searched["arch"], "summary": searched["summary"],
            "float_top1": acc["float_top1"], "int8_top1": acc["int8_top1"], "test_images": acc["count"],
            "planned_arena_bytes": engine["export"]["arena_bytes"],
            "planned_flash_bytes": engine["export"]["planned_flash_bytes"],
            "measured_ram_bytes": m7.get("ram_bytes"), "measured_static_ram_bytes": m7.get("static_ram_bytes"),
            "measured_stack_bytes": m7.get("stack_bytes"), "measured_flash_bytes": m7.get("model_flash_bytes"),
            "instructions_per_inference": m7.get("instructions_per_inference"),
            "instructions_per_mac": m7.get("instructions_per_mac"), "macs": engine["export"]["macs"],
            "bit_exact_host": engine["host"]["bit_exact"], "bit_exact_cortex_m7": m7.get("bit_exact"),
            "verified_images": engine["host"]["images"], "seconds": round(time.time() - t0, 1),
            "command": f"python benchmarks/model_zoo.py --checkpoint {args.checkpoint} --boards {name}",
            "data": "CIFAR-10 JPEG tarball ../shared/data/cifar10-jpg.tar.gz (10,000 test images)",
        }
        write_json(dest / "zoo.json", row)
        rows.append(row)
    print("\n| board | subnet | float top-1 | int8 top-1 | arena planned | RAM measured | flash measured | "
          "instructions / inference | bit-exact (host, M7) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kb = lambda b: f"{b / 1024:.1f} KB" if b is not None else "-"  # noqa: E731
        print(f"| {r['board']['name']} | {r['summary']} | {r['float_top1']:.2f} % | {r['int8_top1']:.2f} % | "
              f"{kb(r['planned_arena_bytes'])} | {kb(r['measured_ram_bytes'])} | {kb(r['measured_flash_bytes'])} | "
              f"{(r['instructions_per_inference'] or 0) / 1e6:.1f} M | {r['bit_exact_host']}, {r['bit_exact_cortex_m7']} |")
    write_json(args.output, {"rows": rows})
    return 0 if all(r["bit_exact_host"] and r["bit_exact_cortex_m7"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
