"""``mcuformer verify``: build an exported engine, run it, compare its logits with the reference."""

from __future__ import annotations

NAME = "verify"
HELP = ("Build and run an exported engine on test images and compare its int8 logits with the NumPy integer "
        "reference bit for bit: on the host (also under ASan/UBSan) or on a Cortex-M7/M4 in QEMU (RAM, flash, "
        "stack and instructions measured).")


def add_arguments(p) -> None:
    from mcuformer.cli.common import add_force_argument, nonnegative_int, positive_int
    p.add_argument("folder", metavar="DIR", help="a folder written by mcuformer export")
    p.add_argument("--target", default="host", choices=["host", "cortex-m7", "cortex-m4", "cortex-m"],
                   help="host (default), cortex-m7 (QEMU mps2-an500), cortex-m4 (QEMU mps2-an386) or cortex-m "
                        "(the export's board's core)")
    p.add_argument("--images", type=positive_int, default=5, help="test images (default 5)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="for random images (models without data)")
    p.add_argument("--data-path", default=None, help="data of the model's checkpoint, if not where it was")
    p.add_argument("--no-sanitize", action="store_true", help="host: skip the ASan/UBSan build")
    p.add_argument("--portable", action="store_true", help="cortex-m*: the plain C kernels, not the DSP path")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    add_force_argument(p, "an existing --json file")


def run(args) -> int:
    from mcuformer.errors import ConfigError
    from mcuformer.utils.checks import output_file
    from mcuformer.utils.io import write_json
    from mcuformer.verify import verify

    if args.json:
        output_file(args.json, "--json", force=args.force)
    if args.portable and args.target == "host":  # else ignored: the host build has no DSP path to replace
        raise ConfigError("--portable selects the Cortex-M build's plain C kernels; give --target cortex-m")
    if args.no_sanitize and args.target != "host":
        raise ConfigError("--no-sanitize skips the host's ASan/UBSan build; the Cortex-M run has none")
    result = verify(args.folder, args.target, args.images, args.seed, args.data_path,
                    sanitize=not args.no_sanitize, portable=args.portable)
    print(result.format())
    if args.json:
        write_json(args.json, result.to_dict())
    if not result.bit_exact or result.guard_damage or result.stack_overflowed:
        print("verify: FAILED")
        return 1
    return 0
