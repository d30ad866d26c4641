"""``mcuformer export``: a quantised model -> a self-contained C99 folder for a board."""

from __future__ import annotations

NAME = "export"
HELP = ("Generate the C engine of a quantised model: kernel library, one arena planned by the memory model, "
        "weights as const arrays, Makefile (host and arm-none-eabi) and the board's linker script.")


def add_arguments(p) -> None:
    from mcuformer.cli.common import add_force_argument
    p.add_argument("--quantized", required=True, metavar="DIR", help="a folder written by mcuformer quantize")
    p.add_argument("--output", required=True, metavar="DIR", help="the C folder to write")
    p.add_argument("--board", default="stm32f746", help="stm32f746 (default), stm32f427, stm32h743, "
                   "stm32f411re or stm32l432kc")
    p.add_argument("--techniques", default="all",
                   help="memory techniques the schedule may use: all (default), none, or a comma list")
    p.add_argument("--schedule", default="fastest",
                   help="fastest (default): per block the technique set with the fewest predicted instructions "
                        "whose arena fits the board; smallest: the smallest arena")
    add_force_argument(p, "the files export writes in an existing --output folder (nothing else there is touched)")


def run(args) -> int:
    from mcuformer.codegen.export import export_model
    from mcuformer.memory import Techniques

    info = export_model(args.quantized, args.output, args.board, Techniques.parse(args.techniques),
                        schedule=args.schedule, force=args.force)
    kb = lambda b: f"{b / 1024:.1f} KB"  # noqa: E731
    print(f"exported {info['arch_short']} for {info['board']['name']} -> {args.output}")
    print(f"  {info['kernel_calls']} kernel calls, {info['macs']:,} MACs; arena {kb(info['arena_bytes'])} "
          f"(budget {kb(info['board']['arena_budget_bytes'])}); flash {kb(info['planned_flash_bytes'])} planned, "
          + (f"{kb(info['external_constants_bytes'])} of the constants ({info['external_constants']} arrays) in "
             "external flash, the rest internal" if info.get("external_constants") else
             f"constants in {info['flash_location']} flash"))
    print(f"  schedule: {info['schedule']}, {info['predicted_instructions'] / 1e6:,.2f} M instructions predicted "
          "(QEMU Cortex-M7 instruction counts, not cycles)")
    if not info["fits"]:
        print(f"  warning: the memory model says this model does not fit {info['board']['name']}; "
              "the Cortex-M build will fail to link")
    print(f"  next: mcuformer verify {args.output} [--target cortex-m]  (the board's core: {info['board']['cpu']})")
    return 0
