"""The engine on an ImageNet-shaped (240 x 240) subnet: random weights, the STM32F746's linker script
(320 KB SRAM, 1 MB flash, the 16 MB QSPI flash for the constants past it), run on the emulated Cortex-M7.

  T (0.4, 32) smallest   smallest subnet of configs/mcu-T.yaml at rank 0.4, patch 32 (65 tokens)

The memory model's planned arena and flash sit beside what the emulator measured: RAM = .data + .bss
(the arena, the runtime, 2 x 64 guard bytes) + the painted stack's high-water mark; flash = internal
(.text, .rodata: code and the constants that fit) + external (.extflash); instructions from SysTick
under -icount shift=0 (an instruction count, not Cortex-M7 cycles). The logits are checked bit for bit
against the reference.

    python benchmarks/engine_imagenet_shape.py   # ~2 min; writes benchmarks/results/engine_imagenet_shape.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import estimate, get_board  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402

KB = 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank-ratio", type=float, default=0.4)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--which", default="smallest")
    ap.add_argument("--keep", metavar="DIR", help="export here (default: a temporary folder)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/engine_imagenet_shape.json"))
    args = ap.parse_args()

    space = SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(args.rank_ratio, args.patch_size)
    arch = space.largest() if args.which == "largest" else space.smallest()
    board = get_board("stm32f746")
    est = estimate(arch)
    print(f"{arch.short()}: {arch.num_tokens} tokens, planned arena {est.peak_sram_bytes / KB:.1f} KB, "
          f"flash {est.flash_bytes / KB:.1f} KB")
    t0 = time.time()
    q = random_quant_model(arch, seed=0, calibration_images=4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp) / "engine"
        info = export_model(q, folder, board)
        t1 = time.time()
        m7 = verify(folder, "cortex-m7", images=1, timeout=1200)
        t2 = time.time()
    row = {
        "arch": arch.to_dict(), "short": arch.short(), "tokens": arch.num_tokens, "board": board.to_dict(),
        "macs": info["macs"], "planned_arena_bytes": info["arena_bytes"], "planned_flash_bytes":
        info["planned_flash_bytes"], "flash_location": info["flash_location"], "bit_exact": m7.bit_exact,
        "guard_damage": m7.guard_damage, "measured": m7.to_dict(),
        "seconds": {"quantize_export": round(t1 - t0, 1), "build_run_compare": round(t2 - t1, 1)},
        "what": "QEMU mps2-an500 -cpu cortex-m7 -icount shift=0; instruction counts, not cycles; random weights",
    }
    lines = [
        "| subnet | tokens | MMAC | arena planned | RAM measured (static + stack) | SRAM | flash planned | "
        "flash internal (code + the constants that fit; no test image) | flash external (QSPI) | "
        "instructions / inference | / MAC | logits |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {arch.short()} | {arch.num_tokens} | {info['macs'] / 1e6:.0f} | {info['arena_bytes'] / KB:.1f} KB | "
        f"{m7.ram_bytes / KB:.1f} KB ({m7.static_ram_bytes / KB:.1f} + {m7.stack_bytes / KB:.1f}) | "
        f"{board.sram_bytes // KB} KB | {info['planned_flash_bytes'] / KB:.1f} KB | "
        f"{(m7.model_flash_bytes - m7.external_flash_bytes) / KB:.1f} KB | {m7.external_flash_bytes / KB:.1f} KB | "
        f"{m7.instructions_per_inference / 1e6:,.0f} M | {m7.instructions_per_mac:.2f} | "
        f"{'bit-exact' if m7.bit_exact else 'DIFFER'} |",
    ]
    print("\n".join(lines))
    write_json(args.output, row)
    print(f"wrote {args.output}")
    return 0 if m7.bit_exact and not m7.guard_damage else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
