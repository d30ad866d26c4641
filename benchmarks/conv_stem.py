"""The convolutional tokenizer (conv stem), measured:

1. bit-exactness: random conv-stem archs (mcuformer.quantize.synthetic.random_conv_arch, random weights
   and technique sets) exported and run by mcuformer.verify on the host (gcc -O2, then ASan + UBSan) and
   on the emulated Cortex-M7 (DSP path, and the portable path for some), logits against the integer
   reference; on the M7 the ELF's ``mcuformer_arena`` symbol must be the planned arena (+ 2 x 64 guard
   bytes, rounded up to words);
2. the stem's peak SRAM (the memory model's lower bound of the stem section, which the planner reaches)
   with and without the row-by-row schedule, for the conv stems of configs/cifar10-conv.yaml, and the
   whole subnet's planned arena with all techniques and with all but row-by-row;
3. the same transformer behind a patch-4 and behind a conv stem on the M7 (arena, flash, instructions);
4. instructions per MAC of the 3x3 convolution kernel (mcu_conv3x3_row over whole maps) and
   instructions per output byte of the max-pool on the emulated Cortex-M7, DSP and portable paths, each
   output checked against the integer reference (a hash of all output bytes).

The instruction figures are QEMU counts (mps2-an500, -cpu cortex-m7, -icount shift=0: SysTick at 40
instructions per tick), not Cortex-M7 cycles (see benchmarks/engine_speed.py).

    python benchmarks/conv_stem.py            # ~5 min on 2 cores; writes benchmarks/results/conv_stem.json
    python benchmarks/conv_stem.py --host 30 --m7 5
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.memory import TECHNIQUES, Techniques, memory_report  # noqa: E402
from mcuformer.memory.schedule import section_cost, stem_dims  # noqa: E402
from mcuformer.quantize import intops  # noqa: E402
from mcuformer.quantize.fixedpoint import quantize_multiplier  # noqa: E402
from mcuformer.quantize.synthetic import random_conv_arch, random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402
from m7_bench import PROLOGUE, Blob, build_and_run, write_program  # noqa: E402

LIBRARY = ROOT / "src" / "mcuformer" / "codegen" / "library"
GUARD_BYTES = 64  # the verification builds' MCUFORMER_GUARD_BYTES

# the convolutions of configs/cifar10-conv.yaml's stems: (side, in, out)
CONV_SHAPES = [(32, 3, 24), (32, 3, 48), (32, 3, 128), (16, 24, 96), (16, 48, 192)]
POOL_SHAPES = [(32, 48), (32, 128), (16, 192)]


def cifar_arch(layers: int, width: int, embed: int) -> Arch:
    return Arch(img_size=32, patch_size=1, rank_ratio=0.5, embed_dim=embed, depth=6, num_heads=(4,) * 6,
                mlp_ratio=(2.0,) * 6, num_classes=10, head_dim=32, cls_token=False, stem="conv", stem_layers=layers,
                stem_width=width if layers == 2 else 0, stem_pool=(True,) * layers)


# ---------------------------------------------------------------- 1. bit-exactness

def random_case(i: int):
    rng = random.Random(5000 + i)
    arch = random_conv_arch(rng)
    return arch, Techniques(**{t: rng.random() < 0.6 for t in TECHNIQUES})


def arena_symbol_bytes(elf: Path) -> int:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^[0-9a-f]+ ([0-9a-f]+) \w mcuformer_arena$", out, re.M)
    return int(m.group(1), 16) if m else -1


def bit_exact(tmp: Path, host: int, m7: int, portable: int) -> dict:
    def host_one(i):
        arch, flags = random_case(i)
        folder = tmp / f"h{i}"
        export_model(random_quant_model(arch, seed=i), folder, "stm32f746", flags)
        r = verify(folder, "host", images=2, seed=i, sanitize=True)
        return {"arch": arch.short(), "techniques": flags.label(), "tokens": arch.num_tokens,
                "bit_exact": r.bit_exact and r.sanitizers, "guard_damage": r.guard_damage}

    with ThreadPoolExecutor(2) as pool:
        hosts = list(pool.map(host_one, range(host)))
    m7s = []
    for i in range(m7):
        arch, flags = random_case(1000 + i)
        folder = tmp / f"m{i}"
        info = export_model(random_quant_model(arch, seed=i), folder, "stm32f746", flags)
        row = {"arch": arch.short(), "techniques": flags.label(), "tokens": arch.num_tokens,
               "planned_arena_bytes": info["arena_bytes"]}
        for path in ["dsp"] + (["portable"] if i < portable else []):
            r = verify(folder, "cortex-m7", images=2, seed=i, portable=path == "portable")
            elf = folder / ("build/cortex-m7-portable" if path == "portable" else "build/cortex-m7") / "verify.elf"
            symbol = arena_symbol_bytes(elf)
            row[path] = {"bit_exact": r.bit_exact, "guard_damage": r.guard_damage, "arena_symbol_bytes": symbol,
                         "arena_symbol_is_planned": symbol == -(-(info["arena_bytes"] + 2 * GUARD_BYTES) // 4) * 4,
                         "instructions_per_mac": round(r.instructions_per_mac, 3), "stack_bytes": r.stack_bytes}
        m7s.append(row)
    return {"host": hosts, "cortex_m7": m7s}


# ---------------------------------------------------------------- 2. peak SRAM

def stem_peaks() -> list[dict]:
    rows = []
    for layers, width, embed in [(1, 0, 96), (1, 0, 128), (1, 0, 192), (2, 24, 96), (2, 32, 128), (2, 48, 192)]:
        arch = cifar_arch(layers, width, embed)
        d = stem_dims(arch)
        cost = {name: section_cost("conv_stem", d, t).peak for name, t in [
            ("layerwise", Techniques.none()), ("row_by_row_alone", Techniques.only("row_by_row")),
            ("all_but_row_by_row", Techniques.all().without("row_by_row")), ("all", Techniques.all())]}
        report = memory_report(arch)
        rows.append({"stem": f"E{embed} " + arch.short().split()[2], "arch": arch.short(), "tokens": arch.num_tokens,
                     **{f"stem_{k}_bytes": v for k, v in cost.items()},
                     "subnet_planned_all_bytes": report.peak_sram_bytes,
                     "subnet_planned_all_but_row_by_row_bytes": report.ablation["all_but"]["row_by_row"],
                     "subnet_layerwise_baseline_bytes": report.layerwise_baseline_bytes,
                     "subnet_peak_op": report.peak_op.name})
    return rows


# ---------------------------------------------------------------- whole CIFAR-10 subnets on the M7

def models(tmp: Path) -> list[dict]:
    """The two subnets of benchmarks/conv_stem_cifar.py (random weights): the same transformer behind a
    patch-4 stem and behind the conv stem, exported for the STM32F746 and run in QEMU (1 image)."""
    rows = []
    for layers, name in [(0, "patch4"), (2, "conv32P-128P")]:
        arch = cifar_arch(2, 32, 128) if layers else Arch(
            img_size=32, patch_size=4, rank_ratio=0.5, embed_dim=128, depth=6, num_heads=(4,) * 6,
            mlp_ratio=(2.0,) * 6, num_classes=10, head_dim=32, cls_token=False)
        folder = tmp / name
        info = export_model(random_quant_model(arch, seed=0), folder, "stm32f746")
        r = verify(folder, "cortex-m7", images=1)
        stem_macs = sum(op.macs for op in memory_report(arch).ops if op.name.startswith("stem."))
        rows.append({"stem": name, "arch": arch.short(), "bit_exact": r.bit_exact, "arena_bytes": info["arena_bytes"],
                     "arena_symbol_is_planned": arena_symbol_bytes(folder / "build/cortex-m7/verify.elf")
                     == -(-(info["arena_bytes"] + 2 * GUARD_BYTES) // 4) * 4,
                     "flash_bytes": r.flash_bytes, "ram_bytes": r.ram_bytes, "macs": r.macs, "stem_macs": stem_macs,
                     "instructions": r.instructions_per_inference,
                     "instructions_per_mac": round(r.instructions_per_mac, 3)})
    return rows


# ---------------------------------------------------------------- 3. kernel speed on the M7

MAIN = PROLOGUE + r"""
static int8_t row[MAX_ROW];
static int8_t col[MAX_COL];

