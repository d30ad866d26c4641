"""Where the C engine's instructions go: instructions per kernel call of one inference on the emulated
Cortex-M7, grouped by kernel, for one subnet and one technique set.

The exported engine is copied and its ``mcuformer_invoke`` gets a SysTick read after every kernel call
(codegen/runtime/cortex_m/counter.h: QEMU -icount shift=0, 40 instructions per tick, so each figure is
within 40 instructions); the verification program (``make emulator``) then runs it on one image. These
are QEMU instruction counts, not Cortex-M7 cycles. The engine is first checked bit for bit by verify.

    python benchmarks/engine_profile.py                           # CIFAR-10 largest, dense, all techniques
    python benchmarks/engine_profile.py --rank 0.5 --techniques none
    python benchmarks/engine_profile.py --quantized models/cifar10-zoo/int8-stm32f746   # a real int8 model
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import Techniques  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.verify import verify  # noqa: E402

CIFAR_LARGEST = dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=(4, 4, 4),
                     mlp_ratio=(2.0, 2.0, 2.0), num_classes=10, head_dim=16)
PROBE = """
#include "counter.h"
#include "semihost.h"
static uint64_t mcu_profile_last;
static void mcu_profile(const char *name)
{
    const uint64_t now = mcu_counter_instructions();
    mcu_write("profile ");
    mcu_write(name);
    mcu_write(" ");
    mcu_write_uint(now - mcu_profile_last);
    mcu_write("\\n");
    mcu_profile_last = mcu_counter_instructions();
}
"""


def instrument(model_c: Path) -> None:
    """A probe after every kernel call of mcuformer_invoke (the calls follow a /* name: kernel */ line)."""
    lines, out, name = model_c.read_text().splitlines(), [], None
    for line in lines:
        out.append(line)
        m = re.match(r"\s*/\* (\S+): (\S+)[^*]*\*/", line)
        if m:
            name = f"{m.group(1)}:{m.group(2)}"
        elif name and line.strip().startswith("mcu_") and line.rstrip().endswith(";"):
            out.append(f'    mcu_profile("{name}");')
            name = None
    text = "\n".join(out) + "\n"
    first_fn = text.index("int mcuformer_invoke")
    text = text[:first_fn] + PROBE + text[first_fn:]
    text = text.replace("{\n    if (image && image", "{\n    mcu_profile_last = mcu_counter_instructions();\n"
                        "    if (image && image", 1)
    model_c.write_text(text)


def profile(folder: Path) -> list[tuple[str, int]]:
    """(op name:kernel, instructions) of every kernel call of one inference of an exported engine."""
    result = verify(folder, "cortex-m7", images=1)  # writes the test image and checks the logits
    if not result.bit_exact:
        raise SystemExit("the engine's logits differ from the reference")
    instrument(folder / "mcuformer_model.c")
    subprocess.run(["make", "-s", "emulator"], cwd=folder, check=True, capture_output=True)
    run = subprocess.run(["make", "-s", "run-emulator"], cwd=folder, capture_output=True, text=True)
    calls, seen = [], set()
    for line in run.stdout.splitlines():
        if line.startswith("profile "):
            _, name, count = line.split()
            if name in seen:
                break  # the first inference only
            seen.add(name)
            calls.append((name, int(count)))
    if not calls:
        raise SystemExit(f"no profile lines:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=float, default=1.0)
    ap.add_argument("--quantized", default=None, help="an int8 model folder (mcuformer quantize, or one under "
                    "models/) instead of the random-weight CIFAR-10 subnet")
    ap.add_argument("--techniques", default="all")
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--schedule", default="fastest", choices=["fastest", "smallest"])
    args = ap.parse_args()
    arch = Arch(rank_ratio=args.rank, **CIFAR_LARGEST)
    with tempfile.TemporaryDirectory(prefix="mcuformer-profile-") as tmp:
        folder = Path(tmp) / "engine"
        model = args.quantized or random_quant_model(arch, 0)
        info = export_model(model, folder, args.board, Techniques.parse(args.techniques), schedule=args.schedule)
        calls = profile(folder)
    total = sum(c for _, c in calls)
    by_kernel = defaultdict(lambda: [0, 0])
    for name, count in calls:
        by_kernel[name.split(":")[1]][0] += count
        by_kernel[name.split(":")[1]][1] += 1
    print(f"{info['arch_short']} techniques {args.techniques}, schedule {args.schedule}: {total:,} instructions, "
          f"{total / info['macs']:.3f} per MAC, "
          f"arena {info['arena_bytes']:,} B")
    print(f"{'kernel':<26} {'calls':>6} {'instructions':>13} {'share':>7}")
    for kernel, (count, n) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0]):
        print(f"{kernel:<26} {n:>6} {count:>13,} {100 * count / total:>6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
