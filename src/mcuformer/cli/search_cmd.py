"""mcuformer search: memory-constrained evolutionary search of a trained supernet."""

from __future__ import annotations

NAME = "search"
HELP = ("evolutionary search for the most accurate subnet that fits a board's SRAM and flash "
        "(with random-search and hand-scaled baselines)")


def add_arguments(p):
    from mcuformer.cli.common import (add_progress_argument, device_name, nonnegative_int, positive_float,
                                      positive_int, probability)
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint (checkpoint.pt or its run folder)")
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the checkpoint's data)")
    p.add_argument("--board", default="stm32f746", help="stm32f746 (default), stm32f427, stm32h743, "
                   "stm32f411re or stm32l432kc")
    p.add_argument("--sram-kb", type=positive_float, default=None, help="override the board's SRAM (KB)")
    p.add_argument("--flash-kb", type=positive_float, default=None, help="override the board's internal flash (KB)")
    p.add_argument("--allow-external-flash", action="store_true",
                   help="weights may live in the board's external (QSPI) flash")
    p.add_argument("--max-latency-ms", type=positive_float, default=None,
                   help="keep subnets whose predicted latency at the board's clock is at most this (the latency "
                        "model of the exporter's fastest schedule; QEMU instruction counts, 1 instruction per cycle)")
    p.add_argument("--output", required=True, help="output folder (state.json, history.jsonl, best_arch.yaml, PNGs)")
    p.add_argument("--resume", action="store_true", help="continue the search whose state.json is in --output")
    p.add_argument("--subsplit", default=None,
                   help="held-out sub-split JSON (default: the split the supernet was trained without, as its "
                        "checkpoint records it; else a seeded one, --per-class)")
    p.add_argument("--per-class", type=positive_int, default=None,
                   help="score on a seeded split of N images per class, instead of the split the checkpoint records "
                        "(the default when it records none: 100)")
    p.add_argument("--heldout-limit", type=nonnegative_int, default=0, help="score on N held-out images only (0: all)")
    p.add_argument("--test-limit", type=nonnegative_int, default=0, help="re-score on N test images only (0: all)")
    p.add_argument("--population", type=positive_int, default=50)
    p.add_argument("--generations", type=positive_int, default=20)
    p.add_argument("--parents", type=positive_int, default=10, help="top-k that breed the next generation")
    p.add_argument("--mutations", type=nonnegative_int, default=25)
    p.add_argument("--crossovers", type=nonnegative_int, default=25)
    p.add_argument("--m-prob", type=probability, default=0.2, help="per-layer mutation probability (heads, MLP ratio)")
    p.add_argument("--s-prob", type=probability, default=0.4, help="depth/width/rank/patch mutation probability")
    p.add_argument("--max-tries", type=positive_int, default=200, help="draws per child before giving up on it")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--top-k", type=positive_int, default=5, help="finalists re-scored on the test split")
    p.add_argument("--no-baselines", action="store_true", help="skip random search and hand-scaled")
    p.add_argument("--fitness", choices=["top1", "loglik"], default="loglik",
                   help="what the search maximises on the held-out images: the mean log-likelihood of the "
                        "true class (default: it predicts test top-1 better on a few hundred images) or top-1")
    p.add_argument("--batch-size", type=positive_int, default=500)
    p.add_argument("--workers", type=nonnegative_int, default=2)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto")
    p.add_argument("--device", type=device_name, default="auto")
    add_progress_argument(p)
    from mcuformer.cli.official_flags import add_official_flags  # the official script's flags
    add_official_flags(p, "search")


def run(args) -> int:
    from mcuformer.cli.official_flags import apply_official_flags
    apply_official_flags(args, "search")
    from mcuformer.errors import ConfigError
    from mcuformer.search.evolution import EvolutionConfig
    from mcuformer.search.runner import format_rows, make_budget, run_search

    from mcuformer.utils.checks import output_dir
    output_dir(args.output, force=True)  # its own resume logic decides about an existing search
    budget = make_budget(args.board, args.sram_kb, args.flash_kb, args.allow_external_flash, args.max_latency_ms)
    cfg = EvolutionConfig(population=args.population, generations=args.generations, parents=args.parents,
                          mutations=args.mutations, crossovers=args.crossovers, m_prob=args.m_prob,
                          s_prob=args.s_prob, seed=args.seed, max_tries=args.max_tries)
    if args.per_class is not None and args.subsplit:
        raise ConfigError("--per-class makes a seeded held-out split and --subsplit names one: give one of them")
    result = run_search(args.checkpoint, args.output, budget, cfg, data_path=args.data_path, subsplit=args.subsplit,
                        per_class=args.per_class or 100, recorded_split=args.per_class is None,
                        heldout_limit=args.heldout_limit, test_limit=args.test_limit,
                        test_top_k=args.top_k, baselines=not args.no_baselines, batch_size=args.batch_size,
                        workers=args.workers, amp=args.amp, device=args.device, resume=args.resume,
                        fitness=args.fitness, progress=not args.no_progress)
    if result is None:  # a non-zero torchrun rank
        return 0
    print(result["budget_label"])
    print(f"{result['evaluations']} subnets evaluated, {result['rejected_by_memory']} candidates rejected by "
          f"the memory model before evaluation; held-out: {result['heldout']}; fitness: {result['fitness']}")
    print(format_rows(result))
    print(f"best arch: {args.output}/best_arch.yaml")
    return 0
