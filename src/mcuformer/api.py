"""The Python API that the CLI wraps: one function per verb, plain arguments, plain results."""

from __future__ import annotations

from mcuformer.space import Arch, SearchSpace


def evaluate_checkpoint(checkpoint, archs: list[str] | list[Arch], *, data_path=None, split: str = "val",
                        subsplit=None, batch_size: int = 256, workers: int = 4, limit: int = 0,
                        amp: str = "auto", device: str = "auto", progress: bool = True) -> list[dict] | None:
    """Top-1/top-5 of each arch (files, Arch objects, or 'largest'/'smallest'/'random:N') of a supernet.

    Runs sharded under torchrun; returns the rows on rank 0 and None on the others.
    """
    from mcuformer.cli.common import resolve_archs
    from mcuformer.data import build_eval_transform, load_subsplit, open_split, resolve_data_path
    from mcuformer.data.datasets import spread
    from mcuformer.data.transforms import AugmentConfig
    from mcuformer.errors import ConfigError, SpaceError
    from mcuformer.supernet import SuperViT
    from mcuformer.train import TrainConfig, evaluate_archs, load_checkpoint, space_of
    from mcuformer.train.distributed import cleanup, init_distributed
    from mcuformer.train.evaluate import make_eval_loader

    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    named = [(a.short(), a) if isinstance(a, Arch) else None for a in archs]
    specs = [a for a in archs if not isinstance(a, Arch)]
    resolved = [n for n in named if n] + resolve_archs(specs, space, num_classes)
    for name, arch in resolved:
        space.check(arch)
        if arch.num_classes != num_classes:
            raise SpaceError(f"{name}: arch has {arch.num_classes} classes, the checkpoint {num_classes}")
    data_path = resolve_data_path(data_path if data_path is not None else state.get("data_path"))
    if split == "heldout":
        if not subsplit:
            raise ConfigError("--split heldout needs --subsplit SPLIT.json (see `mcuformer sub-split`)")
        ds = open_split(data_path, "train")
        ds = ds.subset(load_subsplit(subsplit, ds))
    else:
        ds = open_split(data_path, split)
    if state.get("classes") and ds.classes != state["classes"]:
        raise ConfigError(f"the classes of {data_path} differ from those the checkpoint was trained on")
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    aug = TrainConfig.from_dict(state.get("config", {})).augment if state.get("config") else AugmentConfig()
    ds.transform = build_eval_transform(aug, space.img_size, ds.source_size)

    info = init_distributed(device)
    try:
        model = SuperViT(space, num_classes)
        model.load_state_dict(state["model"])
        model.to(info.device)
        loader = make_eval_loader(ds, info, batch_size, workers)
        accs = evaluate_archs(model, [a for _, a in resolved], loader, info, amp, progress=progress)
    finally:
        cleanup(info)
    if not info.is_main:
        return None
    return [{"name": name, "arch": arch.to_dict(), "params": arch.num_params(), "summary": arch.short(),
             **acc.to_dict()} for (name, arch), acc in zip(resolved, accs)]


def load_space(paths) -> SearchSpace:
    return SearchSpace.load(paths)
