"""The memory budget a candidate must meet before it may cost an evaluation (no torch here)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from mcuformer.errors import ConfigError
from mcuformer.memory import Board, estimate, estimate_instructions, memory_report
from mcuformer.memory.latency import latency_ms
from mcuformer.space import Arch, SearchSpace

KIB = 1024


@dataclass(frozen=True)
class Budget:
    """SRAM = the board's arena budget; flash = its internal flash, or internal code + external
    constants when ``allow_external_flash`` (the memory report's rule); optionally a latency: the
    latency model's predicted instructions of the fastest schedule that fits the board (what the
    exporter builds) at the board's clock, one instruction per cycle (QEMU counts instructions, not
    cycles), at most ``max_latency_ms``."""

    board: Board
    allow_external_flash: bool = False
    max_latency_ms: float | None = None

    def __post_init__(self):
        if self.max_latency_ms is not None:
            if not self.max_latency_ms > 0:
                raise ConfigError(f"--max-latency-ms must be positive, got {self.max_latency_ms:g}")
            if self.board.clock_mhz <= 0:
                raise ConfigError(f"--max-latency-ms: board {self.board.name} has no clock frequency")

    @property
    def sram_bytes(self) -> int:
        return self.board.arena_budget_bytes

    @property
    def flash_bytes(self) -> int:
        return self.board.flash_bytes

    def label(self) -> str:
        ext = " + external flash" if self.allow_external_flash else ""
        latency = (f", latency <= {self.max_latency_ms:g} ms at {self.board.clock_mhz:g} MHz (predicted instructions, "
                   "1 per cycle)" if self.max_latency_ms is not None else "")
        return (f"{self.board.name}: arena {self.sram_bytes / KIB:g} KB SRAM "
                f"({self.board.sram_bytes / KIB:g} KB less reserve), flash {self.flash_bytes / KIB:g} KB{ext}{latency}")

    def latency_ms(self, arch: Arch) -> float:
        """Predicted latency of the exporter's schedule (the fastest that fits the arena budget)."""
        return latency_ms(estimate_instructions(arch, budget=self.sram_bytes), self.board.clock_mhz)

    def measure(self, arch: Arch) -> tuple[int, int, bool]:
        """(peak SRAM bytes, flash bytes, fits) by the exact memory model."""
        sram, flash = estimate(arch)
        fits = sram <= self.sram_bytes and flash <= self.flash_bytes
        if not fits and sram <= self.sram_bytes and self.allow_external_flash:
            fits = memory_report(arch, self.board, allow_external_flash=True).fits_flash
        if fits and self.max_latency_ms is not None:
            fits = self.latency_ms(arch) <= self.max_latency_ms
        return sram, flash, fits

    def fits(self, arch: Arch) -> bool:
        return self.measure(arch)[2]

    def to_dict(self) -> dict:
        return {"board": self.board.name, "arena_sram_bytes": self.sram_bytes, "flash_bytes": self.flash_bytes,
                "allow_external_flash": self.allow_external_flash, "max_latency_ms": self.max_latency_ms,
                "clock_mhz": self.board.clock_mhz}


def smallest_corners(space: SearchSpace, num_classes: int) -> list[Arch]:
    """The smallest subnet of each (rank ratio, patch size) pair. Memory grows with width, depth,
    heads and MLP ratio, but not monotonically with rank or patch (a larger patch has fewer tokens
    and a larger patch-embedding weight), so the smallest possible figures are minima over these."""
    base = space.smallest(num_classes)
    patches = space.patch_size if base.stem == "patch" else [base.patch_size]  # a conv stem has no patch size
    return [Arch(**{**base.to_dict(), "rank_ratio": r, "patch_size": p})
            for r, p in itertools.product(space.rank_ratio, patches)]


def check_feasible(space: SearchSpace, budget: Budget, num_classes: int) -> None:
    """Stop at once (one line) when no subnet of the space can meet the budget."""
    corners = smallest_corners(space, num_classes)
    measured = [budget.measure(a) for a in corners]
    if any(fits for _, _, fits in measured):
        return
    min_sram = min(s for s, _, _ in measured)
    min_flash = min(f for _, f, _ in measured)
    parts = []
    if min_sram > budget.sram_bytes:
        parts.append(f"SRAM budget {budget.sram_bytes / KIB:g} KB (arena) is below the smallest subnet's "
                     f"{min_sram / KIB:g} KB ({min_sram} B)")
    if min_flash > budget.flash_bytes and not budget.allow_external_flash:
        parts.append(f"flash budget {budget.flash_bytes / KIB:g} KB is below the smallest subnet's "
                     f"{min_flash / KIB:g} KB ({min_flash} B)")
    if not parts and budget.max_latency_ms is not None:
        fastest = min(budget.latency_ms(a) for a in corners)
        if fastest > budget.max_latency_ms:
            parts.append(f"--max-latency-ms {budget.max_latency_ms:g} is below the smallest subnets' predicted "
                         f"{fastest:.3g} ms at {budget.board.clock_mhz:g} MHz")
    if not parts:  # each budget alone is met by some subnet, but never both by the same one
        parts.append(f"no subnet meets SRAM {budget.sram_bytes / KIB:g} KB and flash "
                     f"{budget.flash_bytes / KIB:g} KB together (smallest SRAM {min_sram / KIB:g} KB, "
                     f"smallest flash {min_flash / KIB:g} KB)")
    raise ConfigError(f"impossible budget for space {space.name}: " + "; ".join(parts))
