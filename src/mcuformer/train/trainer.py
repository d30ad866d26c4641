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

from mcuformer.data import build_eval_transform, build_train_transform, mix_batch, open_split, resolve_data_path
from mcuformer.data.datasets import sample_seed, spread
from mcuformer.data.split import training_indices
from mcuformer.errors import CheckpointError, ConfigError, McuformerError, SpaceError
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.train.checkpoint import check_same_space, load_checkpoint, load_weights, save_checkpoint, space_of
from mcuformer.train.config import TrainConfig
from mcuformer.train.distributed import DistInfo, any_rank, barrier, cleanup, ddp_process_group, init_distributed
from mcuformer.train.evaluate import autocast_for, evaluate_archs, make_eval_loader
from mcuformer.train.sampler import EpochSampler
from mcuformer.train.schedule import lr_at
from mcuformer.train.teacher import TeacherEnsemble, teacher_fingerprint, teacher_paths
from mcuformer.train.warm_start import init_weights_from, report_lines
from mcuformer.utils.io import append_jsonl, write_json


_MAX_DRAWS = 10_000  # rejection sampling: check_sampling_cap refuses caps that almost no subnet meets


def step_archs(space: SearchSpace, num_classes: int, sampling: str, seed: int, global_step: int,
               sandwich_random: int = 1, max_params: int = 0) -> list[Arch]:
    """The subnet(s) trained at a step: a pure function of (seed, step), identical on every rank.
    Under the sandwich rule the largest comes first (it is the in-place teacher). ``max_params`` > 0
    keeps the random draws to subnets of at most that many parameters (uniform over that region)."""
    rng = random.Random(f"{seed}:arch:{global_step}")

    def draw() -> Arch:
        for _ in range(_MAX_DRAWS):
            arch = space.sample(rng, num_classes)
            if not max_params or arch.num_params() <= max_params:
                return arch
        raise ConfigError(f"sample_max_params {max_params:,}: no subnet of space {space.name} within it in "
                          f"{_MAX_DRAWS} draws; raise it")

    if sampling == "sandwich":
        return [space.largest(num_classes), space.smallest(num_classes)] + [draw() for _ in range(sandwich_random)]
    return [draw()]


def check_sampling_cap(space: SearchSpace, num_classes: int, max_params: int, probes: int = 200) -> float:
    """The share of uniform draws that ``max_params`` keeps (1.0 without a cap); refuses a cap below
    the smallest subnet or one that keeps under 1 % of the space (training would mostly redraw)."""
    if not max_params:
        return 1.0
    smallest = space.smallest(num_classes).num_params()
    if smallest > max_params:
        raise ConfigError(f"sample_max_params {max_params:,} is below the smallest subnet of space {space.name} "
                          f"({smallest:,} parameters)")
    rng = random.Random("sample_max_params")
    kept = sum(space.sample(rng, num_classes).num_params() <= max_params for _ in range(probes)) / probes
    if kept < 0.01:
        raise ConfigError(f"sample_max_params {max_params:,} keeps {kept:.1%} of space {space.name}'s subnets; "
                          "raise it (under 1 %, training would spend its time redrawing)")
    return kept


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
                   init_from=None, progress: bool = True, fixed_arch: Arch | None = None, teacher=None,
                   extra_eval: dict[str, Arch] | None = None) -> dict:
    """Train a supernet; returns a summary dict. ``output`` receives checkpoint.pt, log.jsonl,
    curves.png and summary.json. With ``resume`` an existing checkpoint in ``output`` continues.

    ``init_from`` starts from an mcuformer supernet of the same space (warm restart) or a dense pretrained
    ViT. ``fixed_arch`` trains that one subnet only (fine-tuning a searched subnet); ``teacher``, a
    supernet checkpoint, then teaches it with its largest subnet's soft predictions (a fine-tuning checkpoint:
    with its fine-tuned subnet's; a CNN teacher.pt: with the CNN's); a list of checkpoints teaches with their
    averaged predictions (an ensemble). ``extra_eval`` names more subnets to evaluate with the usual ones."""
    info = init_distributed(cfg.device)
    try:
        return _train(space, Path(output), cfg, data_path, resume, init_from, progress, info, fixed_arch, teacher,
                      extra_eval or {})
    finally:
        cleanup(info)


