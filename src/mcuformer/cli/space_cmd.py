"""mcuformer space: describe a search space and write member archs as YAML."""

from __future__ import annotations

NAME = "space"
HELP = "describe a search space (choices, size, parameter range) and write archs from it"


def add_arguments(p):
    from mcuformer.cli.common import add_force_argument, add_space_argument, positive_int
    add_space_argument(p)
    p.add_argument("--arch", nargs="*", default=[],
                   help="archs to write: 'largest', 'smallest', 'random:N[:seed]'")
    p.add_argument("--num-classes", type=positive_int, default=None, help="for spaces that leave it to the data")
    p.add_argument("--output", default=None, help="folder for the arch YAML files")
    p.add_argument("--check", nargs="*", default=[], metavar="ARCH", help="arch files to check against the space")
    add_force_argument(p, "arch files already in --output")


def run(args) -> int:
    from pathlib import Path

    from mcuformer.space.specs import resolve_archs
    from mcuformer.errors import ConfigError
    from mcuformer.space import Arch, SearchSpace

    if args.output and not args.arch:  # else ignored: nothing would be written there
        raise ConfigError("--output is the folder --arch writes arch files into; give --arch too")
    space = SearchSpace.load(args.space)
    n = args.num_classes or space.num_classes or 1000
    small, large = space.smallest(n), space.largest(n)
    print(f"space {space.name}: {space.img_size}x{space.img_size}, {n} classes, head_dim {space.head_dim}, "
          f"pool {space.pool}, cls token {'yes' if space.cls_token else 'no'}")
    for k in ("embed_dim", "depth", "num_heads", "mlp_ratio", "rank_ratio", "patch_size"):
        print(f"  {k:<11} {getattr(space, k)}")
    if space.conv_stem:
        print(f"  stem        {space.stem}; conv stems: layers {space.stem_layers}, first-conv width "
              f"{space.stem_width}, max-pool after a conv {space.stem_pool}")
    print(f"  supernet    E{space.super_embed_dim} D{space.super_depth} H{space.super_num_heads} "
          f"M{space.super_mlp_ratio:g} ({'low-rank' if space.low_rank else 'dense'} linears)")
    if space.evolution:
        print(f"  evolution grid: {space.evolution}")
    print(f"  {_count(space.size())} subnets; parameters {small.num_params():,} (smallest) to {large.num_params():,} "
          "(largest)")
    for path in args.check:
        space.check(Arch.load(path))
        print(f"{path}: inside the space")
    if args.arch:
        if not args.output:
            raise ConfigError("--arch needs --output FOLDER to write the arch files into")
        from mcuformer.utils.checks import output_dir, output_file
        output_dir(args.output, force=True)
        archs = resolve_archs(args.arch, space, n)
        for name, _ in archs:  # all checked before the first is written
            output_file(Path(args.output) / f"{name}.yaml", force=args.force)
        from mcuformer.utils.io import atomic_write_all, text_file, yaml_text
        paths = [Path(args.output) / f"{name}.yaml" for name, _ in archs]
        # all written before the first replaces an old file: a full disk never mixes new archs with old ones
        atomic_write_all([text_file(path, yaml_text(arch.to_dict())) for path, (_, arch) in zip(paths, archs)])
        for path, (_, arch) in zip(paths, archs):
            print(f"wrote {path}: {arch.short()}, {arch.num_params():,} parameters")
    return 0


def _count(n: int) -> str:
    """``n`` to 3 significant digits; a count past a float's range goes through Decimal (exact for any int)."""
    from decimal import Decimal
    return f"{n:.3g}" if n < 1e300 else f"{Decimal(n):.3g}"
