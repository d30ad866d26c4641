"""Supernet training: single-path uniform subnet sampling (or the sandwich rule), AdamW, warm-up +
cosine, AMP, DDP under torchrun, atomic checkpoints every epoch and on SIGINT/SIGTERM, exact resume."""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from mcuformer.data import (build_eval_transform, build_train_transform, complement, load_subsplit, mix_batch,
                            open_split, resolve_data_path)
from mcuformer.data.datasets import sample_seed, spread
from mcuformer.errors import CheckpointError, ConfigError, McuformerError
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.train.checkpoint import check_same_space, load_checkpoint, save_checkpoint
from mcuformer.train.config import TrainConfig
from mcuformer.train.distributed import DistInfo, any_rank, barrier, cleanup, init_distributed
from mcuformer.train.evaluate import autocast_for, evaluate_archs, make_eval_loader
from mcuformer.train.sampler import EpochSampler
from mcuformer.train.schedule import lr_at
from mcuformer.utils.io import append_jsonl, write_json


def step_archs(space: SearchSpace, num_classes: int, sampling: str, seed: int, global_step: int) -> list[Arch]:
    """The subnet(s) trained at a step: a pure function of (seed, step), identical on every rank."""
    rng = random.Random(f"{seed}:arch:{global_step}")
    if sampling == "sandwich":
        return [space.largest(num_classes), space.smallest(num_classes), space.sample(rng, num_classes)]
    return [space.sample(rng, num_classes)]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def build_optimizer(model: SuperViT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    skip = model.no_weight_decay()
    decay = [p for n, p in model.named_parameters() if n not in skip]
    no_decay = [p for n, p in model.named_parameters() if n in skip]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kw = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, **kw)


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop finishes its step, saves, and returns."""

    def __init__(self):
        self.set, self._old = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train_supernet(space: SearchSpace, output, cfg: TrainConfig, data_path=None, *, resume: bool = False,
                   init_from=None, progress: bool = True) -> dict:
    """Train a supernet; returns a summary dict. ``output`` receives checkpoint.pt, log.jsonl,
    curves.png and summary.json. With ``resume`` an existing checkpoint in ``output`` continues."""
    info = init_distributed(cfg.device)
    try:
        return _train(space, Path(output), cfg, data_path, resume, init_from, progress, info)
    finally:
        cleanup(info)


def _train(space, output, cfg, data_path, resume, init_from, progress, info: DistInfo) -> dict:
    if info.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ckpt_path = output / "checkpoint.pt"
    state = None
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{output} already holds a checkpoint; pass --resume to continue it, or choose "
                              "another --output")
        state = load_checkpoint(ckpt_path)
        check_same_space(state, space, ckpt_path)

    # ---- data ----
    data_path = resolve_data_path(data_path)
    train_set = open_split(data_path, "train")
    val_set = open_split(data_path, "val", classes=train_set.classes)
    num_classes = len(train_set.classes)
    if space.num_classes is not None and space.num_classes != num_classes:
        raise ConfigError(f"space {space.name} has {space.num_classes} classes but {data_path} has {num_classes}")
    keep = list(range(len(train_set)))
    if cfg.exclude_split:
        keep = complement(load_subsplit(cfg.exclude_split, train_set), len(train_set))
    if cfg.limit_train and cfg.limit_train < len(keep):
        keep = sorted(random.Random(cfg.seed).sample(keep, cfg.limit_train))
    if len(keep) < len(train_set):
        train_set = train_set.subset(keep)
    if cfg.limit_eval and cfg.limit_eval < len(val_set):
        val_set = val_set.subset(spread(len(val_set), cfg.limit_eval))
    train_set.transform = build_train_transform(cfg.augment, space.img_size, train_set.source_size)
    train_set.seed = cfg.seed
    val_set.transform = build_eval_transform(cfg.augment, space.img_size, val_set.source_size)

    per_step = cfg.batch_size * info.world_size
    steps_per_epoch = len(train_set) // per_step
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} x {info.world_size} processes exceeds the "
                          f"{len(train_set)} training images")
    if cfg.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.steps_per_epoch)
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)

    # ---- model, optimizer ----
    torch.manual_seed(cfg.seed)
    model = SuperViT(space, num_classes, drop_path_rate=cfg.drop_path)
    if init_from is not None and state is None:
        from mcuformer.supernet.pretrained import load_dense_pretrained
        load_dense_pretrained(model, init_from)
    model.to(info.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, info.device)
    use_scaler = cfg.amp == "fp16" and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    epoch, step0, history = 0, 0, []
    epoch_stats = {"loss_sum": 0.0, "steps": 0, "seconds": 0.0, "images": 0}
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match this supernet: "
                                  f"{str(e).splitlines()[0][:200]}") from None
        if use_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        epoch, step0 = int(state["epoch"]), int(state["step"])
        history = list(state.get("history", []))
        epoch_stats = dict(state.get("epoch_stats", epoch_stats))
    net = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                                      find_unused_parameters=True)
    fwd = torch.compile(net, dynamic=True) if cfg.compile else net

    sampler = EpochSampler(len(train_set), shuffle=True, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    val_loader = make_eval_loader(val_set, info, cfg.eval_batch_size, cfg.workers)
    eval_archs = [space.largest(num_classes), space.smallest(num_classes)]

    def snapshot(next_epoch: int, next_step: int) -> dict:
        return {"space": space.to_dict(), "num_classes": num_classes, "classes": train_set.classes,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if use_scaler else {}, "epoch": next_epoch, "step": next_step,
                "global_step": next_epoch * steps_per_epoch + next_step, "config": cfg.to_dict(),
                "history": history, "epoch_stats": epoch_stats, "data_path": str(data_path)}

    if info.is_main:
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "space.json", space.to_dict())
    interrupted = False
    with _StopFlag() as stop:
        while epoch < cfg.epochs and not interrupted:
            model.train()
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch, start=step0 * cfg.batch_size)
            loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                                drop_last=True, pin_memory=info.device.type == "cuda", persistent_workers=False)
            bar = tqdm(total=steps_per_epoch, initial=step0, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       disable=not (progress and info.is_main), unit="step", dynamic_ncols=True)
            t0, step = time.perf_counter(), step0
            lr = optimizer.param_groups[0]["lr"]  # a run stopped after an epoch's last step resumes with no step to do
            for images, labels in loader:
                if step >= steps_per_epoch:
                    break
                gstep = epoch * steps_per_epoch + step
                lr = _set_lr(optimizer, gstep, total_steps, warmup_steps, cfg)
                loss = _train_step(net, fwd, model, optimizer, scaler, images, labels, space, num_classes,
                                   cfg, gstep, info)
                step += 1
                epoch_stats["loss_sum"] += loss
                epoch_stats["steps"] += 1
                epoch_stats["images"] += images.shape[0] * info.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                if any_rank(stop.set, info):
                    interrupted = True
                    break
            bar.close()
            epoch_stats["seconds"] += time.perf_counter() - t0
            if interrupted:
                if info.is_main:
                    save_checkpoint(ckpt_path, snapshot(epoch, step))
                barrier(info)
                break
            record = {"epoch": epoch + 1, "lr": lr, "train_loss": epoch_stats["loss_sum"] / max(epoch_stats["steps"], 1),
                      "img_per_s": epoch_stats["images"] / max(epoch_stats["seconds"], 1e-9),
                      "seconds": round(epoch_stats["seconds"], 2)}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                accs = evaluate_archs(model, eval_archs, val_loader, info, cfg.amp, cfg.channels_last, progress)
                record["eval"] = {"largest": accs[0].to_dict(), "smallest": accs[1].to_dict()}
            history.append(record)
            epoch, step0 = epoch + 1, 0
            epoch_stats = {"loss_sum": 0.0, "steps": 0, "seconds": 0.0, "images": 0}
            if info.is_main:
                save_checkpoint(ckpt_path, snapshot(epoch, 0))
                append_jsonl(output / "log.jsonl", record)
                _log_line(record)
                _plot(output, history)
            barrier(info)

    summary = {"output": str(output), "checkpoint": str(ckpt_path), "epochs_done": epoch,
               "interrupted": interrupted, "history": history}
    if info.is_main and not interrupted:
        write_json(output / "summary.json", {"space": space.name, "data": str(data_path), "epochs": epoch,
                                             "config": cfg.to_dict(), "final": history[-1] if history else None})
    return summary


def _set_lr(optimizer, gstep, total_steps, warmup_steps, cfg) -> float:
    lr = lr_at(gstep, total_steps=total_steps, warmup_steps=warmup_steps, lr=cfg.lr, min_lr=cfg.min_lr,
               warmup_lr=cfg.warmup_lr)
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr


def _train_step(net, fwd, model, optimizer, scaler, images, labels, space, num_classes, cfg, gstep, info) -> float:
    images = images.to(info.device, non_blocking=True)
    labels = labels.to(info.device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # every random draw of the step comes from (seed, step): a resumed run repeats it exactly
    torch.manual_seed(sample_seed(cfg.seed, -2, gstep) + info.rank)
    gen = torch.Generator().manual_seed(sample_seed(cfg.seed, -1, gstep))
    images, targets = mix_batch(images, labels, num_classes, cfg.augment, gen)
    archs = step_archs(space, num_classes, cfg.sampling, cfg.seed, gstep)
    total = 0.0
    for j, arch in enumerate(archs):
        model.set_active_subnet(arch)
        sync = nullcontext() if not info.enabled or j == len(archs) - 1 else net.no_sync()
        with sync:
            with autocast_for(info.device, cfg.amp):
                logits = fwd(images)
            loss = soft_cross_entropy(logits, targets) / len(archs)
            scaler.scale(loss).backward()
        total += loss.item()
    if not math.isfinite(total):
        raise McuformerError(f"training diverged: the loss is {total} at step {gstep} (lower --lr, or use --amp bf16)")
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total


def _log_line(record: dict) -> None:
    ev = record.get("eval")
    acc = (f"  top-1 largest {ev['largest']['top1']:.2f}%  smallest {ev['smallest']['top1']:.2f}%" if ev else "")
    tqdm.write(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}  {record['img_per_s']:.0f} img/s{acc}")


def _plot(output: Path, history: list[dict]) -> None:
    from mcuformer.train.plots import plot_training_curves
    plot_training_curves(history, output / "curves.png")