def _train(space, output, cfg, data_path, resume, init_from, progress, info: DistInfo, fixed_arch=None,
           teacher=None, extra_eval=None) -> dict:
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
        if "optimizer" not in state:
            raise CheckpointError(f"{ckpt_path} is weights-only (no optimizer state): it cannot --resume; start a "
                                  "new run from it with --init-from")
        for k in ("epoch", "step"):
            if k not in state:
                raise CheckpointError(f"checkpoint {ckpt_path} lacks '{k}': it cannot --resume")
    teachers = teacher_paths(teacher)
    for path in teachers:
        if not path.is_file():
            raise CheckpointError(f"teacher checkpoint not found: {path}")
    # a resumed fine-tune keeps its teacher: another one would change the targets halfway through the schedule
    teacher_sha = teacher_fingerprint(teachers)
    if state is not None and state.get("teacher_sha256", teacher_sha) != teacher_sha:
        raise ConfigError(f"checkpoint {ckpt_path} was fine-tuned with another teacher (sha256 "
                          f"{str(state['teacher_sha256'])[:12]}, this run's {teacher_sha[:12]}): resume it with the "
                          "same --teacher")

    # ---- data ----
    data_path = resolve_data_path(data_path)
    train_set = open_split(data_path, "train")
    val_set = open_split(data_path, "val", classes=train_set.classes)
    num_classes = len(train_set.classes)
    if space.num_classes is not None and space.num_classes != num_classes:
        raise ConfigError(f"space {space.name} has {space.num_classes} classes but {data_path} has {num_classes}")
    if fixed_arch is None and cfg.sample_max_params:
        kept = check_sampling_cap(space, num_classes, cfg.sample_max_params)
        if info.is_main:
            tqdm.write(f"sampling: subnets of at most {cfg.sample_max_params:,} parameters "
                       f"(about {kept:.0%} of the space's uniform draws)")
    keep = training_indices(train_set, cfg.exclude_split, cfg.limit_train, cfg.seed)
    if len(keep) < len(train_set):
        train_set = train_set.subset(keep)
    if cfg.limit_eval and cfg.limit_eval < len(val_set):
        val_set = val_set.subset(spread(len(val_set), cfg.limit_eval))
    train_set.transform = build_train_transform(cfg.augment, space.img_size, train_set.source_size)
    train_set.seed = cfg.seed
    val_set.transform = build_eval_transform(cfg.augment, space.img_size, val_set.source_size)
    on_device = cfg.data_on_device == "on" or (cfg.data_on_device == "auto" and info.device.type == "cuda")
    device_train = device_val = None
    if on_device:
        from mcuformer.data.device_batches import DeviceBatches  # imports torchvision (1.5 s): only when used

        device_train = DeviceBatches(train_set, cfg.augment, space.img_size, info.device,
                                     aug_groups=cfg.aug_groups, progress=progress and info.is_main)
        if val_set.source_size == space.img_size:  # other sizes keep the eval transform's resize + crop
            device_val = DeviceBatches(val_set, cfg.augment, space.img_size, info.device, train=False,
                                       progress=progress and info.is_main)

    per_step = cfg.batch_size * info.world_size
    steps_per_epoch = len(train_set) // per_step
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} x {info.world_size} processes exceeds the "
                          f"{len(train_set)} training images")
    if cfg.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.steps_per_epoch)
    epochs = cfg.epochs  # a time budget fixes the epochs after the first one; a resumed run keeps that choice
    if state is not None and cfg.time_budget_s and "planned_epochs" in state:
        epochs = int(state["planned_epochs"])
    warmup_steps = int(cfg.warmup_epochs * steps_per_epoch)
    base_lr = cfg.lr * (per_step / cfg.lr_base_batch if cfg.lr_base_batch else 1.0)

    # ---- model, optimizer ----
    torch.manual_seed(cfg.seed)
    model = SuperViT(space, num_classes, drop_path_rate=cfg.drop_path)
    init_report = None
    if init_from is not None and state is None:
        init_report = init_weights_from(model, init_from, space)
        if info.is_main:
            for line in report_lines(init_from, init_report):
                tqdm.write(line)
    teacher_models = [_load_teacher(path, space, num_classes, info.device, info.is_main,
                                    classes=train_set.classes, norm=(cfg.augment.mean, cfg.augment.std))
                      for path in teachers]
    teacher_model = (None if not teacher_models else teacher_models[0] if len(teacher_models) == 1
                     else TeacherEnsemble(teacher_models).eval())
    model.to(info.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg, info.device)
    use_scaler = cfg.amp == "fp16" and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    epoch, step0, history = 0, 0, []
    images_seen = int(init_report.get("images_seen", 0)) if init_report else 0
    epoch_stats = {"loss_sum": 0.0, "steps": 0, "seconds": 0.0, "images": 0}
    if state is not None:
        load_weights(model, state, f"checkpoint {ckpt_path}", "this supernet")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not match this supernet: its optimizer state "
                                  f"({' '.join(str(e).split())[:160]})") from None
        if use_scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        epoch, step0 = int(state["epoch"]), int(state["step"])
        images_seen = int(state.get("images_seen", 0))
        history = list(state.get("history", []))
        epoch_stats = dict(state.get("epoch_stats", epoch_stats))
    net = model
    if info.enabled:
        net = DistributedDataParallel(model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
                                      process_group=ddp_process_group(info), find_unused_parameters=True)
    fwd = torch.compile(net, dynamic=True) if cfg.compile else net

    sampler = EpochSampler(len(train_set), shuffle=True, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    val_loader = (_DeviceEval(device_val, cfg.eval_batch_size, info) if device_val is not None
                  else make_eval_loader(val_set, info, cfg.eval_batch_size, cfg.workers))
    if fixed_arch is not None:
        eval_names, eval_archs = ["subnet"], [fixed_arch]
    else:
        eval_names, eval_archs = ["largest", "smallest"], [space.largest(num_classes), space.smallest(num_classes)]
    eval_names, eval_archs = eval_names + list(extra_eval or {}), eval_archs + list((extra_eval or {}).values())

    def evaluate() -> dict:
        accs = evaluate_archs(model, eval_archs, val_loader, info, cfg.amp, cfg.channels_last, progress)
        return {name: acc.to_dict() for name, acc in zip(eval_names, accs)}

    def snapshot(next_epoch: int, next_step: int) -> dict:
        extra = ({"finetuned_arch": fixed_arch.to_dict(), "teacher_sha256": teacher_sha} if fixed_arch is not None
                 else {})
        if init_from is not None:
            extra["init_from"] = Path(init_from).name
        return {"space": space.to_dict(), "num_classes": num_classes, "classes": train_set.classes,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if use_scaler else {}, "epoch": next_epoch, "step": next_step,
                "global_step": next_epoch * steps_per_epoch + next_step, "config": cfg.to_dict(),
                "planned_epochs": epochs, "images_seen": images_seen, "history": history,
                "epoch_stats": epoch_stats, "data_path": str(data_path), **extra}

    if info.is_main:
        output.mkdir(parents=True, exist_ok=True)
        write_json(output / "space.json", space.to_dict())
    if fixed_arch is not None and state is None and not history:
        history.append({"epoch": 0, "eval": evaluate()})  # the subnet before fine-tuning
        if info.is_main:
            _log_line(history[-1])
    interrupted = False
    run_t0 = last_save = time.perf_counter()
    with _StopFlag() as stop:
        while epoch < epochs and not interrupted:
            model.train()
            train_set.set_epoch(epoch)
            sampler.set_epoch(epoch, start=step0 * cfg.batch_size)
            if device_train is not None:
                loader = _device_epoch(device_train, sampler, cfg, epoch, info.rank)
            else:
                loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                                    drop_last=True, pin_memory=info.device.type == "cuda", persistent_workers=False)
            bar = tqdm(total=steps_per_epoch, initial=step0, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not (progress and info.is_main), unit="step", dynamic_ncols=True)
            t0, step = time.perf_counter(), step0
            lr = optimizer.param_groups[0]["lr"]  # a run stopped after an epoch's last step resumes with no step to do
            for images, labels in loader:
                if step >= steps_per_epoch:
                    break
                gstep = epoch * steps_per_epoch + step
                lr = _set_lr(optimizer, gstep, epochs * steps_per_epoch, warmup_steps, cfg, base_lr)
                loss = _train_step(net, fwd, model, optimizer, scaler, images, labels, space, num_classes,
                                   cfg, gstep, info, fixed_arch, teacher_model)
                step += 1
                epoch_stats["loss_sum"] += loss
                epoch_stats["steps"] += 1
                epoch_stats["images"] += images.shape[0] * info.world_size
                images_seen += images.shape[0] * info.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                if any_rank(stop.set, info):
                    interrupted = True
                    break
                if cfg.checkpoint_every_s and time.perf_counter() - last_save >= cfg.checkpoint_every_s \
                        and step < steps_per_epoch:
                    epoch_stats["seconds"] += time.perf_counter() - t0  # the save is not training time
                    if info.is_main:
                        save_checkpoint(ckpt_path, snapshot(epoch, step))
                    barrier(info)
                    t0 = last_save = time.perf_counter()
            bar.close()
            epoch_stats["seconds"] += time.perf_counter() - t0
            if interrupted:
                if info.is_main:
                    save_checkpoint(ckpt_path, snapshot(epoch, step))
                barrier(info)
                break
            record = {"epoch": epoch + 1, "lr": lr,
                      "train_loss": epoch_stats["loss_sum"] / max(epoch_stats["steps"], 1),
                      "img_per_s": epoch_stats["images"] / max(epoch_stats["seconds"], 1e-9),
                      "seconds": round(epoch_stats["seconds"], 2)}
            record["images_seen"] = images_seen
            if cfg.time_budget_s and epoch == 0 and step0 == 0 and state is None:
                # the first epoch (warm-up overheads included) sizes the schedule to the time budget
                fit = max(1, int(cfg.time_budget_s / (time.perf_counter() - run_t0)))
                if fit < epochs:
                    epochs = fit
                    tqdm.write(f"time budget {cfg.time_budget_s:.0f} s: {epochs} epochs fit")
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == epochs:
                record["eval"] = evaluate()
            history.append(record)
            epoch, step0 = epoch + 1, 0
            epoch_stats = {"loss_sum": 0.0, "steps": 0, "seconds": 0.0, "images": 0}
            if info.is_main:
                save_checkpoint(ckpt_path, snapshot(epoch, 0))
                append_jsonl(output / "log.jsonl", record)
                _log_line(record)
                _plot(output, history)
            barrier(info)
            last_save = time.perf_counter()

    summary = {"output": str(output), "checkpoint": str(ckpt_path), "epochs_done": epoch,
               "interrupted": interrupted, "history": history, "images_seen": images_seen}
    if info.is_main and not interrupted:
        write_json(output / "summary.json", {"space": space.name, "data": str(data_path), "epochs": epoch,
                                             "config": cfg.to_dict(), "final": history[-1] if history else None})
    return summary


