"""The Python API that the CLI wraps: one function per verb, plain arguments, plain results."""

from __future__ import annotations

from mcuformer.space import Arch
from mcuformer.space.specs import resolve_archs  # noqa: F401 (part of the API)


def evaluate_checkpoint(checkpoint, archs: list[str] | list[Arch], **kw) -> list[dict] | None:
    """Top-1/top-5 of each arch of a supernet checkpoint; see ``mcuformer.train.evaluate``."""
    from mcuformer.train.evaluate import evaluate_checkpoint as run
    return run(checkpoint, archs, **kw)


def finetune_subnet(checkpoint, arch, output, cfg=None, *, data_path=None, teacher=True,
                    resume: bool = False, progress: bool = True) -> dict:
    """Train one subnet of a supernet checkpoint on its own (the official ``--mode retrain``). ``teacher``: True,
    the supernet's largest subnet teaches; False, the labels alone; a path, that checkpoint of the same space
    teaches, with the subnet it fine-tuned if it is a fine-tuning checkpoint (self-distillation), else its
    largest, or a CNN teacher (``mcuformer teacher``'s teacher.pt); a list of such paths, their averaged
    predictions (an ensemble). The output folder's checkpoint.pt is a
    supernet checkpoint whose ``arch`` slices are fine-tuned (``finetuned_arch`` names it): quantize it with the
    same arch. A conv-stem subnet that skips a max-pool its
    supernet always took (a finer token grid) starts from the supernet moved to that grid (``token-grids.pt`` in
    the output folder, position embeddings resized: ``with_token_grids``); its teacher stays on its own grid."""
    from pathlib import Path

    from mcuformer.train import TrainConfig, load_checkpoint, space_of, train_supernet
    from mcuformer.train.checkpoint import data_path_of
    from mcuformer.train.warm_start import finer_grid_space, with_token_grids

    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    [(_, arch)] = resolve_archs([arch], space, num_classes)
    init, finer = checkpoint, finer_grid_space(space, arch)
    if finer is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        space, init = finer, with_token_grids(checkpoint, finer, Path(output) / "token-grids.pt")
    space.check(arch)
    cfg = cfg or TrainConfig()
    return train_supernet(space, output, cfg, data_path_of(state, data_path), resume=resume, init_from=init,
                          progress=progress, fixed_arch=arch,
                          teacher=checkpoint if teacher is True else (teacher or None))


def quantize_checkpoint(checkpoint, arch, output, **kw):
    """int8 post-training quantisation of one subnet; see ``mcuformer.quantize.workflow``."""
    from mcuformer.quantize.workflow import quantize_checkpoint as run
    return run(checkpoint, arch, output, **kw)


def evaluate_quantized(quantized, **kw) -> dict:
    """int8 top-1 of a quantised model next to its float subnet's; see ``mcuformer.quantize.workflow``."""
    from mcuformer.quantize.workflow import evaluate_quantized as run
    return run(quantized, **kw)