static uint32_t fnv(uint32_t h, const int8_t *p, int32_t n)
{
    for (int32_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
    return h;
}

/* all output rows of one shape; returns the hash of the outputs, adds the instructions to *count */
static uint32_t run(const conv_t *s, int32_t timed, uint64_t *count)
{
    const int8_t *x = bench_data + s->x;
    const int32_t in_row = s->size * s->cin, out_rows = s->pool ? (s->size + 1) / 2 : s->size;
    const int32_t out_bytes = (s->pool ? (s->size + 1) / 2 : s->size) * s->cout;
    const mcu_conv3x3_t c = {{bench_data + s->w, (const int32_t *)(bench_data + s->bias),
                              (const int32_t *)(bench_data + s->mult), (const int32_t *)(bench_data + s->shift),
                              9 * s->cin, s->cout, s->out_zp}, s->in_zp, s->size, s->cin};
    uint32_t h = 2166136261u;
    const uint64_t start = mcu_counter_instructions();
    for (int32_t y = 0; y < out_rows; y++) {
        const int32_t m = s->pool ? 2 * y : y;
        const int8_t *above = m > 0 ? x + (m - 1) * in_row : 0, *mid = x + m * in_row;
        const int8_t *below = m + 1 < s->size ? x + (m + 1) * in_row : 0;
        if (s->pool)
            mcu_maxpool3x3s2_row(above, mid, below, row, s->size, s->cin);
        else
            mcu_conv3x3_row(&c, above, mid, below, row, col);
        if (!timed) h = fnv(h, row, out_bytes);
    }
    if (timed) *count = mcu_counter_instructions() - start;
    return h;
}

int main(void)
{
    for (int32_t i = 0; i < NUM_SHAPES; i++) {
        uint64_t count = 0;
        run(&shapes[i], 1, &count);
        const uint32_t h = run(&shapes[i], 0, 0);
        mcu_write("shape ");
        mcu_write_int(i);
        mcu_write(" ");
        mcu_write_uint(count);
        mcu_write(" ");
        mcu_write_hex32(h);
        mcu_write("\n");
    }
    mcu_write("done\n");
    return 0;
}
"""


def fnv(data: np.ndarray) -> int:
    h = 2166136261
    for b in data.astype(np.uint8).ravel().tolist():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def make_kernel_data(folder: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    blob = Blob()
    put = blob.put
    rows, expected = [], []
    for size, cin, cout in CONV_SHAPES:
        x = rng.integers(-128, 128, (size, size, cin)).astype(np.int8)
        w = rng.integers(-127, 128, (cout, 9 * cin)).astype(np.int8)
        bias = rng.integers(-5000, 5000, cout).astype(np.int32)
        m, sh = quantize_multiplier(rng.uniform(0.3, 3.0, cout) / (128.0 * 128.0 * np.sqrt(9 * cin) / 40.0))
        in_zp, out_zp = int(rng.integers(-128, -100)), int(rng.integers(-128, -100))
        y = intops.conv3x3(x, w, bias, m, sh, in_zp, out_zp)
        expected.append(fnv(y))
        rows.append((size, cin, cout, 0, put(x), put(w), put(bias), put(m.astype(np.int32)),
                     put(sh.astype(np.int32)), in_zp, out_zp))
    for size, ch in POOL_SHAPES:
        x = rng.integers(-128, 128, (size, size, ch)).astype(np.int8)
        expected.append(fnv(intops.maxpool3x3s2(x)))
        rows.append((size, ch, ch, 1, put(x), 0, 0, 0, 0, 0, 0))
    write_program(folder, blob, MAIN, "conv_t", "size, cin, cout, pool, x, w, bias, mult, shift, in_zp, out_zp",
                  rows, [f"#define MAX_ROW {max(s * c for s, _, c in CONV_SHAPES)}",
                         f"#define MAX_COL {9 * max(c for _, c, _ in CONV_SHAPES)}"])
    return expected


def run_kernels(folder: Path, portable: bool, expected) -> list[int]:
    label = "portable" if portable else "dsp"
    stdout = build_and_run(folder, LIBRARY, portable, label, run_timeout_s=600)
    counts = {}
    for line in stdout.splitlines():
        m = re.match(r"shape (\d+) (\d+) (?:0x)?([0-9a-fA-F]+)$", line.strip())
        if m:
            i = int(m[1])
            if int(m[3], 16) != expected[i]:
                raise SystemExit(f"{label}: shape {i}: outputs differ from the integer reference")
            counts[i] = int(m[2])
    if len(counts) != len(expected):
        raise SystemExit(f"{label}: {len(counts)} results for {len(expected)} shapes:\n{stdout[-1000:]}")
    return [counts[i] for i in range(len(expected))]


def kernel_speed(tmp: Path) -> list[dict]:
    expected = make_kernel_data(tmp)
    dsp, port = run_kernels(tmp, False, expected), run_kernels(tmp, True, expected)
    rows = []
    for i, (size, cin, cout) in enumerate(CONV_SHAPES):
        macs = size * size * 9 * cin * cout
        rows.append({"kernel": "conv3x3", "shape": f"{size}x{size} {cin}->{cout}", "macs": macs,
                     "dsp_instructions": dsp[i], "portable_instructions": port[i],
                     "dsp_per_mac": round(dsp[i] / macs, 3), "portable_per_mac": round(port[i] / macs, 3)})
    for j, (size, ch) in enumerate(POOL_SHAPES):
        i = len(CONV_SHAPES) + j
        out = ((size + 1) // 2) ** 2 * ch
        rows.append({"kernel": "maxpool3x3s2", "shape": f"{size}x{size}x{ch}", "output_bytes": out,
                     "dsp_instructions": dsp[i], "portable_instructions": port[i],
                     "dsp_per_output": round(dsp[i] / out, 3), "portable_per_output": round(port[i] / out, 3)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", type=int, default=30, help="random conv-stem archs on the host (default 30)")
    ap.add_argument("--m7", type=int, default=5, help="random conv-stem archs on the Cortex-M7 (default 5)")
    ap.add_argument("--portable", type=int, default=2, help="of those, also on the portable path (default 2)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/conv_stem.json"))
    args = ap.parse_args()
    have_arm = all(shutil.which(t) for t in ("arm-none-eabi-gcc", "qemu-system-arm", "arm-none-eabi-nm"))
    t0 = time.time()
    result = {"stem_peaks": stem_peaks()}
    print("stem peak SRAM (bytes; the stem section's lower bound, which the planner reaches)")
    print(f"{'stem':<14} {'tokens':>6} {'layer-wise':>11} {'row-by-row':>11} {'all but RbR':>12} {'all':>8} "
          f"{'subnet all':>11} {'subnet no RbR':>14}")
    for r in result["stem_peaks"]:
        print(f"{r['stem']:<14} {r['tokens']:>6} {r['stem_layerwise_bytes']:>11,} {r['stem_row_by_row_alone_bytes']:>11,} "
              f"{r['stem_all_but_row_by_row_bytes']:>12,} {r['stem_all_bytes']:>8,} {r['subnet_planned_all_bytes']:>11,} "
              f"{r['subnet_planned_all_but_row_by_row_bytes']:>14,}")
    with tempfile.TemporaryDirectory(prefix="mcuformer-conv-stem-") as tmp:
        tmp = Path(tmp)
        if have_arm:
            (tmp / "k").mkdir()
            result["kernels"] = kernel_speed(tmp / "k")
            print("\nCortex-M7 (QEMU instruction counts, not cycles), outputs equal the integer reference")
            for r in result["kernels"]:
                unit = "MAC" if r["kernel"] == "conv3x3" else "output byte"
                key = "per_mac" if r["kernel"] == "conv3x3" else "per_output"
                print(f"{r['kernel']:<13} {r['shape']:<16} DSP {r['dsp_' + key]:>6.3f}  portable "
                      f"{r['portable_' + key]:>6.3f} instructions per {unit}")
        if have_arm:
            (tmp / "models").mkdir()
            result["models"] = models(tmp / "models")
            print(f"\n{'subnet (1 image, M7 DSP)':<26} {'arena':>8} {'flash':>10} {'MACs':>11} {'stem MACs':>10} "
                  f"{'instructions':>13} {'per MAC':>8}")
            for r in result["models"]:
                print(f"{r['stem']:<26} {r['arena_bytes']:>8,} {r['flash_bytes']:>10,} {r['macs']:>11,} "
                      f"{r['stem_macs']:>10,} {r['instructions']:>13,.0f} {r['instructions_per_mac']:>8.3f}"
                      + ("" if r["bit_exact"] and r["arena_symbol_is_planned"] else "  NOT bit-exact/planned"))
        result["bit_exact"] = bit_exact(tmp, args.host, args.m7 if have_arm else 0, args.portable)
    h, m = result["bit_exact"]["host"], result["bit_exact"]["cortex_m7"]
    ok_h = sum(r["bit_exact"] and r["guard_damage"] == 0 for r in h)
    ok_m = sum(all(r[p]["bit_exact"] and r[p]["guard_damage"] == 0 and r[p]["arena_symbol_is_planned"]
                   for p in ("dsp", "portable") if p in r) for r in m)
    print(f"\nhost (gcc -O2, then ASan+UBSan): {ok_h}/{len(h)} random conv-stem archs bit-exact")
    print(f"Cortex-M7: {ok_m}/{len(m)} bit-exact with the arena symbol = planned arena "
          f"({sum('portable' in r for r in m)} also on the portable path)")
    result["summary"] = {"host_bit_exact": f"{ok_h}/{len(h)}", "m7_bit_exact_arena_symbol": f"{ok_m}/{len(m)}"}
    result["seconds"] = round(time.time() - t0, 1)
    write_json(args.output, result)
    print(f"wrote {args.output} ({result['seconds']} s)")
    return 0 if ok_h == len(h) and ok_m == len(m) else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
