"""mcuformer train: supernet training on CPU, one GPU, or many through torchrun."""

from __future__ import annotations

NAME = "train"
HELP = "train a weight-sharing ViT supernet (CPU, GPU, or torchrun --nproc_per_node=K -m mcuformer train ...)"

# command-line flag -> TrainConfig field (None defaults: only flags the user gives override the config)
FLAGS = {
    "epochs": int, "batch_size": int, "lr": float, "min_lr": float, "warmup_epochs": float,
    "weight_decay": float, "drop_path": float, "grad_clip": float, "workers": int, "seed": int,
    "eval_every": int, "eval_batch_size": int, "steps_per_epoch": int, "limit_train": int, "limit_eval": int,
    "exclude_split": str, "device": str, "sandwich_random": int, "distill_alpha": float, "lr_base_batch": int,
    "aug_groups": int, "time_budget_s": float, "checkpoint_every_s": float,
    "sample_max_params": int,
}
AUG_FLAGS = {"mixup": float, "cutmix": float, "label_smoothing": float, "random_erasing": float}


def add_arguments(p):
    from mcuformer.cli.common import add_space_argument
    add_space_argument(p)
    p.add_argument("--data-path", default=None,
                   help="ImageFolder root (train/, val/ or test/) or a .tar.gz of one; default: the CIFAR-10 archive")
    p.add_argument("--output", required=True, help="run folder: checkpoint.pt, log.jsonl, curves.png")
    p.add_argument("--config", default=None, help="training settings YAML (see configs/train-*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --output exactly")
    p.add_argument("--init-from", default=None, metavar="CKPT",
                   help="start from an mcuformer supernet of the same space (e.g. models/*/supernet.pt: a warm restart "
                        "with a fresh optimizer and schedule), or from a dense pretrained ViT (timm DeiT / AutoFormer "
                        "state dict, factorised by truncated SVD); prints what it loaded")
    from mcuformer.cli.common import add_progress_argument, any_int, number_type
    strict = {int: any_int, float: number_type()}  # NaN and infinities refused at parse time
    for flag, typ in {**FLAGS, **AUG_FLAGS}.items():
        p.add_argument("--" + flag.replace("_", "-"), type=strict.get(typ, typ), default=None)
    p.add_argument("--sampling", choices=["uniform", "sandwich"], default=None)
    p.add_argument("--distill", choices=["none", "inplace"], default=None,
                   help="inplace: under the sandwich rule the largest subnet's soft predictions teach the others")
    p.add_argument("--data-on-device", choices=["auto", "on", "off"], default=None,
                   help="decode the training split once onto the device and augment whole batches there "
                        "(auto: on a GPU)")
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the supernet; it recompiles for each new subnet structure, so it pays off "
                        "only when few distinct subnets are trained (measured on CPU: 1 img/s with uniform sampling)")
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--no-randaugment", action="store_true", help="switch RandAugment off")
    add_progress_argument(p)
    from mcuformer.cli.official_flags import add_official_flags  # the official script's flags
    add_official_flags(p, "train")


def build_config(args, checkpoint_config: dict | None = None):
    """Defaults <- checkpoint's settings (on resume) <- --config file <- explicit flags."""
    from mcuformer.train import TrainConfig
    from mcuformer.utils.io import read_structured
    d = dict(checkpoint_config or {})
    if args.config:
        file_cfg = read_structured(args.config) or {}
        TrainConfig.from_dict(file_cfg, where=args.config)  # validate on its own first: errors name the file
        aug = {**d.get("augment", {}), **file_cfg.get("augment", {})}
        d.update(file_cfg)
        d["augment"] = aug
    for k in list(FLAGS) + ["sampling", "distill", "data_on_device", "amp", "compile", "channels_last"]:
        v = getattr(args, k)
        if v is not None:
            d[k] = v
    aug = dict(d.get("augment", {}))
    for k in AUG_FLAGS:
        if getattr(args, k) is not None:
            aug[k] = getattr(args, k)
    if args.no_randaugment:
        aug["randaugment"] = False
    d["augment"] = aug
    return TrainConfig.from_dict(d, where="training settings")


def run(args) -> int:
    from mcuformer.cli.official_flags import apply_official_flags
    apply_official_flags(args, "train")
    from pathlib import Path

    from mcuformer.errors import ConfigError
    from mcuformer.space import SearchSpace
    from mcuformer.train import load_checkpoint, train_supernet

    from mcuformer.utils.checks import output_dir
    output_dir(args.output, force=True)  # a file or an impossible name fails now, not after loading the data
    space = SearchSpace.load(args.space)
    from mcuformer.cli.official_flags import official_space
    space = official_space(space, args)  # --relative_position
    ckpt = Path(args.output) / "checkpoint.pt"
    saved = load_checkpoint(ckpt)["config"] if (args.resume and ckpt.exists()) else None
    cfg = build_config(args, saved)
    # flags that these settings make do nothing are refused, not ignored
    if args.distill_alpha is not None and cfg.distill != "inplace":
        raise ConfigError(f"--distill-alpha weighs in-place distillation's teacher (--distill inplace); "
                          f"these settings have distill {cfg.distill}")
    if args.sandwich_random is not None and cfg.sampling != "sandwich":
        raise ConfigError(f"--sandwich-random sets the random subnets of a sandwich step (--sampling sandwich); "
                          f"these settings have sampling {cfg.sampling}")
    summary = train_supernet(space, args.output, cfg, args.data_path, resume=args.resume,
                             init_from=args.init_from, progress=not args.no_progress)
    if summary["interrupted"]:
        print(f"interrupted: checkpoint saved to {summary['checkpoint']}; continue with --resume")
        return 130
    last = summary["history"][-1] if summary["history"] else None
    if last and "eval" in last:
        print(f"done: {summary['epochs_done']} epochs; top-1 largest {last['eval']['largest']['top1']:.2f}%, "
              f"smallest {last['eval']['smallest']['top1']:.2f}%; checkpoint {summary['checkpoint']}")
    else:
        print(f"done: {summary['epochs_done']} epochs; checkpoint {summary['checkpoint']}")
    return 0
