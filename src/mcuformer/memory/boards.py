"""Microcontroller boards: SRAM, flash, external flash, and what the arena may use.

The arena is one contiguous block of SRAM, so its budget is the SRAM less a reserve for the stack
and the runtime, and never more than the largest contiguous SRAM region:

    arena budget = min(sram - reserve, contiguous sram)

``DEFAULT_RESERVE_BYTES`` (16 KiB) is an estimate until the engine's linker map and stack
painting measure it: 8 KiB of main stack (main -> model_run -> one kernel; the kernels are leaf
functions with frames well under 1 KiB, the rest is interrupt and HAL headroom) and 8 KiB for the
C runtime's and HAL's .data/.bss (no heap). Code and weights live in flash; when they pass the
internal flash, the weights may be memory-mapped from external flash (QSPI) where a board has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from mcuformer.errors import ConfigError

KIB = 1024
DEFAULT_RESERVE_BYTES = 16 * KIB
CPUS = ("cortex-m4", "cortex-m7")  # the cores the C engine is built and emulated for


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    sram_bytes: int
    flash_bytes: int
    external_flash_bytes: int = 0
    contiguous_sram_bytes: int | None = None  # None: all of the SRAM is one region
    reserve_bytes: int = DEFAULT_RESERVE_BYTES
    clock_mhz: float = 0.0  # the core clock (latency = instructions / clock); 0: unknown
    cpu: str = "cortex-m7"  # the core: picks the build flags and the emulated machine (verify --target cortex-m)

    def __post_init__(self):
        for name in ("sram_bytes", "flash_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"board {self.name}: {name.replace('_bytes', '')} must be positive, "
                                  f"got {getattr(self, name) / KIB:g} KB")
        if self.external_flash_bytes < 0:
            raise ConfigError(f"board {self.name}: external flash must be >= 0, got {self.external_flash_bytes / KIB:g} KB")
        if self.cpu not in CPUS:
            raise ConfigError(f"board {self.name}: cpu {self.cpu!r} is not one of {', '.join(CPUS)}")
        if not 0 <= self.reserve_bytes < self.sram_bytes:
            raise ConfigError(f"board {self.name}: the stack/runtime reserve ({self.reserve_bytes / KIB:g} KB) "
                              f"must be >= 0 and below the SRAM ({self.sram_bytes / KIB:g} KB)")

    @property
    def arena_budget_bytes(self) -> int:
        contiguous = self.contiguous_sram_bytes or self.sram_bytes
        return min(self.sram_bytes - self.reserve_bytes, contiguous)

    def with_overrides(self, sram_kb: float | None = None, flash_kb: float | None = None,
                       external_flash_kb: float | None = None, reserve_kb: float | None = None) -> "Board":
        """This board with custom figures (KB = 1024 bytes). A custom SRAM size is taken as one region."""
        changes, notes = {}, []
        for arg, field, positive in ((sram_kb, "sram_bytes", True), (flash_kb, "flash_bytes", True),
                                     (external_flash_kb, "external_flash_bytes", False),
                                     (reserve_kb, "reserve_bytes", False)):
            if arg is None:
                continue
            label = field.replace("_bytes", "").replace("_", " ")
            if isinstance(arg, bool) or not isinstance(arg, (int, float)) or not math.isfinite(arg):
                raise ConfigError(f"{label} must be a finite number of KB, got {arg!r}")
            if positive and arg <= 0:
                raise ConfigError(f"{label} budget must be positive, got {arg:g} KB")
            if arg < 0:
                raise ConfigError(f"{label} must be >= 0, got {arg:g} KB")
            changes[field] = int(round(arg * KIB))
            notes.append(f"{label} {arg:g} KB")
        if not changes:
            return self
        if "sram_bytes" in changes:
            changes["contiguous_sram_bytes"] = None
        return replace(self, name=f"{self.name} (custom)",
                       description=f"{self.description}; custom: {', '.join(notes)}", **changes)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "sram_bytes": self.sram_bytes,
                "flash_bytes": self.flash_bytes, "external_flash_bytes": self.external_flash_bytes,
                "contiguous_sram_bytes": self.contiguous_sram_bytes or self.sram_bytes,
                "reserve_bytes": self.reserve_bytes, "arena_budget_bytes": self.arena_budget_bytes,
                "clock_mhz": self.clock_mhz, "cpu": self.cpu}


BOARDS = {
    "stm32f746": Board(
        "stm32f746",
        "STM32F746 (Cortex-M7, 216 MHz) on the 32F746G-DISCOVERY: 320 KB SRAM (DTCM 64 + SRAM1 240 + "
        "SRAM2 16 KB, contiguous at 0x20000000), 1 MB flash, 16 MB QSPI flash (N25Q128A, memory-mapped)",
        sram_bytes=320 * KIB, flash_bytes=1024 * KIB, external_flash_bytes=16 * 1024 * KIB, clock_mhz=216.0),
    "stm32f427": Board(
        "stm32f427",
        "STM32F427 (Cortex-M4, 180 MHz): 256 KB SRAM = 192 KB contiguous (SRAM1 112 + SRAM2 16 + SRAM3 "
        "64 KB) + 64 KB CCM (holds the stack and runtime), 1 MB flash",
        sram_bytes=256 * KIB, flash_bytes=1024 * KIB, contiguous_sram_bytes=192 * KIB, clock_mhz=180.0,
        cpu="cortex-m4"),
    "stm32h743": Board(
        "stm32h743",
        "STM32H743 (Cortex-M7, 480 MHz): 512 KB AXI SRAM (contiguous; the chip's DTCM and D2/D3 SRAM "
        "are not counted, as in the paper), 2 MB flash",
        sram_bytes=512 * KIB, flash_bytes=2048 * KIB, clock_mhz=480.0),
    # Two Cortex-M4 parts where the budget binds (emulated on QEMU's mps2-an386).
    "stm32f411re": Board(
        "stm32f411re",
        "STM32F411RE (Cortex-M4F, 100 MHz) on the NUCLEO-F411RE: 128 KB SRAM (one region at 0x20000000), "
        "512 KB flash",
        sram_bytes=128 * KIB, flash_bytes=512 * KIB, clock_mhz=100.0, cpu="cortex-m4"),
    "stm32l432kc": Board(
        "stm32l432kc",
        "STM32L432KC (Cortex-M4F, 80 MHz) on the NUCLEO-L432KC: 64 KB SRAM (SRAM1 48 KB + SRAM2 16 KB, "
        "contiguous at 0x20000000), 256 KB flash",
        sram_bytes=64 * KIB, flash_bytes=256 * KIB, clock_mhz=80.0, cpu="cortex-m4"),
}


def get_board(name: str) -> Board:
    key = str(name).strip().lower()
    if key not in BOARDS:
        raise ConfigError(f"unknown board {name!r}; known boards: {', '.join(sorted(BOARDS))}")
    return BOARDS[key]
