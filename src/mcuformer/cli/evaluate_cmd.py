"""mcuformer evaluate: top-1/top-5 of subnets of a trained supernet."""

from __future__ import annotations

NAME = "evaluate"
HELP = "top-1/top-5 of one or more subnets of a supernet checkpoint on the validation split"


def add_arguments(p):
    from mcuformer.cli.common import (add_force_argument, add_progress_argument, device_name, nonnegative_int,
                                      positive_int)
    p.add_argument("--checkpoint", default=None,
                   help="supernet checkpoint (checkpoint.pt or its run folder); needed unless --quantized names it")
    p.add_argument("--quantized", default=None, metavar="Q",
                   help="a `mcuformer quantize` folder: report its int8 top-1 next to the float subnet's")
    p.add_argument("--hflip", action="store_true",
                   help="with --quantized: also the int8 top-1 of horizontal-flip test-time augmentation (the logits "
                        "of each image and its mirror summed, as the engine's mcuformer_invoke_hflip; twice the time)")
    p.add_argument("--arch", nargs="+", default=None,
                   help="arch YAML/JSON files, or 'largest', 'smallest', 'random:N[:seed]' (default: largest smallest)")
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the CIFAR-10 archive)")
    p.add_argument("--split", default="val", choices=["val", "train", "heldout"],
                   help="'heldout' evaluates on the --subsplit images of train")
    p.add_argument("--subsplit", default=None, help="sub-split JSON (for --split heldout)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--workers", type=nonnegative_int, default=4)
    p.add_argument("--limit", type=nonnegative_int, default=0,
                   help="evaluate on N images spread evenly over the split (so every class is in)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto")
    p.add_argument("--device", type=device_name, default="auto")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    add_force_argument(p, "an existing --json file")
    add_progress_argument(p)


def run(args) -> int:
    from mcuformer.api import evaluate_checkpoint
    from mcuformer.errors import ConfigError
    from mcuformer.utils.checks import output_file
    from mcuformer.utils.io import write_json

    if args.json:
        output_file(args.json, "--json", force=args.force)
    if args.subsplit and args.split != "heldout":  # else it would be ignored and another split evaluated
        raise ConfigError(f"--subsplit is read only with --split heldout (got --split {args.split})")
    if args.hflip and not args.quantized:
        raise ConfigError("--hflip needs --quantized (it evaluates the int8 engine's flip entry point)")
    if args.quantized:
        return _run_quantized(args)
    if not args.checkpoint:
        raise ConfigError("evaluate needs --checkpoint (or --quantized)")
    rows = evaluate_checkpoint(args.checkpoint, args.arch or ["largest", "smallest"], data_path=args.data_path,
                               split=args.split,
                               subsplit=args.subsplit, batch_size=args.batch_size, workers=args.workers,
                               limit=args.limit, amp=args.amp, device=args.device,
                               progress=not args.no_progress)
    if rows is None:  # a non-zero torchrun rank
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'arch':<{w}}  {'params':>10}  {'top-1':>7}  {'top-5':>7}  images  subnet")
    for r in rows:
        print(f"{r['name']:<{w}}  {r['params']:>10,}  {r['top1']:>6.2f}%  {r['top5']:>6.2f}%  {r['count']:>6}  "
              f"{r['summary']}")
    if args.json:
        write_json(args.json, rows)
    return 0


def _run_quantized(args) -> int:
    from mcuformer.api import evaluate_quantized
    from mcuformer.errors import ConfigError
    from mcuformer.utils.io import write_json

    if args.split == "heldout":
        raise ConfigError("--quantized evaluates on --split val or train")
    if args.arch:  # else it would be ignored: the quantised folder fixes its arch
        raise ConfigError("--arch picks subnets of --checkpoint; a --quantized model has its own arch")

    r = evaluate_quantized(args.quantized, checkpoint=args.checkpoint, data_path=args.data_path, split=args.split,
                           limit=args.limit, batch_size=args.batch_size, device=args.device, hflip=args.hflip,
                           progress=not args.no_progress)
    print(f"{r['arch']}: float top-1 {r['float_top1']:.2f}%  int8 top-1 {r['int8_top1']:.2f}%  "
          f"drop {r['drop']:.2f} points  (prediction agreement {r['agreement']:.2f}%, {r['count']} images)")
    if args.hflip:
        print(f"  int8 top-1 with horizontal-flip test-time augmentation: {r['int8_top1_hflip']:.2f}% "
              f"({r['int8_top1_hflip'] - r['int8_top1']:+.2f} points, twice the instructions)")
    if r.get("float_before_fine_tuning"):
        print("  (the float top-1 is the supernet's subnet before the fine-tuning that made these int8 weights; "
              "pass --checkpoint <the fine-tuned checkpoint> to compare with its own float weights)")
    if args.json:
        write_json(args.json, r)
    return 0
