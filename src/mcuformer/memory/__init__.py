"""The memory model: the int8 operator list of a subnet, its arena plan, peak SRAM and flash.

The contract between the search and the C engine: the search ranks subnets by ``estimate`` (fast),
the code generator asks ``build_ops`` + ``plan_arena`` for the kernel calls and arena offsets, and
both come from the same op list. No torch here: the search calls this thousands of times.
"""

from mcuformer.memory.boards import BOARDS, Board, get_board
from mcuformer.memory.lifetimes import Liveness, analyse
from mcuformer.memory.ops import ALIGN, Op, Param, Tensor, unique_params
from mcuformer.memory.planner import ArenaPlan, PlanError, check_plan, greedy_by_size, plan_arena
from mcuformer.memory.report import MemoryReport, memory_report, official_formula_bytes
from mcuformer.memory.schedule import (Estimate, build_ops, check_arch, estimate, estimate_instructions, flash_bytes,
                                       peak_sram, section_techniques)
from mcuformer.memory.techniques import TECHNIQUES, Techniques

__all__ = [
    "ALIGN", "ArenaPlan", "BOARDS", "Board", "Estimate", "Liveness", "MemoryReport", "Op", "Param", "PlanError",
    "TECHNIQUES", "Techniques", "Tensor", "analyse", "build_ops", "check_arch", "check_plan", "estimate",
    "estimate_instructions", "flash_bytes", "get_board", "greedy_by_size", "memory_report", "official_formula_bytes",
    "peak_sram", "plan_arena", "section_techniques", "unique_params",
]
