"""The Cortex-M4 boards (STM32F411RE: 128 KB SRAM / 512 KB flash, STM32L432KC: 64 KB / 256 KB): their
profiles, linker scripts, the runtime on QEMU's mps2-an386, and the engine bit-exact there. A few seconds."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuformer.codegen.export import export_model
from mcuformer.codegen.linker import QEMU_MPS2_AN386_COMMAND, cortex_m7_build_command, linker_script, \
    write_linker_script
from mcuformer.errors import ConfigError
from mcuformer.memory import BOARDS, get_board
from mcuformer.memory.boards import KIB, Board
from mcuformer.quantize.synthetic import random_quant_model
from mcuformer.space import Arch
from mcuformer.verify import VerifyError, verify
from mcuformer.verify.engine import write_verify_data

from conftest import assert_one_line_error, run_cli
from test_cortex_m_runtime import COUNTER, LOOP_K, regions
from test_engine import random_arch

HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed "
                                                    "(scripts/setup.sh installs them)")

# 1024 tokens of 32 channels: a 66.7 KB arena, over the STM32L432KC's 64 KB SRAM, inside the F411RE's 128 KB.
OVER_L432 = Arch(img_size=64, patch_size=2, rank_ratio=1.0, embed_dim=32, depth=1, num_heads=(2,),
                 mlp_ratio=(2.0,), num_classes=4, head_dim=8)


def test_the_m4_boards_and_their_budgets():
    f411, l432 = get_board("STM32F411RE"), get_board("stm32l432kc")
    assert (f411.sram_bytes, f411.flash_bytes, f411.cpu) == (128 * KIB, 512 * KIB, "cortex-m4")
    assert (l432.sram_bytes, l432.flash_bytes, l432.cpu) == (64 * KIB, 256 * KIB, "cortex-m4")
    assert (f411.arena_budget_bytes, l432.arena_budget_bytes) == (112 * KIB, 48 * KIB)
    assert f411.external_flash_bytes == l432.external_flash_bytes == 0
    assert get_board("stm32f746").cpu == "cortex-m7" and get_board("stm32f411re").to_dict()["cpu"] == "cortex-m4"
    assert Board("x", "x", sram_bytes=KIB * 64, flash_bytes=KIB).cpu == "cortex-m7"
    with pytest.raises(ConfigError, match="cpu 'cortex-m0'"):
        Board("x", "x", sram_bytes=KIB * 64, flash_bytes=KIB, cpu="cortex-m0")
    with pytest.raises(ConfigError, match="stm32f411re, stm32f427, stm32f746, stm32h743, stm32l432kc"):
        get_board("stm32f412")


def test_cli_lists_the_boards_and_takes_them():
    out = run_cli("memory", "--list-boards", check=True).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert sorted(rows) == sorted(BOARDS)
    assert rows["stm32f411re"] == ["cortex-m4", "128", "112", "512", "0"]
    assert rows["stm32l432kc"] == ["cortex-m4", "64", "48", "256", "0"]
    d = run_cli("memory", "--space", "configs/cifar10.yaml", "--board", "stm32l432kc", "--json", check=True).stdout
    assert '"name": "stm32l432kc"' in d and f'"sram_bytes": {64 * KIB}' in d


def test_m4_linker_scripts_have_the_real_sizes():
    emu = regions(linker_script(BOARDS["stm32l432kc"]))
    assert emu == {"FLASH": (0x0, "256K"), "RAM": (0x20000000, "64K - MCU_STACK_BYTES"),
                   "STACK": (0x20000000, "MCU_STACK_BYTES"), "TESTDATA": (0x00300000, "1M")}
    assert "QEMU mps2-an386" in linker_script(BOARDS["stm32f411re"])
    real = regions(linker_script(BOARDS["stm32f411re"], emulator=False))
    assert real["FLASH"] == (0x08000000, "512K") and real["RAM"] == (0x20000000, "128K - MCU_STACK_BYTES")
    # mps2-an386 has its PSRAM at 0x21000000 (0x60000000 is a bus fault there), mps2-an500 at 0x60000000.
    ext = Board("ext", "an M4 with QSPI", sram_bytes=128 * KIB, flash_bytes=512 * KIB,
                external_flash_bytes=8 * 1024 * KIB, cpu="cortex-m4")
    assert regions(linker_script(ext))["EXTFLASH"] == (0x21000000, "8M")
    assert regions(linker_script(ext, cpu="cortex-m7"))["EXTFLASH"] == (0x60000000, "8M")


def _run_m4(tmp: Path, source: str, board: Board, cflags=()) -> subprocess.CompletedProcess:
    src = tmp / "prog.c"
    src.write_text(source)
    script = write_linker_script(board, tmp / "prog.ld")
    elf = tmp / "prog.elf"
    cmd = cortex_m7_build_command([src], script, elf, extra_cflags=("-Wall", "-Wextra", *cflags), cpu="cortex-m4")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return subprocess.run([*QEMU_MPS2_AN386_COMMAND, str(elf)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)


EXTFLASH = r"""
#include <stdint.h>
#include "semihost.h"
#include "stack.h"
__attribute__((section(".extflash.weights"))) const uint8_t weights[4] = {1, 2, 3, 4};
int main(void)
{
    const volatile uint8_t *w = weights;
    mcu_write("weights at "); mcu_write_hex32((uint32_t)(uintptr_t)weights);
    mcu_write(" sum "); mcu_write_uint((unsigned)w[0] + w[1] + w[2] + w[3]);
    mcu_write(" stack "); mcu_write_uint(mcu_stack_size()); mcu_write("\n");
    return 0;
}
"""


@needs_arm
def test_runtime_on_mps2_an386(tmp_path):
    """The runtime on QEMU's Cortex-M4: 40 instructions per SysTick tick as on mps2-an500, the stack
    painted, .extflash loaded into the PSRAM at 0x21000000."""
    n = 250_000
    r = _run_m4(tmp_path, COUNTER, get_board("stm32l432kc"), [f"-DN={n}u"])
    assert r.returncode == 0, r.stdout + r.stderr
    (n1, _, t1), (n2, _, t2) = [tuple(map(int, m)) for m in
                                re.findall(r"^n (\d+) instructions (\d+) ticks (\d+)$", r.stdout, re.M)]
    assert (n2 - n1) * LOOP_K / (t2 - t1) == pytest.approx(40.0, abs=0.05), r.stdout
    ext = Board("ext", "an M4 with QSPI", sram_bytes=64 * KIB, flash_bytes=256 * KIB,
                external_flash_bytes=64 * KIB, cpu="cortex-m4")
    r = _run_m4(tmp_path, EXTFLASH, ext)
    assert r.returncode == 0 and r.stdout == "weights at 0x21000000 sum 10 stack 8192\n", r.stdout + r.stderr


@needs_arm
@pytest.mark.parametrize("board,seed", [("stm32f411re", 101), ("stm32l432kc", 100)])
def test_small_model_bit_exact_on_the_emulated_m4(tmp_path, board, seed):
    arch = random_arch(random.Random(1000 + seed))
    folder = tmp_path / "c"
    export_model(random_quant_model(arch, seed=seed), folder, board)
    r = verify(folder, "cortex-m4", images=2, seed=seed)
    assert r.target == "cortex-m4" and r.bit_exact and r.guard_damage == 0, r.mismatched_images
    assert r.board_sram_bytes == get_board(board).sram_bytes and r.board_flash_bytes == get_board(board).flash_bytes
    assert r.static_ram_bytes >= r.arena_bytes and 0 < r.stack_bytes < 8192 and r.flash_bytes > 0
    assert r.instructions and min(r.instructions) > r.macs
    elf = folder / "build/cortex-m4/verify.elf"
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True, text=True).stdout
    assert "VFPv4-D16" in attrs, attrs  # built for the M4F's FPU, not the M7's FPv5
    if board == "stm32l432kc":  # the plain C kernels too: same logits
        p = verify(folder, "cortex-m4", images=2, seed=seed, portable=True)
        assert p.bit_exact and p.predictions == r.predictions
    # The CLI derives the core from the export's board and reports like the M7 path.
    proc = run_cli("verify", folder, "--target", "cortex-m", "--images", "2", "--seed", seed, check=True)
    assert proc.stdout.startswith("cortex-m4: 2 images") and "bit-exact" in proc.stdout
    assert f"of {get_board(board).sram_bytes / KIB:.1f} KB SRAM" in proc.stdout and "instructions per" in proc.stdout


@needs_arm
def test_a_model_over_the_l432kcs_sram_fails_to_link(tmp_path):
    q = random_quant_model(OVER_L432)
    info = export_model(q, tmp_path / "l432", "stm32l432kc")
    assert info["arena_bytes"] > 64 * KIB - 8192 and not info["sram_fits"]
    with pytest.raises(VerifyError, match=r"does not fit the board \(stm32l432kc: 64 KB SRAM.*RAM region overflowed"):
        verify(tmp_path / "l432", "cortex-m", images=1)
    proc = run_cli("verify", tmp_path / "l432", "--target", "cortex-m4", "--images", "1")
    assert_one_line_error(proc, "does not fit the board", "RAM")
    # The same model links for the STM32F411RE's 128 KB: it is the budget that fails, not the build.
    export_model(q, tmp_path / "f411", "stm32f411re")
    write_verify_data(tmp_path / "f411", np.zeros((1, 64, 64, 3), np.int8))
    r = subprocess.run(["make", "-s", "emulator"], cwd=tmp_path / "f411", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "f411/build/cortex-m4/verify.elf").exists(), r.stderr


@needs_arm
def test_test_images_stay_out_of_the_boards_flash(tmp_path):
    # A model that fills a board's flash still verifies: the emulator's linker script puts the test
    # images (5 x 3 KB here) in TESTDATA, outside FLASH, and the flash figures are the model's alone.
    arch = Arch(img_size=32, patch_size=4, rank_ratio=0.5, embed_dim=32, depth=1, num_heads=(2,),
                mlp_ratio=(2.0,), num_classes=10, head_dim=16)
    q = random_quant_model(arch, seed=7)
    export_model(q, tmp_path / "l432", "stm32l432kc")
    model = verify(tmp_path / "l432", "cortex-m4", images=1).model_flash_bytes
    tight = Board("tight", "an M4 whose flash the model fills", sram_bytes=64 * KIB, cpu="cortex-m4",
                  flash_bytes=-(-model // KIB) * KIB + KIB)  # 1 KB for the board's name and the image count
    assert tight.flash_bytes - model < 5 * arch.img_size ** 2 * arch.in_chans  # no room for the images
    export_model(q, tmp_path / "tight", tight)
    r = verify(tmp_path / "tight", "cortex-m4", images=5, seed=3)
    assert r.bit_exact and r.flash_bytes == r.model_flash_bytes <= tight.flash_bytes
    assert abs(r.model_flash_bytes - model) < 256
    nm = subprocess.run(["arm-none-eabi-nm", str(tmp_path / "tight/build/cortex-m4/verify.elf")],
                        capture_output=True, text=True, check=True).stdout
    assert re.search(r"^00300000 R verify_images$", nm, re.M), nm


def test_verify_target_follows_the_board(tmp_path):
    from mcuformer.verify.engine import _cortex_m_target

    (tmp_path / "Makefile").write_text("MCU_CPU ?= cortex-m4\n")
    m4 = {"board": {"cpu": "cortex-m4"}, "flash_location": "internal"}
    assert _cortex_m_target("cortex-m", m4, tmp_path) == "cortex-m4"
    assert _cortex_m_target("cortex-m7", m4, tmp_path) == "cortex-m7"
    assert _cortex_m_target("cortex-m", {"board": {}}, tmp_path) == "cortex-m7"  # exports from before boards had a cpu
    with pytest.raises(ConfigError, match="external flash.*--target cortex-m4"):
        _cortex_m_target("cortex-m7", dict(m4, flash_location="external"), tmp_path)
    (tmp_path / "Makefile").write_text("ARM_DIR := build/cortex-m7\n")  # an export's Makefile without MCU_CPU
    with pytest.raises(ConfigError, match="export it again"):
        _cortex_m_target("cortex-m4", m4, tmp_path)
    proc = run_cli("verify", tmp_path, "--target", "cortex-m3")
    assert proc.returncode == 2 and "invalid choice: 'cortex-m3'" in proc.stderr
