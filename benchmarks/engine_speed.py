"""Speed of the C engine's int8 matmul on the emulated Cortex-M7: instructions per MAC of the linear
kernel (mcu_factor_rows, one token against a weight matrix, fused output stage) on the DSP path (the
assembly of codegen/library/mcu_dot_dsp.c) and the portable C path, and of whole models.

The numbers are INSTRUCTION COUNTS from QEMU 7.2's mps2-an500 (-cpu cortex-m7) under -icount shift=0
(SysTick counts 1 tick per 40 executed instructions; codegen/runtime/cortex_m/counter.h), not Cortex-M7
cycles: QEMU models no pipeline, dual issue, caches or flash wait states. A real M7 runs SMLAD, LDRD and
LDM in about one cycle each but pays for loads from flash; compare paths and shapes, not clocks.

Kernel rows: one program per path runs every shape once (weights random int8 in .rodata, as the
generated engine has them; output stage: requantisation, or + the GELU table, or + the residual add) and
prints its outputs, which must equal the integer reference (mcuformer.quantize.intops) bit for bit.

Model rows: random-weight models (mcuformer.quantize.synthetic.random_quant_model) of the CIFAR-10
space's largest subnet (dense and low rank 0.5) and the 240 x 240 T subnet of
benchmarks/engine_imagenet_shape.py, and the model zoo's int8 models (models/*/int8-<board>), exported
with mcuformer.codegen.export.export_model for the STM32F746 (the zoo: for their board) and run by
mcuformer.verify.verify on the Cortex-M7 (1 image, logits checked against the reference): instructions
per inference and per MAC (MACs as verify counts them), for the fastest schedule that fits the board
(the exporter's default) and the smallest-arena schedule, the latency model's prediction beside them.
With --baseline REV the same smallest-arena engines also run with the kernel library committed at REV:
the "before" of an optimisation, in the same run.

    python benchmarks/engine_speed.py                     # ~3 min; writes benchmarks/results/engine_speed.json
    python benchmarks/engine_speed.py --baseline main     # also a committed library (git show), kernels and models
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.export import export_model  # noqa: E402
from mcuformer.errors import run_script  # noqa: E402
from mcuformer.quantize.model import QuantModel  # noqa: E402
from mcuformer.space import SearchSpace  # noqa: E402
from mcuformer.codegen.linker import CORTEX_M7_CFLAGS  # noqa: E402
from mcuformer.quantize import intops  # noqa: E402
from mcuformer.quantize.fixedpoint import quantize_multiplier  # noqa: E402
from mcuformer.quantize.synthetic import random_quant_model  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.utils.io import write_json  # noqa: E402
from mcuformer.verify import verify  # noqa: E402
from m7_bench import PROLOGUE, Blob, build_and_run, write_program  # noqa: E402

LIBRARY = ROOT / "src" / "mcuformer" / "codegen" / "library"
LIBRARY_IN_GIT = "src/mcuformer/codegen/library"
TARGET_DSP_PER_MAC = 1.5  # the large layers (K >= 192) on the DSP path

# (name, in, out, output stage); the large layers of the brief, then the CIFAR-10 model's sizes
SHAPES = [
    ("192->768", 192, 768, "plain"),
    ("768->192", 768, 192, "plain"),
    ("384->1536", 384, 1536, "plain"),
    ("576->192", 576, 192, "plain"),
    ("192->768 +GELU table", 192, 768, "table"),
    ("768->192 +residual", 768, 192, "residual"),
    ("64->192", 64, 192, "plain"),
    ("64->64 +residual", 64, 64, "residual"),
    ("64->128 +GELU table", 64, 128, "table"),
    ("128->64 +residual", 128, 64, "residual"),
]
LARGE = {"192->768", "768->192", "384->1536", "576->192"}

CIFAR_LARGEST = dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=(4, 4, 4),
                     mlp_ratio=(2.0, 2.0, 2.0), num_classes=10, head_dim=16)
MODELS = [("cifar10-largest dense", Arch(rank_ratio=1.0, **CIFAR_LARGEST)),
          ("cifar10-largest low-rank 0.5", Arch(rank_ratio=0.5, **CIFAR_LARGEST)),
          ("240x240 T (0.4, 32) smallest",
           SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(0.4, 32).smallest())]
TARGET_MODEL_PER_MAC = 2.5  # whole CIFAR-10-shaped models, fastest schedule, DSP path


def model_cases():
    """(name, quantised model, board) of every model row: the random-weight subnets, then the zoo."""
    cases = [(name, lambda arch=arch: random_quant_model(arch, 0, calibration_images=4 if arch.img_size > 64 else 8),
              "stm32f746") for name, arch in MODELS]
    for folder in sorted(ROOT.glob("models/*/int8-*")):
        if (folder / "manifest.json").exists():
            board = folder.name.split("int8-", 1)[1]
            cases.append((f"zoo {folder.parent.name}/{folder.name}", lambda f=folder: QuantModel.load(f), board))
    return cases

MAIN = PROLOGUE + r"""
static int8_t y[MAX_OUT];

