"""mcuformer sub-split: the search's held-out split (N images per class from train, seeded)."""

from __future__ import annotations

NAME = "sub-split"
HELP = "hold out N training images per class for the search's fitness (like the official subImageNet)"


def add_arguments(p):
    from mcuformer.cli.common import add_force_argument, nonnegative_int, positive_int
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the CIFAR-10 archive)")
    p.add_argument("--per-class", type=positive_int, required=True, help="images held out per class")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--output", required=True, help="the split file (JSON)")
    add_force_argument(p, "an existing split file")
    from mcuformer.cli.official_flags import add_official_flags  # the official script's flags
    add_official_flags(p, "sub-split")


def run(args) -> int:
    from mcuformer.cli.official_flags import apply_official_flags
    apply_official_flags(args, "sub-split")
    from mcuformer.data import make_subsplit
    from mcuformer.utils.checks import output_file

    output_file(args.output, force=args.force)
    split = make_subsplit(args.data_path, args.per_class, args.seed, args.output)
    print(f"wrote {args.output}: {len(split['heldout'])} held-out images ({args.per_class} per class x "
          f"{len(split['classes'])} classes) of {split['num_train']} in {split['source']}")
    print("train without them with `mcuformer train --exclude-split ...`; "
          "score subnets on them with `mcuformer evaluate --split heldout --subsplit ...`")
    return 0
