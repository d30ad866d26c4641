"""The Python API that the CLI wraps: one function per verb, plain arguments, plain results."""

from __future__ import annotations

import random

from mcuformer.errors import ConfigError
from mcuformer.space import Arch, SearchSpace


MAX_RANDOM_ARCHS = 10000


def resolve_archs(specs: list, space: SearchSpace, num_classes: int) -> list[tuple[str, Arch]]:
    """(name, Arch) for each spec: an Arch, an arch file, or 'largest', 'smallest', 'random:N[:seed]'."""
    out = []
    for spec in specs:
        if isinstance(spec, Arch):
            out.append((spec.short(), spec))
        elif spec in ("largest", "smallest"):
            out.append((spec, getattr(space, spec)(num_classes)))
        elif isinstance(spec, str) and spec.startswith("random:"):
            parts = spec.split(":")
            try:
                n, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
            except (ValueError, IndexError):
                raise ConfigError(f"bad arch spec {spec!r}: use random:N or random:N:SEED") from None
            if not 1 <= n <= MAX_RANDOM_ARCHS or seed < 0 or len(parts) > 3:
                raise ConfigError(f"bad arch spec {spec!r}: N in [1, {MAX_RANDOM_ARCHS}], SEED >= 0")
            rng = random.Random(seed)
            out += [(f"random{i}", space.sample(rng, num_classes)) for i in range(n)]
        else:
            out.append((str(spec), Arch.load(spec)))
    return out


def evaluate_checkpoint(checkpoint, archs: list[str] | list[Arch], *, data_path=None, split: str = "val",
                        subsplit=None, batch_size: int = 256, workers: int = 4, limit: int = 0,
                        amp: str = "auto", device: str = "auto", progress: bool = True) -> list[dict] | None:
    """Top-1/top-5 of each arch (files, Arch objects, or 'largest'/'smallest'/'random:N') of a supernet.

    Runs sharded under torchrun; returns the rows on rank 0 and None on the others.
    """
    from mcuformer.data import build_eval_transform, load_subsplit, open_split
    from mcuformer.data.datasets import spread
    from mcuformer.errors import SpaceError
    from mcuformer.supernet import SuperViT
    from mcuformer.train import evaluate_archs, load_checkpoint, space_of
    from mcuformer.train.checkpoint import augment_of, check_classes, data_path_of
    from mcuformer.train.distributed import cleanup, init_distributed
    from mcuformer.train.evaluate import make_eval_loader

    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    resolved = resolve_archs(archs, space, num_classes)
    for name, arch in resolved:
        space.check(arch)
        if arch.num_classes != num_classes:
            raise SpaceError(f"{name}: arch has {arch.num_classes} classes, the checkpoint {num_classes}")
    data_path = data_path_of(state, data_path)
    if split == "heldout":
        if not subsplit:
            raise ConfigError("--split heldout needs --subsplit SPLIT.json (see `mcuformer sub-split`)")
        ds = open_split(data_path, "train")
        ds = ds.subset(load_subsplit(subsplit, ds))
    else:
        ds = open_split(data_path, split)
    check_classes(state, ds, data_path)
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    ds.transform = build_eval_transform(augment_of(state), space.img_size, ds.source_size)

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


def finetune_subnet(checkpoint, arch, output, cfg=None, *, data_path=None, teacher: bool = True,
                    resume: bool = False, progress: bool = True) -> dict:
    """Train one subnet of a supernet checkpoint on its own (the official ``--mode retrain``), taught by the
    supernet's largest subnet when ``teacher``. The output folder's checkpoint.pt is a supernet checkpoint
    whose ``arch`` slices are fine-tuned (``finetuned_arch`` names it): quantize it with the same arch."""
    from mcuformer.train import TrainConfig, load_checkpoint, space_of, train_supernet
    from mcuformer.train.checkpoint import data_path_of

    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    [(_, arch)] = resolve_archs([arch], space, num_classes)
    space.check(arch)
    cfg = cfg or TrainConfig()
    return train_supernet(space, output, cfg, data_path_of(state, data_path), resume=resume, init_from=checkpoint,
                          progress=progress, fixed_arch=arch, teacher=checkpoint if teacher else None)


def quantize_checkpoint(checkpoint, arch, output, **kw):
    """int8 post-training quantisation of one subnet; see ``mcuformer.quantize.workflow``."""
    from mcuformer.quantize.workflow import quantize_checkpoint as run
    return run(checkpoint, arch, output, **kw)


def evaluate_quantized(quantized, **kw) -> dict:
    """int8 top-1 of a quantised model next to its float subnet's; see ``mcuformer.quantize.workflow``."""
    from mcuformer.quantize.workflow import evaluate_quantized as run
    return run(quantized, **kw)