def _set_lr(optimizer, gstep, total_steps, warmup_steps, cfg, base_lr) -> float:
    lr = lr_at(gstep, total_steps=total_steps, warmup_steps=warmup_steps, lr=base_lr, min_lr=cfg.min_lr,
               warmup_lr=cfg.warmup_lr)
    for g in optimizer.param_groups:
        g["lr"] = lr
    return lr


def _train_step(net, fwd, model, optimizer, scaler, images, labels, space, num_classes, cfg, gstep, info,
                fixed_arch=None, teacher_model=None) -> float:
    images = images.to(info.device, non_blocking=True)
    labels = labels.to(info.device, non_blocking=True)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    # every random draw of the step comes from (seed, step): a resumed run repeats it exactly
    torch.manual_seed(sample_seed(cfg.seed, -2, gstep) + info.rank)
    gen = torch.Generator().manual_seed(sample_seed(cfg.seed, -1, gstep))
    images, targets = mix_batch(images, labels, num_classes, cfg.augment, gen)
    if fixed_arch is not None:
        archs = [fixed_arch]
    else:
        archs = step_archs(space, num_classes, cfg.sampling, cfg.seed, gstep, cfg.sandwich_random,
                            cfg.sample_max_params)
    student_targets = targets
    if teacher_model is not None:
        with torch.no_grad(), autocast_for(info.device, cfg.amp):
            teacher_probs = F.softmax(teacher_model(images).float(), dim=-1)
        student_targets = _distilled(targets, teacher_probs, cfg.distill_alpha)
    total = 0.0
    for j, arch in enumerate(archs):
        model.set_active_subnet(arch)
        sync = nullcontext() if not info.enabled or j == len(archs) - 1 else net.no_sync()
        with sync:
            with autocast_for(info.device, cfg.amp):
                logits = fwd(images)
            # in-place distillation: the largest (first) learns from the labels, the others from it
            loss = soft_cross_entropy(logits, targets if j == 0 and teacher_model is None else student_targets)
            scaler.scale(loss / len(archs)).backward()
        if j == 0 and cfg.distill == "inplace" and fixed_arch is None:
            student_targets = _distilled(targets, F.softmax(logits.detach().float(), dim=-1), cfg.distill_alpha)
        value = loss.item()
        if not math.isfinite(value):
            raise McuformerError(_divergence(f"the loss is {value}", gstep, arch, images, model, cfg))
        total += value / len(archs)
    if cfg.grad_clip > 0:
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        # an fp16 scaler skips such a step itself; anything else would write NaN into every weight
        if not scaler.is_enabled() and not math.isfinite(norm.item()):
            raise McuformerError(_divergence(f"the gradient norm is {norm.item()} (the loss was {total:.4f})",
                                             gstep, archs[-1], images, model, cfg))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total


