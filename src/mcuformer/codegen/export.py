"""``mcuformer export``: a quantised model -> a self-contained C99 folder for one board.

    DIR/mcuformer_model.h|c     the API, the arena, one kernel call per op of the memory model
    DIR/mcuformer_weights.h|c   the constants (const arrays: flash; past its room, the board's QSPI region)
    DIR/mcu_*.c|h               the kernel library (portable C + the Cortex-M DSP path)
    DIR/Makefile                host, lib (the board's Cortex-M7/M4), emulator (QEMU mps2-an500/386) builds
    DIR/mcuformer.ld            the board's memory for the emulator (real sizes, addresses QEMU has)
    DIR/mcuformer-board.ld      the same at the chip's real addresses
    DIR/cortex_m/               bare-metal start-up, semihosting console, instruction counter, stack paint
    DIR/quantized/              the quantised model (the reference `mcuformer verify` compares with)
    DIR/export.json             arch, board, techniques, planned arena and flash
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from mcuformer.codegen.emit import generate
from mcuformer.errors import ConfigError
from mcuformer.memory import Techniques, get_board, memory_report
from mcuformer.memory.boards import Board
from mcuformer.quantize.model import QuantModel
from mcuformer.quantize.validate import validate_quant_model
from mcuformer.utils.checks import output_dir
from mcuformer.utils.io import atomic_write_all, missing_folders, remove_empty_folders, text_file

EXPORT_FORMAT = "mcuformer-export-v1"
# Internal flash kept free beside the memory model's code estimate when constants spill to external flash:
# the start-up code, libc and the kernels' code past the estimate (a 240x240 T subnet linked 32.1 KB of
# non-constant flash against 26.0 KB estimated), and some of an application's own code.
INTERNAL_FLASH_HEADROOM_BYTES = 32 * 1024


def place_constants(sizes: dict[str, int], room: int) -> frozenset[str]:
    """The constants that go to external flash: in the model's order, each one stays internal while it fits
    the room left (4-byte aligned, as the arrays are), so the internal flash is filled before the slower
    memory-mapped QSPI is used; the rest go external."""
    from mcuformer.memory.ops import align

    external = set()
    for name, size in sizes.items():
        if align(size) <= room:
            room -= align(size)
        else:
            external.add(name)
    return frozenset(external)


def _package_files(folder: str):
    root = resources.files("mcuformer.codegen") / folder
    return [f for f in root.iterdir() if f.is_file() and f.name.endswith((".c", ".h"))]


def _keep_checkpoint_reachable(q: QuantModel, source: Path, copy: Path) -> None:
    """A relative checkpoint name (models/ holds them so) is relative to the quantised folder; in the
    export's copy it must name the same file, so that verify finds the model's test images."""
    from mcuformer.quantize.workflow import recorded_checkpoint

    name = q.info.get("checkpoint")
    if not isinstance(name, str) or Path(name).is_absolute():
        return
    checkpoint = recorded_checkpoint(q, source)
    if checkpoint.is_file():
        q.info = {**q.info, "checkpoint": os.path.relpath(checkpoint.resolve(), copy.resolve())}


def export_model(quantized, output, board: Board | str = "stm32f746", techniques: Techniques = Techniques.all(),
                 stack_bytes: int | None = None, schedule: str = "fastest", force: bool = False) -> dict:
    """Write the C folder of a quantised model (a QuantModel or its folder); returns export.json's content.
    ``schedule``: "fastest" (default: per section the technique set with the fewest predicted
    instructions whose arena fits the board's budget) or "smallest" (the smallest arena).

    An existing non-empty ``output`` needs ``force``; even then only the files export writes are replaced
    (nothing else in the folder is deleted)."""
    from mcuformer.codegen.linker import linker_script

    q = quantized if isinstance(quantized, QuantModel) else QuantModel.load(quantized)
    q = validate_quant_model(q, str(quantized) if not isinstance(quantized, QuantModel) else "quantised model")
    board = get_board(board) if isinstance(board, str) else board
    out = output_dir(output, "--output", force=force, owned=["generated files"])
    for sub in ("quantized", "cortex_m", "verify"):
        if (out / sub).exists() and not (out / sub).is_dir():
            raise ConfigError(f"--output {out}: {out / sub} is a file, export writes a folder there")
    if schedule not in ("fastest", "smallest"):
        raise ConfigError(f"--schedule {schedule!r}: use fastest or smallest")
    report = memory_report(q.arch, board, techniques, schedule=schedule)
    requested = schedule
    if schedule == "fastest" and report.flash_location != "internal":
        # The fastest schedule runs more, smaller kernels, and each call costs code. Where that code
        # pushes the model past the internal flash that the search checked it against (with the
        # smallest schedule), the smallest schedule is the one that fits (no slow external flash).
        smallest = memory_report(q.arch, board, techniques, schedule="smallest")
        if smallest.flash_location == "internal":
            report, schedule = smallest, "smallest"
    ops, plan = report.ops, report.plan
    external_names = frozenset()
    if report.flash_location == "external":
        room = board.flash_bytes - report.flash["code"] - INTERNAL_FLASH_HEADROOM_BYTES
        external_names = place_constants({n: int(v.nbytes) for n, v in q.params.items()}, room)
    gen = generate(q, ops, plan, techniques.label(), external=external_names)
    texts = {"mcuformer_model.h": gen.header, "mcuformer_model.c": gen.source,
             "mcuformer_weights.h": gen.weights_header, "mcuformer_weights.c": gen.weights}
    texts.update({f.name: f.read_text() for f in _package_files("library")})
    texts.update({f"cortex_m/{f.name}": f.read_text() for f in _package_files("runtime/cortex_m")})
    templates = resources.files("mcuformer.codegen") / "templates"
    external = report.flash_location == "external"
    texts["Makefile"] = (f"# Generated by mcuformer export for {board.name}.\n"
                         f"WEIGHTS_EXTERNAL ?= {int(external)}\nMCU_CPU ?= {board.cpu}\n\n"
                         + (templates / "Makefile").read_text())
    texts["verify/verify_main.c"] = (templates / "verify_main.c").read_text()
    stack = stack_bytes or board.reserve_bytes // 2
    texts["mcuformer.ld"] = linker_script(board, stack_bytes=stack, emulator=True)
    texts["mcuformer-board.ld"] = linker_script(board, stack_bytes=stack, emulator=False)
    if not isinstance(quantized, QuantModel):
        _keep_checkpoint_reachable(q, Path(quantized), out / "quantized")
    info = {
        "format": EXPORT_FORMAT,
        "arch": q.arch.to_dict(),
        "arch_short": q.arch.short(),
        "board": board.to_dict(),
        "techniques": techniques.to_dict(),
        "schedule": schedule,
        **({"schedule_requested": requested,
            "schedule_why": "the fastest schedule's code would not fit the internal flash"} if schedule != requested else {}),
        # the budget the fastest schedule was built with (build_ops(..., budget=)); None: the smallest arena
        "schedule_budget_bytes": board.arena_budget_bytes if report.plan is not report.smallest else None,
        "predicted_instructions": round(report.predicted_instructions),
        "section_techniques": {k: list(v.enabled()) for k, v in report.sections.items()},
        "kernel_calls": gen.num_calls,
        "macs": gen.macs,
        "arena_bytes": plan.arena_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes,
        "planned_flash_bytes": report.flash_bytes,
        "flash_location": report.flash_location,
        "stack_bytes": stack,
        "fits": report.fits,
        "sram_fits": report.fits_sram,
        "constants_bytes": int(sum(v.nbytes for v in q.params.values())),
        "external_constants_bytes": int(sum(q.params[n].nbytes for n in external_names)),
        "external_constants": len(external_names),
    }
    texts["export.json"] = json.dumps(info, indent=2) + "\n"
    _write_all(out, texts, q.files(out / "quantized"))
    return info


def _write_all(out: Path, texts: dict[str, str], more: list) -> None:
    """Every file is written before the first replaces its old one: a full disk or a failing write leaves an
    earlier export whole (never new code beside old weights), and takes back the folders made for a new one."""
    made = missing_folders(*(out / sub for sub in ("cortex_m", "verify", "quantized")))
    try:
        atomic_write_all([text_file(out / name, text) for name, text in texts.items()] + more)
    except BaseException:
        remove_empty_folders(made)
        raise
