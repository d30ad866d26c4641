"""What the kernel-speed benchmarks (engine_speed.py, conv_stem.py) share: one blob of test data linked into
.rodata (bench.bin, with its offsets in bench.h), and one program built for the Cortex-M7 and run in QEMU.
Not a benchmark itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.codegen.linker import QEMU_MPS2_AN500_COMMAND, cortex_m7_build_command, write_linker_script  # noqa: E402
from mcuformer.memory.boards import get_board  # noqa: E402

# The start of every benchmark's main.c: the kernels, the instruction counter, and bench.bin as bench_data[]
# (in flash, as the generated engine's weights are).
PROLOGUE = r"""
#include <stdint.h>
#include "mcu_kernels.h"
#include "counter.h"
#include "semihost.h"
#include "bench.h"

__asm__(".pushsection .rodata.bench_data, \"a\", %progbits\n.p2align 2\n.global bench_data\nbench_data:\n"
        ".incbin \"" BENCH_DATA "\"\n.popsection\n");
extern const int8_t bench_data[];
"""


class Blob:
    """The arrays of one benchmark, 4-byte aligned one after the other; put() returns an array's offset."""

    def __init__(self):
        self.data = bytearray()

    def put(self, arr) -> int:
        while len(self.data) % 4:
            self.data.append(0)
        at = len(self.data)
        self.data.extend(np.ascontiguousarray(arr).tobytes())
        return at


def write_program(folder: Path, blob: Blob, main: str, struct: str, fields: str, rows: list[tuple],
                  defines: list[str]) -> None:
    """bench.bin, main.c and bench.h: the defines, ``typedef struct {int32_t <fields>;} <struct>`` and
    ``shapes[NUM_SHAPES]``, one row a shape."""
    (folder / "bench.bin").write_bytes(bytes(blob.data))
    lines = ["#include <stdint.h>", f"#define BENCH_DATA \"{folder / 'bench.bin'}\"",
             f"#define NUM_SHAPES {len(rows)}", *defines,
             f"typedef struct {{ int32_t {fields}; }} {struct};",
             f"static const {struct} shapes[NUM_SHAPES] = {{"]
    lines += ["    {" + ", ".join(map(str, r)) + "}," for r in rows]
    lines.append("};")
    (folder / "bench.h").write_text("\n".join(lines) + "\n")
    (folder / "main.c").write_text(main)


def build_and_run(folder: Path, library: Path, portable: bool, label: str, run_timeout_s: int = 180) -> str:
    """Builds folder/main.c with the kernel library (the DSP path, or the portable one) and runs it on QEMU's
    Cortex-M7; returns what it printed. SystemExit when the build fails, or the run fails or does not
    print "done"."""
    script = write_linker_script(get_board("stm32h743"), folder / "bench.ld")  # 2 MB of flash for the data
    elf = folder / f"{label}.elf"
    cflags = [f"-I{library}", f"-I{folder}"] + (["-DMCU_PORTABLE"] if portable else [])
    cmd = cortex_m7_build_command([folder / "main.c", *sorted(library.glob("mcu_*.c"))], script, elf,
                                  extra_cflags=cflags)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise SystemExit(f"{label}: build failed:\n{r.stderr[-3000:]}")
    # timeout(1) kills a hung QEMU before subprocess's timeout would leave it running
    prefix = ["timeout", str(run_timeout_s - 60)] if shutil.which("timeout") else []
    r = subprocess.run([*prefix, *QEMU_MPS2_AN500_COMMAND, str(elf)], capture_output=True, text=True,
                       timeout=run_timeout_s, stdin=subprocess.DEVNULL)
    if r.returncode or "done" not in r.stdout.split():
        raise SystemExit(f"{label}: the run failed (status {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout
