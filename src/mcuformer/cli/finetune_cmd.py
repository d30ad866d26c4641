"""mcuformer finetune: train one searched subnet standalone (the official code's ``--mode retrain``),
optionally distilled from the supernet's largest subnet or from a fine-tuned subnet (``--teacher``); quantize its
checkpoint as usual."""

from __future__ import annotations

NAME = "finetune"
HELP = ("fine-tune one subnet of a supernet checkpoint (official --mode retrain), optionally taught by the "
        "supernet's largest subnet, a fine-tuned one or a CNN teacher; CPU or GPU, resumable")


def add_arguments(p):
    from mcuformer.cli.train_cmd import AUG_FLAGS, FLAGS
    p.add_argument("--checkpoint", required=True, help="the supernet checkpoint (full or weights-only)")
    p.add_argument("--arch", required=True,
                   help="the subnet: an arch YAML/JSON (e.g. the search's best or a zoo model's manifest.json), "
                        "'largest' or 'smallest'")
    p.add_argument("--output", required=True, help="run folder: checkpoint.pt (quantize it with the same --arch)")
    p.add_argument("--data-path", default=None, help="default: the data the checkpoint was trained on")
    p.add_argument("--config", default=None,
                   help="training settings YAML; default: the supernet's own settings with "
                        "train.config.FINETUNE_DEFAULTS")
    p.add_argument("--teacher", nargs="+", default=["largest"], metavar="{largest,none,CHECKPOINT}",
                   help="largest (default): the supernet's largest subnet teaches (soft targets mixed by "
                        "--distill-alpha); none: the labels alone; a fine-tuning checkpoint of the same space: "
                        "the subnet it fine-tuned teaches (self-distillation); a `mcuformer teacher` teacher.pt: "
                        "that CNN teaches; several checkpoints: their averaged predictions teach (an ensemble)")
    p.add_argument("--resume", action="store_true", help="continue the fine-tuning checkpoint in --output")
    from mcuformer.cli.common import add_progress_argument, any_int, number_type
    strict = {int: any_int, float: number_type()}  # NaN and infinities refused at parse time
    for flag, typ in {**FLAGS, **AUG_FLAGS}.items():
        p.add_argument("--" + flag.replace("_", "-"), type=strict.get(typ, typ), default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None)
    p.add_argument("--data-on-device", choices=["auto", "on", "off"], default=None)
    p.add_argument("--no-randaugment", action="store_true", help="switch RandAugment off")
    add_progress_argument(p)


def _teacher(values: list[str]):
    """--teacher's values as finetune_subnet takes them: True (largest), False (none), a checkpoint path, or a
    list of paths (an ensemble)."""
    from pathlib import Path

    from mcuformer.errors import CheckpointError, ConfigError
    from mcuformer.train.teacher import teacher_paths

    if len(values) == 1 and values[0] in ("largest", "none"):
        return values[0] == "largest"
    for value in values:
        if value in ("largest", "none"):
            raise ConfigError(f"--teacher {' '.join(values)}: '{value}' cannot be part of an ensemble; name "
                              "checkpoint files")
        if not Path(value).is_file():
            raise CheckpointError(f"--teacher {value}: not 'largest', 'none' or a checkpoint file")
    paths = teacher_paths(values)
    return paths[0] if len(paths) == 1 else paths


def run(args) -> int:
    from pathlib import Path

    from mcuformer.api import finetune_subnet
    from mcuformer.errors import ConfigError
    from mcuformer.cli.train_cmd import build_config
    from mcuformer.train import load_checkpoint
    from mcuformer.train.config import finetune_settings
    from mcuformer.utils.checks import output_dir

    teacher = _teacher(args.teacher)
    # flags that a one-subnet fine-tune makes do nothing are refused, not ignored
    if args.distill_alpha is not None and teacher is False:
        raise ConfigError("--distill-alpha weighs the teacher's predictions; --teacher none has no teacher")
    for flag in ("sandwich_random", "sample_max_params"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} picks the subnets of supernet training; a fine-tune "
                              "trains one subnet")
    output_dir(args.output, force=True)  # a file or an impossible name fails now; --resume decides the rest
    ckpt = Path(args.output) / "checkpoint.pt"
    if args.resume and ckpt.exists():
        saved = load_checkpoint(ckpt)["config"]
    else:
        saved = finetune_settings(load_checkpoint(args.checkpoint).get("config"))
    for k in ("sampling", "distill", "compile", "channels_last"):
        setattr(args, k, None)
    cfg = build_config(args, saved)
    summary = finetune_subnet(args.checkpoint, args.arch, args.output, cfg, data_path=args.data_path,
                              teacher=teacher, resume=args.resume, progress=not args.no_progress)
    if summary["interrupted"]:
        print(f"interrupted: checkpoint saved to {summary['checkpoint']}; continue with --resume")
        return 130
    hist = summary["history"]
    before = next((h["eval"]["subnet"]["top1"] for h in hist if h["epoch"] == 0 and "eval" in h), None)
    after = next((h["eval"]["subnet"]["top1"] for h in reversed(hist) if h["epoch"] > 0 and "eval" in h), None)
    fig = (f"; top-1 {before:.2f}% before, {after:.2f}% after" if before is not None and after is not None else "")
    print(f"done: {summary['epochs_done']} epochs{fig}; checkpoint {summary['checkpoint']} "
          f"(mcuformer quantize --checkpoint {summary['checkpoint']} --arch {args.arch} ...)")
    return 0
