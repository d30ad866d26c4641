"""What the C kernel tests (test_engine_kernels.py, test_engine_rowkernels.py) share: a C program of cases
that prints each output in hex between guard bytes, built for the host and for the Cortex-M7 (QEMU
mps2-an500), and its output checked against the integer reference's, case by case."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuformer.codegen.linker import QEMU_MPS2_AN500_COMMAND, cortex_m7_build_command, write_linker_script
from mcuformer.memory.boards import get_board

LIBRARY = Path(__file__).resolve().parents[1] / "src" / "mcuformer" / "codegen" / "library"
HOST_CC = shutil.which("cc") or shutil.which("gcc")
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm") is not None
needs_cc = pytest.mark.skipif(HOST_CC is None, reason="no host C compiler")
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc or qemu-system-arm is not installed "
                               "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
GUARD = 8  # bytes checked on each side of every output

# PUT(s) writes a string on either target; put_hex(p, n) writes n int8s as 2n lowercase hex digits.
C_OUTPUT = r"""
#ifdef MCU_CORTEX_M
#include "semihost.h"
#define PUT(s) mcu_write(s)
#else
#include <stdio.h>
#define PUT(s) fputs(s, stdout)
#endif

static void put_hex(const int8_t *p, int32_t n)
{
    static const char digits[] = "0123456789abcdef";
    char s[3] = {0, 0, 0};
    for (int32_t i = 0; i < n; i++) {
        s[0] = digits[(uint8_t)p[i] >> 4];
        s[1] = digits[(uint8_t)p[i] & 15];
        PUT(s);
    }
}
"""


def c_array(ctype: str, name: str, values, per_line: int = 32) -> str:
    values = [int(v) for v in values] or [0]
    lines = [", ".join(map(str, values[i:i + per_line])) for i in range(0, len(values), per_line)]
    return (f"static const {ctype} {name}[{len(values)}] __attribute__((aligned(4))) = {{\n" + ",\n".join(lines)
            + "\n};\n")


def write_program(tmp: Path, main_c: str, cases_h: str) -> list[Path]:
    """main.c and cases.h in ``tmp``; returns the sources to build (main.c and the kernel library)."""
    (tmp / "cases.h").write_text(cases_h)
    (tmp / "main.c").write_text(main_c)
    return [tmp / "main.c", *sorted(LIBRARY.glob("mcu_*.c"))]


def run_host(tmp: Path, sources: list[Path], flags: list[str]) -> str:
    exe = tmp / "host"
    cmd = [HOST_CC, "-std=c99", *flags, "-Wall", "-Wextra", f"-I{LIBRARY}", f"-I{tmp}", *map(str, sources),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def run_cortex_m7(tmp: Path, sources: list[Path], name: str, cflags: tuple) -> str:
    script = write_linker_script(get_board("stm32h743"), tmp / "prog.ld")
    elf = tmp / f"{name}.elf"
    cmd = cortex_m7_build_command(sources, script, elf,
                                  extra_cflags=(f"-I{LIBRARY}", f"-I{tmp}", "-DMCU_CORTEX_M", "-Wall", "-Wextra",
                                                *cflags))
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert build.returncode == 0, f"{name}: build failed\n{build.stderr[-3000:]}"
    prefix = ["timeout", "60"] if shutil.which("timeout") else []
    run = subprocess.run([*prefix, *QEMU_MPS2_AN500_COMMAND, str(elf)], capture_output=True, text=True,
                         timeout=90, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, f"{name}: exit status {run.returncode}\n{run.stdout[-2000:]}{run.stderr[-2000:]}"
    return run.stdout


def check_outputs(stdout: str, expected: list, names: list[str], what: str) -> None:
    """Each case's line ("y <hex>", or "guard <hex>" when a guard byte was overwritten) against its expected
    int8 output; one assertion that names every case that differs."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(("y ", "guard "))]
    assert "done" in stdout.split(), f"{what}: the program stopped early:\n{stdout[-2000:]}"
    assert len(lines) == len(names), f"{what}: {len(lines)} result lines for {len(names)} cases"
    bad = []
    for name, line, want in zip(names, lines, expected):
        kind, _, hexes = line.partition(" ")
        got = np.frombuffer(bytes.fromhex(hexes), np.int8).astype(np.int64)
        if kind != "y":
            bad.append(f"{name}: guard bytes overwritten")
        elif not np.array_equal(got, want):
            where = np.flatnonzero(got != want)[:5] if got.shape == want.shape else "shape"
            bad.append(f"{name}: differs at {where}")
    assert not bad, f"{what}:\n" + "\n".join(bad)
