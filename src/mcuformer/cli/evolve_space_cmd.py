"""mcuformer evolve-space: evolve the search space over (rank ratio, patch size)."""

from __future__ import annotations

from mcuformer.cli.common import (add_progress_argument, add_space_argument, device_name, nonnegative_float,
                                  nonnegative_int, positive_float, positive_int)

NAME = "evolve-space"
HELP = ("evolve the search space over the low-rank ratio and patch size: short supernets at grid points, "
        "least-squares planes of error and infeasible fraction, steps downhill")


def add_arguments(p):
    add_space_argument(p)
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the CIFAR-10 archive)")
    p.add_argument("--board", default="stm32f746")
    p.add_argument("--sram-kb", type=positive_float, default=None)
    p.add_argument("--flash-kb", type=positive_float, default=None)
    p.add_argument("--allow-external-flash", action="store_true")
    p.add_argument("--output", required=True, help="folder: per-point supernets, table.md, result.json, space.yaml, PNG")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--rank-grid", type=positive_float, nargs="+", default=None,
                   help="rank ratio grid (default: the space's evolution grid, else its rank ratios)")
    p.add_argument("--patch-grid", type=positive_int, nargs="+", default=None, help="patch size grid (same default)")
    p.add_argument("--start", nargs="+", default=None, metavar="R:P", help="start points (default: --starts random)")
    p.add_argument("--starts", type=positive_int, default=None,
                   help="seeded random start points when no --start (default 3)")
    p.add_argument("--rounds", type=positive_int, default=3)
    p.add_argument("--weight", type=nonnegative_float, default=1.0, help="weight of the infeasible fraction against the error")
    p.add_argument("--neighbours", type=positive_int, default=5, help="visited points each plane is fitted to")
    p.add_argument("--config", default=None, help="training settings YAML for the per-point supernets")
    p.add_argument("--epochs", type=positive_int, default=1, help="epochs per point (short supernets)")
    p.add_argument("--limit-train", type=nonnegative_int, default=0, help="train each point on N images")
    p.add_argument("--steps-per-epoch", type=nonnegative_int, default=0)
    p.add_argument("--samples", type=positive_int, default=20, help="random subnets whose accuracy scores a point")
    p.add_argument("--eval-limit", type=nonnegative_int, default=1000, help="test images they are scored on")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--workers", type=nonnegative_int, default=2)
    p.add_argument("--device", type=device_name, default="auto")
    add_progress_argument(p)


def _points(specs) -> list:
    from mcuformer.errors import ConfigError
    from mcuformer.utils.checks import check_number
    out = []
    for s in specs:
        try:
            r, p = s.split(":")
            out.append((check_number(float(r), "start rank ratio", positive=True, maximum=1),
                        check_number(int(p), "start patch size", integer=True, positive=True)))
        except (ValueError, ConfigError):
            raise ConfigError(f"bad start point {s!r}: use RANK:PATCH, e.g. 0.5:4") from None
    return out


def run(args) -> int:
    from dataclasses import replace

    from mcuformer.errors import ConfigError
    from mcuformer.search.runner import make_budget
    from mcuformer.search.space_evolution import Grid, SpaceEvolution, initial_points
    from mcuformer.search.space_runner import SupernetPointScorer, format_table, run_space_evolution
    from mcuformer.space import SearchSpace
    from mcuformer.train import TrainConfig

    from mcuformer.utils.checks import output_dir
    output_dir(args.output, force=True)  # its own resume logic decides about an existing run
    space = SearchSpace.load(args.space)
    budget = make_budget(args.board, args.sram_kb, args.flash_kb, args.allow_external_flash)
    grid = Grid(tuple(args.rank_grid or space.evolution.get("rank_ratio") or space.rank_ratio),
                tuple(args.patch_grid or space.evolution.get("patch_size") or space.patch_size))
    if args.start and args.starts is not None:  # else --starts would be ignored
        raise ConfigError("--start gives the start points and --starts draws them: give one of them")
    starts = _points(args.start) if args.start else initial_points(grid, args.starts or 3, args.seed)
    cfg = TrainConfig.load(args.config) if args.config else TrainConfig()
    cfg = replace(cfg, epochs=args.epochs, warmup_epochs=min(cfg.warmup_epochs, args.epochs / 2),
                  limit_train=args.limit_train or cfg.limit_train, steps_per_epoch=args.steps_per_epoch,
                  limit_eval=args.eval_limit,
                  seed=args.seed, workers=args.workers, device=args.device)
    scorer = SupernetPointScorer(space, budget, args.output, cfg, args.data_path, samples=args.samples,
                                 eval_limit=args.eval_limit, seed=args.seed, progress=not args.no_progress)
    result = run_space_evolution(space, grid, scorer, args.output, starts=starts, rounds=args.rounds,
                                 weight=args.weight, neighbours=args.neighbours, resume=args.resume)
    print(format_table(SpaceEvolution.from_dict(result), args.weight))
    c = result["chosen"]
    print(f"chosen: rank ratio {c['rank_ratio']:g}, patch {c['patch_size']} -> {c['space']}")
    return 0
