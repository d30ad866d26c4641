"""Quantise a subnet of a supernet checkpoint, and measure int8 against float top-1 (what the
``quantize`` and ``evaluate --quantized`` verbs wrap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mcuformer.errors import ConfigError, DataError, SpaceError
from mcuformer.quantize.model import QuantModel, build_quant_model
from mcuformer.quantize.settings import DEFAULT_CALIBRATION_IMAGES, DEFAULT_METHOD, DEFAULT_PERCENTILE

INT8_CHUNK = 64  # images per int8 forward on a CPU (int8_eval_speed.py --batch: 32-128 alike, 256 slower)


def load_subnet(checkpoint, arch_spec):
    """(float ViT in eval mode, state dict) of one arch (file, Arch, 'largest'/'smallest') of a checkpoint."""
    from mcuformer.space.specs import resolve_archs
    from mcuformer.supernet import SuperViT
    from mcuformer.train import load_checkpoint, space_of
    from mcuformer.train.checkpoint import load_weights
    from mcuformer.train.warm_start import finer_grid_space, moved_to_token_grids

    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    [(name, arch)] = resolve_archs([arch_spec], space, num_classes)
    finer = finer_grid_space(space, arch)
    if finer is not None:  # a subnet that skips a pool of the supernet's stem: the supernet on that token grid
        state, space = moved_to_token_grids(state, finer, checkpoint), finer
    try:
        space.check(arch)
    except SpaceError as exc:
        raise SpaceError(f"arch {name} does not match the checkpoint's space: {exc}") from None
    if arch.num_classes != num_classes:
        raise SpaceError(f"arch {name} has {arch.num_classes} classes, the checkpoint {num_classes}")
    supernet = SuperViT(space, num_classes)
    load_weights(supernet, state, f"checkpoint {checkpoint}")
    return supernet.get_active_subnet(arch).eval(), state


def _dataset(state: dict, arch, data_path, split: str):
    from mcuformer.data import build_eval_transform, open_split
    from mcuformer.train.checkpoint import augment_of, check_classes, data_path_of

    data_path = data_path_of(state, data_path)
    ds = open_split(data_path, split)
    check_classes(state, ds, data_path)
    ds.transform = build_eval_transform(augment_of(state), arch.img_size, ds.source_size)
    return ds


def _batches(ds, batch_size: int, workers: int = 0):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)


def quantize_checkpoint(checkpoint, arch, output, *, data_path=None, num_images: int = DEFAULT_CALIBRATION_IMAGES,
                        seed: int = 0, method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE,
                        batch_size: int = 64) -> QuantModel:
    """Calibrate on ``num_images`` seeded training images, quantise, save to the ``output`` folder."""
    from mcuformer.quantize.calibrate import calibrate

    model, state = load_subnet(checkpoint, arch)
    ds = _dataset(state, model.arch, data_path, "train")
    if not 1 <= num_images <= len(ds):
        raise ConfigError(f"--calibration-images {num_images}: the training split has {len(ds)} images")
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), num_images, replace=False))
    batches = [x for x, _ in _batches(ds.subset(idx), batch_size)]
    expected = (model.arch.in_chans, model.arch.img_size, model.arch.img_size)
    if tuple(batches[0].shape[1:]) != expected:
        raise DataError(f"calibration images are {tuple(batches[0].shape[1:])}, the arch needs {expected}")
    ranges = calibrate(model, batches, method, percentile)
    q = build_quant_model(model, ranges, {"checkpoint": str(Path(checkpoint).resolve()), "calibration": {
        "images": num_images, "seed": seed, "method": method, "percentile": percentile}})
    q.save(output)
    return q


def recorded_checkpoint(q: QuantModel, folder) -> Path | None:
    """The supernet a quantised model came from, as its manifest names it (a relative name, as models/
    holds it, is relative to the model's folder)."""
    name = q.info.get("checkpoint")
    if not name or isinstance(folder, QuantModel):
        return Path(name) if name else None
    p = Path(name)
    return p if p.is_absolute() else Path(folder) / p


def evaluate_quantized(quantized, *, checkpoint=None, data_path=None, split: str = "val", limit: int = 0,
                       batch_size: int = 256, device: str = "auto", progress: bool = True,
                       hflip: bool = False) -> dict:
    """int8 top-1 next to the float subnet's top-1 on the same images, by the PyTorch integer path (the
    same integers as the NumPy reference, bit for bit: tests/test_quant_model.py; about twice as fast on a
    CPU, and it runs on a GPU). ``hflip``: also ``int8_top1_hflip``, the top-1 of the summed int8 logits of
    each image and its mirror (``Reference.run_hflip``, the engine's ``mcuformer_invoke_hflip``)."""
    from mcuformer.data.datasets import spread
    from mcuformer.quantize.reference import mirror
    from mcuformer.quantize.torchpath import TorchInt8

    from mcuformer.quantize.validate import validate_quant_model
    q = validate_quant_model(QuantModel.load(quantized), str(quantized))
    recorded = not checkpoint
    checkpoint = checkpoint or recorded_checkpoint(q, quantized)
    if not checkpoint:
        raise ConfigError("the quantised model names no checkpoint; pass --checkpoint for the float top-1")
    model, state = load_subnet(checkpoint, q.arch)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    runner = TorchInt8(q, device)
    ds = _dataset(state, q.arch, data_path, split)
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    hits_f = hits_q = hits_flip = agree = count = 0

    def int8_logits(image_q):
        # the int8 path passes over int64 tensors: in chunks that stay in cache it is faster on a CPU
        chunk = INT8_CHUNK if runner.device.type == "cpu" else len(image_q)
        return torch.cat([runner.forward(image_q[i:i + chunk]) for i in range(0, len(image_q), chunk)]).cpu().numpy()

    with torch.no_grad():
        for images, labels in tqdm(_batches(ds, batch_size), disable=not progress, desc="int8 eval"):
            pred_f = model(images.to(device)).argmax(1).cpu().numpy()
            image_q = q.quantize_image(images)
            logits_q = int8_logits(image_q)
            pred_q = logits_q.argmax(1)
            y = labels.numpy()
            if hflip:
                sums = logits_q.astype(np.int64) + int8_logits(mirror(image_q))
                hits_flip += int((sums.argmax(1) == y).sum())
            hits_f, hits_q = hits_f + int((pred_f == y).sum()), hits_q + int((pred_q == y).sum())
            agree, count = agree + int((pred_f == pred_q).sum()), count + len(y)
    top1_f, top1_q = 100.0 * hits_f / count, 100.0 * hits_q / count
    r = {"arch": q.arch.short(), "count": count, "device": device, "float_top1": top1_f, "int8_top1": top1_q,
         "drop": top1_f - top1_q, "agreement": 100.0 * agree / count}
    if hflip:
        r["int8_top1_hflip"] = 100.0 * hits_flip / count
    if q.info.get("fine_tuned") and recorded:
        # the int8 weights were fine-tuned after they left this checkpoint: its float subnet is the one before
        r["float_before_fine_tuning"] = True
    return r
