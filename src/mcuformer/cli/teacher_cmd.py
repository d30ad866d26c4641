"""mcuformer teacher: train the convolutional teacher that ``mcuformer finetune --teacher`` distils from."""

from __future__ import annotations

NAME = "teacher"
HELP = ("train a small CNN teacher on the data (resumable); fine-tunes distil from it with "
        "`mcuformer finetune --teacher DIR/teacher.pt`")


def add_arguments(p):
    from mcuformer.cli.common import (add_force_argument, add_progress_argument, device_name, nonnegative_int,
                                      number_type, positive_int)
    from mcuformer.train.teacher import DEFAULT_WIDTHS, MAX_WIDTH, TeacherConfig

    d = TeacherConfig()
    p.add_argument("--output", required=True,
                   help="run folder: teacher.pt (fp16 weights, measured test top-1), checkpoint.pt, log.jsonl")
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the CIFAR-10 archive)")
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=number_type(positive=True), default=d.lr, help=f"peak learning rate, default {d.lr}")
    p.add_argument("--weight-decay", type=number_type(minimum=0), default=d.weight_decay)
    p.add_argument("--label-smoothing", type=number_type(minimum=0, maximum=0.99), default=d.label_smoothing)
    p.add_argument("--widths", type=number_type(True, positive=True, maximum=MAX_WIDTH), nargs=3,
                   default=list(DEFAULT_WIDTHS), metavar="C",
                   help="channels of the three conv groups, default %(default)s")
    p.add_argument("--seed", type=nonnegative_int, default=d.seed)
    p.add_argument("--limit-train", type=nonnegative_int, default=0, help="train on a seeded subset (0: all)")
    p.add_argument("--exclude-split", default=None, metavar="JSON",
                   help="a sub-split whose held-out images the teacher must not see (the supernet's, so the "
                        "search's fitness stays unseen)")
    p.add_argument("--device", type=device_name, default="auto", help="auto (a GPU if there is one), cpu, cuda[:N]")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --output")
    add_force_argument(p, "an existing run folder's teacher.pt, checkpoint.pt and log.jsonl")
    add_progress_argument(p)


def run(args) -> int:
    import torch

    from mcuformer.errors import ConfigError
    from mcuformer.train.teacher import RUN_FILES, TeacherConfig, train_teacher
    from mcuformer.utils.checks import input_file, output_dir

    if args.resume and args.force:
        raise ConfigError("--resume continues the run in --output; --force starts it afresh: pass one")
    output_dir(args.output, force=args.force or args.resume, owned=RUN_FILES)
    if args.exclude_split is not None:
        input_file(args.exclude_split, "--exclude-split file")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no GPU")
    cfg = TeacherConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                        label_smoothing=args.label_smoothing, seed=args.seed, limit_train=args.limit_train,
                        exclude_split=args.exclude_split)
    result = train_teacher(args.output, data_path=args.data_path, cfg=cfg, widths=tuple(args.widths),
                           resume=args.resume, device=device, progress=not args.no_progress)
    print(f"done: {result['epochs']} epochs, {result['seconds']:.0f} s; test top-1 {result['test_top1']:.2f} % "
          f"on {result['test_images']} images; teacher {args.output}/teacher.pt "
          f"(mcuformer finetune ... --teacher {args.output}/teacher.pt)")
    return 0