static void put_hex(const int8_t *p, int32_t n)
{
    static const char digits[] = "0123456789abcdef";
    char s[3] = {0, 0, 0};
    for (int32_t i = 0; i < n; i++) {
        s[0] = digits[(uint8_t)p[i] >> 4];
        s[1] = digits[(uint8_t)p[i] & 15];
        mcu_write(s);
    }
}

int main(void)
{
    const int8_t *lut = bench_data + LUT_AT;
    const mcu_add_t add = ADD_PARAMS;
    for (int32_t c = 0; c < NUM_SHAPES; c++) {
        const shape_t *s = &shapes[c];
        const mcu_factor_t f = {bench_data + s->w, (const int32_t *)(bench_data + s->bias),
                                (const int32_t *)(bench_data + s->mult), (const int32_t *)(bench_data + s->shift),
                                s->n_in, s->n_out, s->out_zp};
        const int8_t *x = bench_data + s->x;
        const uint64_t start = mcu_counter_instructions();
        mcu_factor_rows(&f, x, 0, s->n_out, y, s->mode == 1 ? lut : 0, s->mode == 2 ? bench_data + s->res : 0,
                        &add);
        const uint64_t instructions = mcu_counter_instructions() - start;
        mcu_write("shape ");
        mcu_write_int(c);
        mcu_write(" ");
        mcu_write_uint(instructions);
        mcu_write(" ");
        put_hex(y, s->n_out);
        mcu_write("\n");
    }
    mcu_write("done\n");
    return 0;
}
"""


def make_data(folder: Path, seed: int = 0):
    """bench.bin (all arrays, 4-byte aligned), bench.h (their offsets), the expected outputs."""
    rng = np.random.default_rng(seed)
    blob = Blob()
    put = blob.put

    lut = rng.integers(-128, 128, 256).astype(np.int8)
    lut_at = put(lut)
    add_p = intops.add_params(0.05, 0.03, 0.06)
    za, zb, zo = -5, 17, 3
    rows, expected = [], []
    for name, n_in, n_out, stage in SHAPES:
        w = rng.integers(-128, 128, (n_out, n_in)).astype(np.int8)
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        bias = rng.integers(-5000, 5000, n_out).astype(np.int32)
        m, sh = quantize_multiplier(rng.uniform(0.3, 3.0, n_out) / (128.0 * 128.0 * np.sqrt(n_in) / 40.0))
        out_zp = int(rng.integers(-10, 10))
        res = rng.integers(-128, 128, n_out).astype(np.int8)
        y = intops.linear(x.astype(np.int64), w.astype(np.int64), bias, m, sh, out_zp).astype(np.int64)
        mode = {"plain": 0, "table": 1, "residual": 2}[stage]
        if mode == 1:
            y = lut.astype(np.int64)[y + 128]
        elif mode == 2:
            y = intops.add(res.astype(np.int64), za, y, zb, add_p, zo)
        expected.append(np.asarray(y, np.int64))
        rows.append((n_in, n_out, put(w), put(x), put(bias), put(m.astype(np.int32)), put(sh.astype(np.int32)),
                     put(res), out_zp, mode))
    write_program(folder, blob, MAIN, "shape_t", "n_in, n_out, w, x, bias, mult, shift, res, out_zp, mode", rows,
                  [f"#define MAX_OUT {max(s[2] for s in SHAPES)}", f"#define LUT_AT {lut_at}",
                   f"#define ADD_PARAMS {{{za}, {add_p['m1']}, {add_p['s1']}, {zb}, {add_p['m2']}, {add_p['s2']}, "
                   f"{add_p['mo']}, {add_p['so']}, {zo}}}"])
    return expected


def run_kernels(folder: Path, library: Path, portable: bool, expected, label: str) -> list[int]:
    """instructions per shape; raises SystemExit when the build fails or an output is wrong"""
    stdout = build_and_run(folder, library, portable, label)
    counts = []
    for line in stdout.splitlines():
        m = re.match(r"shape (\d+) (\d+) ([0-9a-f]*)$", line)
        if m:
            i = int(m[1])
            got = np.frombuffer(bytes.fromhex(m[3]), np.int8).astype(np.int64)
            if not np.array_equal(got, expected[i]):
                raise SystemExit(f"{label}: {SHAPES[i][0]}: outputs differ from the integer reference")
            counts.append(int(m[2]))
    if len(counts) != len(SHAPES):
        raise SystemExit(f"{label}: {len(counts)} results for {len(SHAPES)} shapes")
    return counts


def git_library(rev: str, folder: Path) -> Path:
    """The kernel library as committed at ``rev`` (git show: reads the repository, changes nothing)."""
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{rev}:{LIBRARY_IN_GIT}"],
                           capture_output=True, text=True, check=True).stdout.split()
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{LIBRARY_IN_GIT}/{name}"],
                              capture_output=True, text=True, check=True).stdout
        (folder / name).write_text(text)
    return folder


def git_commit(rev: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", rev], capture_output=True, text=True,
                          check=True).stdout.strip()


def with_library(folder: Path, library: Path) -> Path:
    """A copy of an exported engine with another kernel library (its mcu_* files replaced)."""
    other = folder.with_name(folder.name + "-" + library.name)
    if not other.exists():
        shutil.copytree(folder, other, ignore=shutil.ignore_patterns("build"))
        for f in other.glob("mcu_*"):
            f.unlink()
        for f in library.glob("mcu_*"):
            shutil.copy(f, other / f.name)
    return other


def tool_version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", metavar="REV", help="also measure the kernel library committed at this git "
                    "revision (e.g. the one before an optimisation)")
    ap.add_argument("--no-models", action="store_true", help="the kernel rows only")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/engine_speed.json"))
    args = ap.parse_args()
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if not shutil.which(tool):
            print(f"{tool} is not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                  f"qemu-system-arm)", file=sys.stderr)
            return 2

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuformer-engine-speed-") as tmp:
        tmp = Path(tmp)
        expected = make_data(tmp)
        measured = {"dsp": run_kernels(tmp, LIBRARY, False, expected, "dsp"),
                    "portable": run_kernels(tmp, LIBRARY, True, expected, "portable")}
        base = None
        if args.baseline:
            base = git_library(args.baseline, tmp / "baseline")
            measured["baseline_dsp"] = run_kernels(tmp, base, False, expected, "baseline-dsp")
            measured["baseline_portable"] = run_kernels(tmp, base, True, expected, "baseline-portable")

        kernel_rows = []
        head = f"{'linear (one token)':<24} {'MACs':>9} {'DSP':>7} {'portable':>9} {'speed-up':>9}"
        if args.baseline:
            head += f" {'base DSP':>9} {'base port':>9}"
        print("instructions per MAC (QEMU -icount instruction counts, not cycles)")
        print(head)
        for i, (name, n_in, n_out, stage) in enumerate(SHAPES):
            macs = n_in * n_out
            row = {"shape": name, "in": n_in, "out": n_out, "output_stage": stage, "macs": macs}
            for key, counts in measured.items():
                row[f"{key}_per_mac"] = round(counts[i] / macs, 4)
            row["speedup_portable_over_dsp"] = round(measured["portable"][i] / measured["dsp"][i], 3)
            for key, counts in measured.items():
                row[f"{key}_instructions"] = counts[i]
            line = (f"{name:<24} {macs:>9,} {row['dsp_per_mac']:>7.3f} {row['portable_per_mac']:>9.3f} "
                    f"{row['speedup_portable_over_dsp']:>8.2f}x")
            if args.baseline:
                line += f" {row['baseline_dsp_per_mac']:>9.3f} {row['baseline_portable_per_mac']:>9.3f}"
            print(line)
            kernel_rows.append(row)
        large = [r["dsp_per_mac"] for r in kernel_rows if r["shape"] in LARGE]
        meets = max(large) <= TARGET_DSP_PER_MAC
        print(f"large layers on the DSP path: {min(large):.3f} .. {max(large):.3f} instructions per MAC "
              f"(target <= {TARGET_DSP_PER_MAC}): {'met' if meets else 'NOT met'}")

        model_rows = []
        if not args.no_models:
            print(f"\n{'model (1 image)':<34} {'schedule':<9} {'library':<10} {'MACs':>11} {'instructions':>13} "
                  f"{'per MAC':>8} {'predicted':>10} {'arena':>9} {'stack':>7}")
            for name, make, board in model_cases():
                q = make()
                row = {"model": name, "short": q.arch.short(), "arch": q.arch.to_dict(), "board": board}
                for schedule in ("fastest", "smallest"):
                    folder = tmp / (re.sub(r"[^a-z0-9]+", "-", name.lower()) + "-" + schedule)
                    info = export_model(q, folder, board, schedule=schedule)
                    runs = [("dsp", folder, False)]
                    if schedule == "fastest":
                        runs.append(("portable", folder, True))
                    if args.baseline and schedule == "smallest":
                        runs.append(("baseline_dsp", with_library(folder, base), False))
                    for path, where, portable in runs:
                        r = verify(where, "cortex-m7", images=1, portable=portable, timeout=1800)
                        if not r.bit_exact:
                            raise SystemExit(f"{name} ({schedule}, {path}): logits differ from the reference")
                        key = f"{schedule}_{path}"
                        row.update({f"{schedule}_macs": r.macs, f"{key}_instructions": r.instructions_per_inference,
                                    f"{key}_per_mac": round(r.instructions_per_mac, 4),
                                    f"{key}_stack_bytes": r.stack_bytes, f"{schedule}_arena_bytes": info["arena_bytes"],
                                    f"{schedule}_predicted_instructions": info["predicted_instructions"],
                                    f"{schedule}_section_techniques": info["section_techniques"]})
                        print(f"{name:<34} {schedule:<9} {path.replace('_dsp', ''):<10} {r.macs:>11,} "
                              f"{r.instructions_per_inference:>13,.0f} {r.instructions_per_mac:>8.3f} "
                              f"{info['predicted_instructions'] / r.instructions_per_inference - 1:>+9.1%} "
                              f"{info['arena_bytes']:>8,}B {r.stack_bytes:>6} B")
                model_rows.append(row)
            cifar = [r["fastest_dsp_per_mac"] for r in model_rows if r["model"].startswith("cifar10-largest")]
            print(f"CIFAR-10 largest subnets, fastest schedule, DSP: {min(cifar):.3f} .. {max(cifar):.3f} "
                  f"instructions per MAC (target <= {TARGET_MODEL_PER_MAC}): "
                  f"{'met' if max(cifar) <= TARGET_MODEL_PER_MAC else 'NOT met'}")

    elapsed = time.time() - t0
    write_json(args.output, {
        "what": "QEMU instruction counts (qemu-system-arm -M mps2-an500 -cpu cortex-m7 -icount shift=0, SysTick "
                "at 40 instructions per tick), not Cortex-M7 cycles",
        "kernel": "mcu_factor_rows: one token, all output rows, weights int8 [out][in] in flash (.rodata), "
                  "requantised int8 output (+ GELU table or residual add where named)",
        "dsp_path": "codegen/library/mcu_dot_dsp.c assembly (SXTB16 + SMLAD, 3 rows x 8 inputs per step, the input "
                    "widened once per call into a <= 1 KB stack buffer)",
        "portable_path": "plain C (-DMCU_PORTABLE)",
        "target_dsp_per_mac_large_layers": TARGET_DSP_PER_MAC, "meets_target": meets,
        "target_model_per_mac": TARGET_MODEL_PER_MAC,
        "models_note": "schedules: fastest = the exporter's default (per section the technique set with the fewest "
                       "predicted instructions whose arena fits the board), smallest = the smallest arena; "
                       "baseline_* = the same engine with the kernel library at --baseline",
        "compiler": tool_version(["arm-none-eabi-gcc", "--version"]), "cflags": " ".join(CORTEX_M7_CFLAGS),
        "qemu": tool_version(["qemu-system-arm", "--version"]), "baseline_rev": args.baseline,
        "baseline_commit": git_commit(args.baseline) if args.baseline else None,
        "host": platform.machine(), "seconds": round(elapsed, 1),
        "kernels": kernel_rows, "models": model_rows,
    })
    print(f"wrote {args.output} ({elapsed:.0f} s)")
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
