"""The Cortex-M7 bare-metal runtime (codegen/runtime/cortex_m) and the linker scripts (codegen/linker.py).

Programs are built with arm-none-eabi-gcc and run in QEMU's mps2-an500 (Cortex-M7) exactly as the engine's
are: semihosting console on stdout, main's return value as QEMU's exit status, SysTick counting
instructions under -icount shift=0. Those tests are skipped where the tools are missing; the linker-script
tests run anywhere. The whole file takes a few seconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mcuformer.codegen.linker import (CORTEX_M7_CFLAGS, CORTEX_M7_LDFLAGS, CORTEX_M7_LIBS, CORTEX_M_CFLAGS,
                                      QEMU_MPS2_AN500_COMMAND, RUNTIME_DIR, cortex_m7_build_command, linker_script,
                                      runtime_sources, write_linker_script)
from mcuformer.errors import ConfigError
from mcuformer.memory.boards import BOARDS, KIB, Board, get_board

ROOT = Path(__file__).resolve().parents[1]
HAVE_GCC = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = shutil.which("qemu-system-arm") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc is not installed "
                               "(apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not (HAVE_GCC and HAVE_QEMU), reason="arm-none-eabi-gcc or qemu-system-arm is "
                                "not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
                                "qemu-system-arm)")

# The instruction counter's check: a loop of N iterations of K instructions (add, add, subs, bne).
LOOP_K = 4
LOOP_N = 250_000
COUNTER_TOLERANCE = 400  # instructions (10 SysTick ticks): the calls around the loop, tick granularity


def build(tmp: Path, source: str, board: str | Board = "stm32f746", *, name: str = "prog", cflags=(),
          ldflags=(), check: bool = True, **script_kw) -> tuple[Path, subprocess.CompletedProcess]:
    board = get_board(board) if isinstance(board, str) else board
    src = tmp / f"{name}.c"
    src.write_text(source)
    script = write_linker_script(board, tmp / f"{name}.ld", **script_kw)
    elf = tmp / f"{name}.elf"
    cmd = cortex_m7_build_command([src], script, elf, extra_cflags=("-Wall", "-Wextra", *cflags),
                                  extra_ldflags=ldflags)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"build failed: {' '.join(cmd)}\n{proc.stderr}")
    return elf, proc


def run(elf: Path) -> subprocess.CompletedProcess:
    prefix = ["timeout", "60"] if shutil.which("timeout") else []
    return subprocess.run([*prefix, *QEMU_MPS2_AN500_COMMAND, str(elf)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=90)


def symbol(elf: Path, name: str) -> int:
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        pytest.skip("arm-none-eabi-nm is not installed")
    out = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True).stdout
    m = re.search(rf"^([0-9a-f]+) \w {re.escape(name)}$", out, re.M)
    assert m, f"{name} not in {elf}"
    return int(m.group(1), 16)


# --------------------------------------------------------------------------- running in QEMU

HELLO = r"""
#include <stdint.h>
#include "semihost.h"
int main(void)
{
    mcu_write("hello from the mcuformer runtime\n");
    mcu_write_int(-9223372036854775807LL - 1); mcu_write(" ");
    mcu_write_int(0); mcu_write(" ");
    mcu_write_int(42); mcu_write(" ");
    mcu_write_uint(18446744073709551615ULL); mcu_write(" ");
    mcu_write_hex32(0xC0FFEEu); mcu_write("\n");
    return STATUS;
}
"""


@needs_qemu
@pytest.mark.parametrize("status", [0, 3, 255])
def test_prints_and_exits_with_mains_status(tmp_path, status):
    elf, proc = build(tmp_path, HELLO, cflags=[f"-DSTATUS={status}"])
    assert "warning" not in proc.stderr, proc.stderr  # the runtime builds cleanly with -Wall -Wextra
    r = run(elf)
    assert r.stdout == ("hello from the mcuformer runtime\n"
                        "-9223372036854775808 0 42 18446744073709551615 0x00c0ffee\n"), r.stdout + r.stderr
    assert r.returncode == status, r.stdout + r.stderr  # SYS_EXIT_EXTENDED: the status itself, not 0/1
    assert r.stderr == ""


COUNTER = r"""
#include <stdint.h>
#include "counter.h"
#include "semihost.h"
/* n iterations of exactly 4 instructions */
__attribute__((noinline)) static void loop(uint32_t n)
{
    __asm__ __volatile__("1:\n\tadd r2, r2, #1\n\tadd r3, r3, #1\n\tsubs %0, %0, #1\n\tbne 1b\n"
                         : "+r"(n) : : "r2", "r3", "cc");
}
static void measure(uint32_t n)
{
    uint64_t t0 = mcu_counter_ticks();
    uint64_t i0 = mcu_counter_instructions();
    loop(n);
    uint64_t i1 = mcu_counter_instructions();
    uint64_t t1 = mcu_counter_ticks();
    mcu_write("n "); mcu_write_uint(n);
    mcu_write(" instructions "); mcu_write_uint(i1 - i0);
    mcu_write(" ticks "); mcu_write_uint(t1 - t0); mcu_write("\n");
}
int main(void)
{
    measure(N);
    measure(2 * N);
    mcu_write("overflows "); mcu_write_uint(mcu_counter_overflows()); mcu_write("\n");
    return 0;
}
"""


@needs_qemu
@pytest.mark.parametrize("reload", [None, 0xFFF], ids=["reload-0xFFFFFF", "reload-0xFFF"])
def test_instruction_counter_counts_a_known_loop(tmp_path, reload):
    """1 SysTick tick = 40 instructions under -icount shift=0 (25 MHz SysTick, 1 ns per instruction).

    A small reload (one interrupt per 4096 ticks) exercises the overflow count: same answer, within the
    few instructions each SysTick_Handler adds.
    """
    cflags = [f"-DN={LOOP_N}u"] + ([f"-DMCU_COUNTER_RELOAD={reload:#x}u"] if reload else [])
    elf, _ = build(tmp_path, COUNTER, cflags=cflags)
    r = run(elf)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [tuple(map(int, m)) for m in re.findall(r"^n (\d+) instructions (\d+) ticks (\d+)$", r.stdout, re.M)]
    assert len(rows) == 2, r.stdout
    for n, instructions, ticks in rows:
        assert abs(instructions - n * LOOP_K) <= COUNTER_TOLERANCE, r.stdout
    # The factor: the extra N iterations of the second loop over the extra ticks.
    (n1, _, t1), (n2, _, t2) = rows
    factor = (n2 - n1) * LOOP_K / (t2 - t1)
    assert factor == pytest.approx(40.0, abs=0.05), r.stdout
    overflows = int(re.search(r"overflows (\d+)", r.stdout).group(1))
    if reload:
        assert overflows >= 3 * LOOP_N * LOOP_K // ((reload + 1) * 40), r.stdout
    else:
        assert overflows == 0, r.stdout


STACK = r"""
#include <stdint.h>
#include "semihost.h"
#include "stack.h"
extern uint32_t _sstack, _estack;
__attribute__((noinline)) static uint32_t use_stack(void)
{
    volatile uint8_t buf[2048];
    uint32_t i, sum = 0;
    for (i = 0; i < sizeof buf; ++i) buf[i] = (uint8_t)i;
    for (i = 0; i < sizeof buf; ++i) sum += buf[i];
    return sum;
}
int main(void)
{
    uint32_t before = mcu_stack_high_water();
    uint32_t sum = use_stack();
    uint32_t after = mcu_stack_high_water();
    mcu_write("size "); mcu_write_uint(mcu_stack_size());
    mcu_write(" top "); mcu_write_hex32((uint32_t)(uintptr_t)&_estack);
    mcu_write(" before "); mcu_write_uint(before);
    mcu_write(" after "); mcu_write_uint(after);
    mcu_write(" sum "); mcu_write_uint(sum); mcu_write("\n");
    return 0;
}
"""


@needs_qemu
@pytest.mark.parametrize("board,ldflags,size,top", [
    ("stm32f746", [], 8192, 0x20000000 + 320 * KIB),                                   # top of RAM
    ("stm32f746", ["-Wl,--defsym=MCU_STACK_BYTES=4096"], 4096, 0x20000000 + 320 * KIB),  # link-time size
    ("stm32f427", [], 8192, 0x20400000),  # top of the CCM, emulated at the top of QEMU's 4 MB SRAM
], ids=["f746", "f746-defsym-4096", "f427-ccm"])
def test_stack_high_water_grows_with_a_2k_local_array(tmp_path, board, ldflags, size, top):
    elf, _ = build(tmp_path, STACK, board, ldflags=ldflags)
    assert symbol(elf, "_estack") == top and symbol(elf, "_sstack") == top - size
    r = run(elf)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.fullmatch(r"size (\d+) top 0x([0-9a-f]{8}) before (\d+) after (\d+) sum (\d+)\n", r.stdout)
    assert m, r.stdout + r.stderr
    got_size, got_top, before, after = int(m[1]), int(m[2], 16), int(m[3]), int(m[4])
    assert (got_size, got_top) == (size, top)
    assert 32 <= before < 512, r.stdout  # Reset_Handler's and main's frames, the unpainted 32-byte margin
    # The 2 KB array lies below main's frame; the margin, counted in `before`, may hold part of its frame.
    assert after >= 2048 and 2048 - 32 <= after - before <= 2048 + 256, r.stdout
    assert after < size


ARENA = r"""
#include <stdint.h>
static volatile uint8_t arena[ARENA_BYTES];
int main(void) { arena[ARENA_BYTES - 1] = 7; return arena[ARENA_BYTES - 1]; }
"""


@needs_gcc
@pytest.mark.parametrize("board,fits,too_big,message", [
    ("stm32f746", 300 * KIB, 320 * KIB - 8192 + 4, "the arena plus stack exceed the board's 320 KB SRAM"),
    ("stm32f427", 190 * KIB, 192 * KIB + 4, "the arena and static data exceed the board's 192 KB contiguous SRAM"),
])
def test_bss_larger_than_the_ram_region_fails_to_link(tmp_path, board, fits, too_big, message):
    build(tmp_path, ARENA, board, name="fits", cflags=[f"-DARENA_BYTES={fits}"])
    _, proc = build(tmp_path, ARENA, board, name="too_big", cflags=[f"-DARENA_BYTES={too_big}"], check=False)
    assert proc.returncode != 0
    assert "region `RAM' overflowed" in proc.stderr, proc.stderr
    assert f"mcuformer: {message}" in proc.stderr, proc.stderr


WEIGHTS = r"""
#include <stdint.h>
#include "semihost.h"
#define W_BYTES (1100u * 1024u)
WHERE const uint8_t weights[W_BYTES] = {1, 2, 3, [W_BYTES - 1] = 4};
int main(void)
{
    const volatile uint8_t *w = weights;
    mcu_write("weights at "); mcu_write_hex32((uint32_t)(uintptr_t)weights);
    mcu_write(" sum "); mcu_write_uint((unsigned)w[0] + w[1] + w[2] + w[W_BYTES - 1]); mcu_write("\n");
    return 0;
}
"""


@needs_qemu
def test_weights_beyond_internal_flash_go_to_extflash(tmp_path):
    # 1100 KB of weights in .rodata do not fit the STM32F746's 1 MB flash ...
    _, proc = build(tmp_path, WEIGHTS, "stm32f746", name="internal", cflags=["-DWHERE="], check=False)
    assert proc.returncode != 0 and "region `FLASH' overflowed" in proc.stderr, proc.stderr
    assert "mcuformer: code, constants and weights exceed the board's 1024 KB internal flash" in proc.stderr
    # ... in .extflash they link, load into QEMU's PSRAM at 0x60000000 and read back ...
    elf, _ = build(tmp_path, WEIGHTS, "stm32f746", name="external",
                   cflags=['-DWHERE=__attribute__((section(".extflash.weights")))'])
    r = run(elf)
    assert r.returncode == 0 and r.stdout == "weights at 0x60000000 sum 10\n", r.stdout + r.stderr
    # ... and a board without external flash refuses them.
    _, proc = build(tmp_path, WEIGHTS, "stm32f427", name="noext",
                    cflags=['-DWHERE=__attribute__((section(".extflash.weights")))'], check=False)
    assert proc.returncode != 0
    assert "mcuformer: board stm32f427 has no external flash" in proc.stderr, proc.stderr


FAULT = r"""
#include <stdint.h>
#include "semihost.h"
int main(void)
{
    mcu_write("reading the QSPI address\n");
    /* 0x90000000 (the STM32F746's QSPI) is unmapped on mps2-an500: a precise bus fault -> HardFault */
    return (int)*(volatile uint32_t *)0x90000000u;
}
"""


@needs_qemu
def test_hardfault_handler_reports_and_exits_non_zero(tmp_path):
    elf, _ = build(tmp_path, FAULT)
    r = run(elf)
    assert r.returncode == 103, r.stdout + r.stderr  # 100 + exception number 3
    lines = r.stdout.splitlines()
    assert lines[0] == "reading the QSPI address" and len(lines) == 2, r.stdout
    assert re.fullmatch(r"mcuformer: HardFault at pc=0x[0-9a-f]{8} \(CFSR=0x[0-9a-f]{8} HFSR=0x40000000 "
                        r"MMFAR=0x[0-9a-f]{8} BFAR=0x90000000\)", lines[1]), lines[1]
    cfsr = int(re.search(r"CFSR=0x([0-9a-f]{8})", lines[1])[1], 16)
    assert cfsr & (1 << 9) and cfsr & (1 << 15)  # PRECISERR, BFARVALID


# --------------------------------------------------------------------------- linker scripts (no tools)

def regions(script: str) -> dict[str, tuple[int, str]]:
    return {m[1]: (int(m[2], 16), m[3].strip()) for m in
            re.finditer(r"^\s+(\w+) \(\w+\)\s*: ORIGIN = 0x([0-9A-F]+)(?: \+ \S+ - MCU_STACK_BYTES)?, "
                        r"LENGTH = ([^/\n]+?)\s*(?:/\*.*)?$", script, re.M)}


def test_linker_script_regions_emulator_and_real():
    emu = regions(linker_script(BOARDS["stm32f746"]))
    assert emu == {"FLASH": (0x0, "1M"), "RAM": (0x20000000, "320K - MCU_STACK_BYTES"),
                   "STACK": (0x20000000, "MCU_STACK_BYTES"), "EXTFLASH": (0x60000000, "16M"),
                   "TESTDATA": (0x00300000, "1M")}
    real = regions(linker_script(BOARDS["stm32f746"], emulator=False))
    assert real["FLASH"][0] == 0x08000000 and real["EXTFLASH"] == (0x90000000, "16M") and "TESTDATA" not in real
    assert ".verify_data : { . = ALIGN(4); KEEP(*(.verify_data .verify_data.*)) } > FLASH" in \
        linker_script(BOARDS["stm32f746"], emulator=False)
    text = linker_script(BOARDS["stm32f746"], stack_bytes=4096)
    assert "MCU_STACK_BYTES = DEFINED(MCU_STACK_BYTES) ? MCU_STACK_BYTES : 4096;" in text
    assert "/* real chip: 0x08000000 */" in text and "real chip: 0x90000000" in text
    for sym in ("_sdata", "_edata", "_sidata", "_sbss", "_ebss", "_sstack", "_estack"):
        assert re.search(rf"\b{sym} = ", text), sym
    order = [text.index(s) for s in (".isr_vector :", ".text :", ".rodata :", ".data :", ".bss (NOLOAD) :",
                                     ".stack (NOLOAD) :")]
    assert order == sorted(order)

    f427 = regions(linker_script(BOARDS["stm32f427"]))
    assert f427["RAM"] == (0x20000000, "192K") and f427["CCM"] == (0x20400000 - 64 * KIB, "64K - MCU_STACK_BYTES")
    assert "EXTFLASH" not in f427
    assert regions(linker_script(BOARDS["stm32f427"], emulator=False))["CCM"][0] == 0x10000000
    assert regions(linker_script(BOARDS["stm32h743"], emulator=False))["RAM"][0] == 0x24000000  # AXI SRAM


def test_linker_script_limits():
    big_ext = Board("big", "32 MB of QSPI", sram_bytes=256 * KIB, flash_bytes=1024 * KIB,
                    external_flash_bytes=32 * 1024 * KIB)
    text = linker_script(big_ext)
    assert regions(text)["EXTFLASH"] == (0x60000000, "16M") and "NOTE EXTFLASH" in text
    assert regions(linker_script(big_ext, emulator=False))["EXTFLASH"] == (0x90000000, "32M")
    huge_flash = Board("huge", "8 MB flash", sram_bytes=256 * KIB, flash_bytes=8 * 1024 * KIB)
    with pytest.raises(ConfigError, match="does not fit QEMU mps2-an500's 3072 KB at 0x0"):
        linker_script(huge_flash)
    # 3 MB of flash is the most the emulator's FLASH region can be: the test images live in the MB above
    assert regions(linker_script(Board("f", "3 MB", sram_bytes=256 * KIB, flash_bytes=3072 * KIB)))["FLASH"] == (0, "3M")
    with pytest.raises(ConfigError, match="does not fit QEMU mps2-an386"):
        linker_script(Board("f", "3 MB + 1 KB", sram_bytes=256 * KIB, flash_bytes=3073 * KIB, cpu="cortex-m4"))
    assert regions(linker_script(huge_flash, emulator=False))["FLASH"] == (0x08000000, "8M")
    for bad in (100, 8190, 320 * KIB, 8192.0):
        with pytest.raises(ConfigError, match="stack"):
            linker_script(BOARDS["stm32f746"], stack_bytes=bad)


def test_write_linker_script_is_atomic_and_complete(tmp_path):
    path = write_linker_script(BOARDS["stm32h743"], tmp_path / "sub" / "board.ld", stack_bytes=16384)
    assert path.read_text() == linker_script(BOARDS["stm32h743"], stack_bytes=16384)
    assert sorted(p.name for p in path.parent.iterdir()) == ["board.ld"]  # no temp file left behind


def test_makefile_flags_match_the_python_constants():
    text = (RUNTIME_DIR / "Makefile.inc").read_text()
    def var(name):
        return re.search(rf"^{name} = (.*)$", text, re.M)[1].split()
    assert tuple(var("MCU_CFLAGS")) == CORTEX_M7_CFLAGS
    assert tuple(var("MCU_LDFLAGS")) == CORTEX_M7_LDFLAGS
    assert tuple(var("MCU_LIBS")) == CORTEX_M7_LIBS
    assert tuple(var("MCU_CFLAGS_M4")) == CORTEX_M_CFLAGS["cortex-m4"]
    assert [f"$(MCU_RUNTIME_DIR)/{p.name}" for p in runtime_sources()] == var("MCU_RUNTIME_SRCS")
    assert all(p.exists() for p in runtime_sources())
    assert (RUNTIME_DIR / "Makefile.inc").exists()