def _divergence(what: str, gstep: int, arch, images: torch.Tensor, model, cfg) -> str:
    """The one line that says where training diverged: enough to tell bad input, a bad update and an
    overflow of the autocast precision apart."""
    inputs = "finite" if bool(torch.isfinite(images).all()) else "NOT finite"
    weights = "finite" if all(bool(torch.isfinite(p).all()) for p in model.parameters()) else "NOT finite"
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if images.device.type == "cuda" else "off")
    return (f"training diverged: {what} at step {gstep}, subnet {arch.short()}, amp {amp}; "
            f"inputs {inputs}, weights {weights} (lower --lr, or try --amp off)")


def _distilled(targets: torch.Tensor, teacher_probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """The student's soft target: the teacher's predictions mixed with the (mixed, smoothed) labels."""
    return teacher_probs if alpha >= 1.0 else alpha * teacher_probs + (1.0 - alpha) * targets


def _load_teacher(path, space: SearchSpace, num_classes: int, device, announce: bool = True, *,
                  classes=None, norm=None) -> torch.nn.Module:
    """The fine-tuning teacher, frozen: a CNN teacher (``mcuformer teacher``) behind the student's input
    normalisation, or the subnet a fine-tuning checkpoint names (``finetuned_arch``: a fine-tuned subnet teaching,
    e.g. itself for self-distillation), else the checkpoint's largest subnet. A supernet teacher's space may differ
    from the student's in the conv stem's pools alone (a finer-token student, ``with_token_grids``)."""
    from mcuformer.train.teacher import is_teacher_file, load_teacher

    if is_teacher_file(path):
        return load_teacher(path, classes, norm, device, announce)
    state = load_checkpoint(path)
    check_same_space(state, space, path, ignore=("stem_pool",))
    space = space_of(state)
    teacher = SuperViT(space, num_classes)
    load_weights(teacher, state, f"teacher {path}", "this supernet")
    arch = space.largest(num_classes)
    if "finetuned_arch" in state:
        try:
            arch = Arch.from_dict(state["finetuned_arch"], where=f"teacher {path} finetuned_arch")
            space.check(arch)
        except SpaceError as exc:
            raise CheckpointError(f"teacher {path}: its fine-tuned subnet does not fit this space ({exc})") from None
    teacher.set_active_subnet(arch)
    if announce:
        which = "its fine-tuned subnet" if "finetuned_arch" in state else "its largest subnet"
        tqdm.write(f"teacher: {arch.short()}, {which} of {path}")
    return teacher.get_active_subnet().to(device).eval().requires_grad_(False)


def _device_epoch(batches, sampler, cfg, epoch: int, rank: int):
    """The epoch's batches on the device path: the sampler's order (this rank's shard), augmentations
    seeded by (seed, rank, epoch, batch), so a resumed epoch repeats them."""
    order = torch.as_tensor(list(iter(sampler)), dtype=torch.int64)
    first = sampler.start // cfg.batch_size  # batches already done (a resumed epoch)
    seed = cfg.seed + 1_000_003 * rank
    for k in range(len(order) // cfg.batch_size):
        torch.manual_seed(sample_seed(seed, epoch, -(first + k) - 1))  # RandAugment's op draws
        gen = torch.Generator().manual_seed(sample_seed(seed, epoch, first + k))
        yield batches.batch(order[k * cfg.batch_size:(k + 1) * cfg.batch_size], gen)


class _DeviceEval:
    """Evaluation batches from a device-resident split (an iterable that evaluate_archs can loop on again)."""

    def __init__(self, batches, batch_size: int, info: DistInfo):
        self.batches, self.batch_size, self.info = batches, batch_size, info

    def __iter__(self):
        return self.batches.eval_batches(self.batch_size, self.info.rank, self.info.world_size)

    def __len__(self) -> int:
        return -(-len(range(self.info.rank, len(self.batches), self.info.world_size)) // self.batch_size)


def _log_line(record: dict) -> None:
    ev = record.get("eval") or {}
    acc = "".join(f"  {name} {a['top1']:.2f}%" for name, a in ev.items())
    acc = f"  top-1{acc}" if acc else ""
    if "train_loss" not in record:
        tqdm.write(f"epoch {record['epoch']} (before training):{acc}")
        return
    tqdm.write(f"epoch {record['epoch']}: loss {record['train_loss']:.4f}  {record['img_per_s']:.0f} img/s{acc}")


def _plot(output: Path, history: list[dict]) -> None:
    from mcuformer.train.plots import plot_training_curves
    plot_training_curves(history, output / "curves.png")
