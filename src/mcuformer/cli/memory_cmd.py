"""``mcuformer memory``: peak SRAM, flash and the arena plan of a subnet on a microcontroller board."""

from __future__ import annotations

import json

from mcuformer.errors import ConfigError

NAME = "memory"
HELP = ("Peak SRAM (planned int8 arena), lower bound, layer-wise baseline, flash, the effect of each "
        "scheduling technique, and whether a subnet fits a board.")


def add_arguments(p) -> None:
    p.add_argument("--arch", metavar="YAML", help="an arch file (YAML or JSON, e.g. written by the search)")
    p.add_argument("--space", nargs="+", metavar="YAML",
                   help="a space (one file, or the official supernet-T.yaml supernet-T-new.yaml pair); measure its "
                        "--which member instead of --arch")
    p.add_argument("--which", default=None, help="with --space: largest or smallest (default largest)")
    p.add_argument("--num-classes", metavar="N",
                   help="with --space: classes of the head when the space leaves them to the data (default 1000)")
    p.add_argument("--rank-ratio", metavar="R", help="with --space: use this rank ratio (search-space factor)")
    p.add_argument("--patch-size", metavar="P", help="with --space: use this patch size (search-space factor)")
    p.add_argument("--board", default="stm32f746", help="stm32f746 (default), stm32f427, stm32h743, "
                   "stm32f411re or stm32l432kc")
    p.add_argument("--sram-kb", metavar="KB", help="custom SRAM size (KB = 1024 B), overriding the board's")
    p.add_argument("--flash-kb", metavar="KB", help="custom internal flash size")
    p.add_argument("--external-flash-kb", metavar="KB", help="custom external flash size (0: none)")
    p.add_argument("--reserve-kb", metavar="KB", help="stack + runtime reserve taken from SRAM (default 16)")
    p.add_argument("--internal-flash-only", action="store_true",
                   help="do not place weights in the board's external flash")
    p.add_argument("--techniques", default="all",
                   help="all (default), none, or a comma list of operator_integration, patch_decomposition, "
                        "token_overwriting, head_by_head, row_by_row")
    p.add_argument("--schedule", default="smallest",
                   help="smallest (default: the smallest arena, what the search costs) or fastest (the fastest "
                        "schedule that fits the board: what mcuformer export builds); the report shows both")
    p.add_argument("--ops", action="store_true", help="also print every op with its live bytes and arena offsets")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="PNG", help="draw the live-bytes-per-op profile with the budget line")
    p.add_argument("--list-boards", action="store_true", help="list the known boards and their budgets, and exit")
    p.add_argument("--force", action="store_true", help="overwrite an existing --plot file")


def _number(value, flag: str, kind=float, positive: bool = True, maximum: float | None = None):
    from mcuformer.utils.checks import check_number

    if value is None:
        return None
    try:
        number = kind(value)
    except ValueError:
        raise ConfigError(f"{flag} must be a{'n integer' if kind is int else ' number'}, got {value!r}") from None
    return check_number(number, flag, integer=kind is int, positive=positive, minimum=None if positive else 0,
                        maximum=maximum)


def _arch(args):
    from mcuformer.space import Arch, SearchSpace

    if bool(args.arch) == bool(args.space):
        raise ConfigError("give exactly one of --arch A.yaml or --space S.yaml")
    if args.arch:
        if args.rank_ratio is not None or args.patch_size is not None:
            raise ConfigError("--rank-ratio and --patch-size pick a point of --space; an --arch file fixes both")
        if args.which is not None or args.num_classes is not None:
            raise ConfigError("--which and --num-classes pick a subnet of --space; an --arch file fixes both")
        return Arch.load(args.arch)
    args.which = args.which or "largest"
    if args.which not in ("largest", "smallest"):
        raise ConfigError(f"--which must be largest or smallest, got {args.which!r}")
    space = SearchSpace.load(args.space)
    rank = _number(args.rank_ratio, "--rank-ratio", maximum=1)
    patch = _number(args.patch_size, "--patch-size", int)
    if rank is not None or patch is not None:
        space = space.with_factors(rank if rank is not None else space.max_rank_ratio,
                                   patch if patch is not None else min(space.patch_size))
    classes = _number(args.num_classes, "--num-classes", int) or space.num_classes or 1000
    return getattr(space, args.which)(classes)


def _list_boards() -> None:
    from mcuformer.memory import BOARDS

    print(f"{'board':<12} {'core':<10} {'SRAM KB':>8} {'arena KB':>9} {'flash KB':>9} {'ext. flash KB':>14}")
    for b in BOARDS.values():
        print(f"{b.name:<12} {b.cpu:<10} {b.sram_bytes // 1024:>8} {b.arena_budget_bytes // 1024:>9} "
              f"{b.flash_bytes // 1024:>9} {b.external_flash_bytes // 1024:>14}")


def run(args) -> int:
    from mcuformer.memory import Techniques, get_board, memory_report

    if args.list_boards:
        _list_boards()
        return 0
    if args.plot:
        from mcuformer.utils.checks import output_file
        output_file(args.plot, "--plot", force=args.force)
    arch = _arch(args)
    board = get_board(args.board).with_overrides(
        sram_kb=_number(args.sram_kb, "--sram-kb"), flash_kb=_number(args.flash_kb, "--flash-kb"),
        external_flash_kb=_number(args.external_flash_kb, "--external-flash-kb", positive=False),
        reserve_kb=_number(args.reserve_kb, "--reserve-kb", positive=False))
    if args.schedule not in ("smallest", "fastest"):
        raise ConfigError(f"--schedule {args.schedule!r}: use smallest or fastest")
    report = memory_report(arch, board, Techniques.parse(args.techniques),
                           allow_external_flash=not args.internal_flash_only, schedule=args.schedule)
    if args.plot:
        from mcuformer.memory.plot import plot_profile

        plot_profile(report, args.plot)
    if args.json:
        d = report.to_dict()
        if args.plot:
            d["plot"] = args.plot
        print(json.dumps(d, indent=2))
        return 0
    print(report.format())
    if args.ops:
        plan = report.plan
        live = plan.liveness.live_bytes

        def where(tensors) -> str:
            return " ".join(f"{t.name.rsplit('.', 1)[-1]}@{plan.offset(t.name)}+{t.size}" for t in tensors) or "-"

        print("\n  #  op                                    kernel                    live B  "
              "outputs (name@offset+bytes) | scratch")
        for i, op in enumerate(report.ops):
            print(f"{i:3}  {op.name:<37} {op.kernel:<24} {live[i]:>8,}  {where(op.outputs)} | {where(op.scratch)}")
    if args.plot:
        print(f"\nprofile plot: {args.plot}")
    return 0
