"""mcuformer quantize: int8 post-training quantisation of one subnet (see docs/quantization.md)."""

from __future__ import annotations

NAME = "quantize"
HELP = "int8 post-training quantisation of a subnet: calibrate, quantise, save a folder the engine reads"


def add_arguments(p):
    from mcuformer.cli.common import add_force_argument, any_int, nonnegative_int, number_type
    from mcuformer.quantize.settings import (CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES, DEFAULT_METHOD,
                                             DEFAULT_PERCENTILE)
    p.add_argument("--checkpoint", required=True, help="supernet checkpoint (checkpoint.pt or its run folder)")
    p.add_argument("--arch", required=True, help="arch YAML/JSON file, or 'largest' / 'smallest'")
    p.add_argument("--output", required=True, help="folder to write (params.npz + manifest.json)")
    p.add_argument("--data-path", default=None, help="ImageFolder root or archive (default: the CIFAR-10 archive)")
    p.add_argument("--calibration-images", type=any_int, default=DEFAULT_CALIBRATION_IMAGES,
                   help="training images for the ranges")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="picks the calibration images")
    p.add_argument("--method", choices=CALIBRATION_METHODS, default=DEFAULT_METHOD,
                   help="each tensor's range: running min/max, or each batch's percentiles averaged "
                        f"(default {DEFAULT_METHOD})")
    p.add_argument("--percentile", type=number_type(positive=True, maximum=100), default=None,
                   help=f"for --method percentile (default {DEFAULT_PERCENTILE:g})")
    add_force_argument(p, "params.npz and manifest.json in an existing --output folder")


def run(args) -> int:
    from mcuformer.api import quantize_checkpoint
    from mcuformer.errors import ConfigError
    from mcuformer.quantize.model import SAVED_FILES
    from mcuformer.quantize.settings import DEFAULT_PERCENTILE, PERCENTILE_FLOOR
    from mcuformer.utils.checks import output_dir

    if args.percentile is not None and args.method != "percentile":  # else ignored: min-max has no percentile
        raise ConfigError(f"--percentile sets --method percentile's clipping; --method is {args.method}")
    if args.percentile is not None and args.percentile <= PERCENTILE_FLOOR:  # the range would be inverted
        raise ConfigError(f"--percentile {args.percentile:g} must be above {PERCENTILE_FLOOR:g}")
    output_dir(args.output, force=args.force, owned=SAVED_FILES)
    q = quantize_checkpoint(args.checkpoint, args.arch, args.output, data_path=args.data_path,
                            num_images=args.calibration_images, seed=args.seed, method=args.method,
                            percentile=DEFAULT_PERCENTILE if args.percentile is None else args.percentile)
    print(f"quantised {q.arch.short()} ({sum(a.nbytes for a in q.params.values()):,} parameter bytes) -> {args.output}")
    return 0
