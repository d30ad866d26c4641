"""A convolutional teacher for fine-tuning (DeiT's recipe: a CNN teaches the ViT through soft targets).

A small all-conv net reaches a higher CIFAR-10 top-1 per CPU hour than any ViT of the space (89.8 % after 16
epochs, 41 minutes on 2 CPU cores, where the zoo supernet's largest subnet has 80.8 %), so it is the more
accurate teacher. Three groups of
conv → max-pool → BN → GELU → conv → BN → GELU (32 → 16 → 8 → 4 pixels), a global max pool and a linear head.
Trained here with SGD (Nesterov), pad-crop + flip, label smoothing and a one-cycle learning rate, on the
device-resident input path; resumable per epoch. Checkpoints hold plain tensors only (weights-only load).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from mcuformer.errors import CheckpointError, ConfigError
from mcuformer.utils.checks import check_number, input_file, torch_load_problem
from mcuformer.utils.io import append_jsonl, atomic_write, file_sha256

FORMAT = "mcuformer-teacher-v1"
RUN_FILES = ("teacher.pt", "checkpoint.pt", "log.jsonl")  # what a run writes in its folder
DEFAULT_WIDTHS = (64, 256, 256)
STEM_WIDTH = 32
MAX_WIDTH = 4096  # channels of a group, at most (a tampered checkpoint must not make a giant net)
MAX_SIDE, DEFAULT_SIDE = 64, 32  # the net is made for small images; image files of unknown size train at 32x32
LOGIT_SCALE = 1 / 8  # the max-pooled features are large: unscaled logits start far from uniform and training stalls


class TeacherCNN(nn.Module):
    def __init__(self, num_classes: int, widths=DEFAULT_WIDTHS):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.stem = nn.Sequential(nn.Conv2d(3, STEM_WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(STEM_WIDTH),
                                  nn.GELU())
        groups, c_in = [], STEM_WIDTH
        for c in self.widths:
            groups.append(nn.Sequential(
                nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c), nn.GELU(),
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU()))
            c_in = c
        self.groups = nn.Sequential(*groups)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.stem(x))
        return self.head(torch.amax(x, dim=(2, 3))) * LOGIT_SCALE


class NormalisedTeacher(nn.Module):
    """The teacher behind the student's input normalisation: images normalised for the student are mapped
    back to the teacher's own mean/std (and size), so either may differ."""

    def __init__(self, net: nn.Module, teacher_norm, student_norm, img_size: int):
        super().__init__()
        (t_mean, t_std), (s_mean, s_std) = teacher_norm, student_norm
        self.net, self.img_size = net, img_size
        self.register_buffer("scale", (torch.tensor(s_std) / torch.tensor(t_std)).view(1, 3, 1, 1))
        self.register_buffer("shift", ((torch.tensor(s_mean) - torch.tensor(t_mean)) / torch.tensor(t_std))
                             .view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift
        if x.shape[-1] != self.img_size or x.shape[-2] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return self.net(x)


class TeacherEnsemble(nn.Module):
    """Several frozen teachers as one: the log of their averaged softmax, so the student's soft target (a softmax
    of the output) is the mean of their predictions. Averaged probabilities, not logits: teachers whose logits
    differ in scale weigh the same."""

    def __init__(self, teachers):
        super().__init__()
        self.members = nn.ModuleList(teachers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([F.log_softmax(t(x).float(), dim=-1) for t in self.members])
        return torch.logsumexp(logp, dim=0) - math.log(len(self.members))


def teacher_paths(teacher) -> list[Path]:
    """A fine-tune's teacher argument as a list of checkpoint paths: None gives none, one path one, a list or
    tuple (an ensemble) each, refused when one is given twice."""
    if teacher is None:
        return []
    paths = [Path(t) for t in (teacher if isinstance(teacher, (list, tuple)) else [teacher])]
    for k, path in enumerate(paths):
        if any(path.resolve() == other.resolve() for other in paths[:k]):
            raise ConfigError(f"teacher {path} is named twice: an ensemble's teachers must differ")
    return paths


def teacher_fingerprint(teacher) -> str:
    """What a fine-tune records of its teacher: "none", a checkpoint's sha256, or for an ensemble the sha256 of
    its members' (sorted: the average does not depend on their order). Paths must exist."""
    shas = sorted(file_sha256(p) for p in teacher_paths(teacher))
    if not shas:
        return "none"
    if len(shas) == 1:
        return shas[0]
    if len(set(shas)) < len(shas):
        raise ConfigError("an ensemble names the same teacher checkpoint twice (equal sha256): its teachers must "
                          "differ")
    return hashlib.sha256(("ensemble:" + ",".join(shas)).encode()).hexdigest()


@dataclass
class TeacherConfig:
    epochs: int = 15
    batch_size: int = 256
    lr: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.9
    label_smoothing: float = 0.2
    warmup_epochs: float = 1.0
    seed: int = 0
    limit_train: int = 0          # a seeded subset of this many training images (0: all)
    exclude_split: str | None = None  # a sub-split JSON whose held-out images the teacher must not see

    def validate(self) -> "TeacherConfig":
        check_number(self.epochs, "epochs", integer=True, minimum=1)
        check_number(self.batch_size, "batch_size", integer=True, minimum=1)
        check_number(self.lr, "lr", positive=True)
        check_number(self.weight_decay, "weight_decay", minimum=0)
        check_number(self.momentum, "momentum", minimum=0, maximum=0.999)
        check_number(self.label_smoothing, "label_smoothing", minimum=0, maximum=0.99)
        check_number(self.warmup_epochs, "warmup_epochs", minimum=0)
        check_number(self.seed, "seed", integer=True, minimum=0)
        check_number(self.limit_train, "limit_train", integer=True, minimum=0)
        return self


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """One cycle: linear from peak/10 up to the peak over ``warmup`` steps, then linearly down to 0."""
    if step < warmup:
        return peak * (0.1 + 0.9 * step / warmup)
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def _save(path: Path, state: dict) -> Path:
    def write(f):
        try:
            torch.save(dict(state, format=FORMAT), f)
        except RuntimeError as e:  # torch's zip writer reports a full disk as a RuntimeError
            raise OSError(f"cannot write teacher checkpoint ({str(e).strip().splitlines()[0][:160]})") from None
    return atomic_write(path, write, mode="wb")


def read_teacher(path) -> dict:
    """A teacher checkpoint's state, checked: the right format, a state dict of finite tensors that fits
    the net its widths name, sane classes and normalisation."""
    path = input_file(path, "teacher checkpoint", CheckpointError)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated / foreign / pickled file
        raise CheckpointError(f"cannot load teacher {path}: {torch_load_problem(e)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a teacher checkpoint (format {FORMAT}; `mcuformer teacher` makes one)")
    classes, widths = state.get("classes"), state.get("widths")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"teacher {path}: 'classes' must be a list of class names")
    if not (isinstance(widths, list) and len(widths) == 3
            and all(type(w) is int and 1 <= w <= MAX_WIDTH for w in widths)):
        raise CheckpointError(f"teacher {path}: 'widths' must be three channel counts")
    for key in ("mean", "std"):
        v = state.get(key)
        if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, float) and math.isfinite(x) for x in v)
                and (key == "mean" or min(v) > 0)):
            raise CheckpointError(f"teacher {path}: '{key}' must be three finite numbers")
    if type(state.get("img_size")) is not int or not 8 <= state["img_size"] <= 1024:
        raise CheckpointError(f"teacher {path}: 'img_size' must be a whole number of pixels")
    model = state.get("model")
    if not isinstance(model, dict) or not all(isinstance(t, torch.Tensor) for t in model.values()):
        raise CheckpointError(f"teacher {path}: 'model' is not a state dict")
    for name, t in model.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"teacher {path}: weights {name} hold NaN or infinite values")
    net = TeacherCNN(len(classes), widths)
    expected = net.state_dict()
    if set(model) != set(expected) or any(model[k].shape != expected[k].shape for k in expected):
        raise CheckpointError(f"teacher {path}: its weights do not fit a teacher of widths {widths} "
                              f"and {len(classes)} classes")
    return state


def load_teacher(path, classes: list[str] | None, student_norm, device, announce: bool = True) -> nn.Module:
    """The frozen teacher of a checkpoint, taking the student's normalised images (``student_norm``: their
    (mean, std); None: the teacher's own). ``classes``: the student's, which must be the teacher's."""
    state = read_teacher(path)
    student_norm = student_norm or (state["mean"], state["std"])
    if classes is not None and state["classes"] != list(classes):
        raise CheckpointError(f"teacher {path} was trained on other classes ({len(state['classes'])}: "
                              f"{', '.join(state['classes'][:4])}...) than the student's data")
    net = TeacherCNN(len(state["classes"]), state["widths"])
    net.load_state_dict({k: v.float() for k, v in state["model"].items()})
    teacher = NormalisedTeacher(net, (state["mean"], state["std"]), student_norm, state["img_size"])
    if announce:
        top1 = state.get("test_top1")
        tqdm.write(f"teacher: CNN {state['widths']} of {path}"
                   + (f" (test top-1 {top1:.2f} %)" if isinstance(top1, float) and math.isfinite(top1) else ""))
    return teacher.to(device).eval().requires_grad_(False)


def is_teacher_file(path) -> bool:
    """Whether ``path`` holds a teacher checkpoint (read weights-only; False for anything else)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return isinstance(state, dict) and state.get("format") == FORMAT


@torch.no_grad()
def evaluate(net: nn.Module, batches, batch_size: int = 500) -> float:
    net.eval()
    correct = total = 0
    for x, y in batches.eval_batches(batch_size):
        correct += int((net(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum())
        total += y.numel()
    return 100.0 * correct / max(1, total)


def train_teacher(output, *, data_path=None, cfg: TeacherConfig | None = None, widths=DEFAULT_WIDTHS,
                  resume: bool = False, device: str = "cpu", progress: bool = True) -> dict:
    """Train a teacher into ``output`` (checkpoint.pt: resumable; teacher.pt: fp16 weights and the measured
    test top-1; log.jsonl: one line per epoch). Returns teacher.pt's metadata."""
    from mcuformer.data import open_split, resolve_data_path
    from mcuformer.data.datasets import ImageDataset
    from mcuformer.data.device_batches import DeviceBatches
    from mcuformer.data.split import training_indices
    from mcuformer.data.transforms import CIFAR_MEAN, CIFAR_STD, AugmentConfig

    cfg = (cfg or TeacherConfig()).validate()
    output = Path(output)
    ckpt_path = output / "checkpoint.pt"
    state = None
    if resume and ckpt_path.exists():
        state = read_teacher(ckpt_path)
        if state.get("config") != asdict(cfg) or state["widths"] != list(widths):
            raise ConfigError(f"{ckpt_path} was trained with other settings: resume it with the same ones")
    device = torch.device(device)
    data_path = resolve_data_path(data_path)
    train_set: ImageDataset = open_split(data_path, "train")
    test_set = open_split(data_path, "val", classes=train_set.classes)
    if train_set.source_size is not None and train_set.source_size > MAX_SIDE:
        raise ConfigError(f"the teacher trains on small images (at most {MAX_SIDE} pixels, CIFAR-like); this data "
                          f"is stored at {train_set.source_size}")
    keep = training_indices(train_set, cfg.exclude_split, cfg.limit_train, cfg.seed)
    if len(keep) < len(train_set):
        train_set = train_set.subset(keep)
    size = train_set.source_size or DEFAULT_SIDE  # files of any size are resized (shorter side) and centre-cropped
    aug = AugmentConfig(crop="pad-crop", hflip=True, randaugment=False, random_erasing=0.0, mixup=0.0, cutmix=0.0,
                        label_smoothing=cfg.label_smoothing, mean=CIFAR_MEAN, std=CIFAR_STD)
    train = DeviceBatches(train_set, aug, size, device, aug_groups=1, progress=progress)
    test = DeviceBatches(test_set, aug, size, device, train=False, progress=progress)
    steps_per_epoch = len(train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch size {cfg.batch_size} exceeds the {len(train)} training images")
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)

    torch.manual_seed(cfg.seed)
    net = TeacherCNN(len(train_set.classes), widths).to(device).to(memory_format=torch.channels_last)
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    start_epoch, seconds = 0, 0.0
    if state is not None:
        if state["classes"] != list(train_set.classes):
            raise ConfigError(f"{ckpt_path} was trained on other classes than {data_path}'s: resume it on its data")
        try:
            start_epoch, seconds = state["epoch"], state["seconds"]
            if type(start_epoch) is not int or not 0 <= start_epoch <= cfg.epochs or not math.isfinite(seconds):
                raise ValueError("its epoch or seconds")
            net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot resume {ckpt_path}: damaged ({str(e).splitlines()[0][:120]})") from None
        tqdm.write(f"resuming {ckpt_path} after epoch {start_epoch}")
    meta = {"classes": list(train_set.classes), "widths": list(widths), "mean": list(CIFAR_MEAN),
            "std": list(CIFAR_STD), "img_size": size, "config": asdict(cfg), "train_images": len(train)}
    if state is None:  # a fresh run (--force): an old run's log and teacher go
        for name in ("log.jsonl", "teacher.pt"):
            (output / name).unlink(missing_ok=True)
    test_top1 = float("nan")
    for epoch in range(start_epoch, cfg.epochs):
        net.train()
        t0, loss_sum = time.time(), 0.0
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        bar = tqdm(range(steps_per_epoch), desc=f"teacher epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   leave=False, disable=not progress)
        for i in bar:
            step = epoch * steps_per_epoch + i
            gen = torch.Generator().manual_seed(cfg.seed * 10**6 + step)
            x, y = train.batch(order[i * cfg.batch_size:(i + 1) * cfg.batch_size], gen)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, cfg.lr)
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise ConfigError(f"teacher training diverged at step {step} (loss {value}): lower --lr")
            loss_sum += value
            bar.set_postfix(loss=f"{value:.3f}")
        seconds += time.time() - t0
        test_top1 = evaluate(net, test)
        line = {"epoch": epoch + 1, "loss": round(loss_sum / steps_per_epoch, 4), "test_top1": round(test_top1, 2),
                "seconds": round(seconds, 1)}
        append_jsonl(output / "log.jsonl", line)
        tqdm.write(json.dumps(line))
        _save(ckpt_path, dict(meta, model=net.state_dict(), optimizer=opt.state_dict(), epoch=epoch + 1,
                              seconds=seconds, test_top1=test_top1))
    if start_epoch == cfg.epochs:  # resumed a finished run: measure again, nothing to train
        test_top1 = evaluate(net, test)
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    result = dict(meta, epochs=cfg.epochs, seconds=round(seconds, 1), test_top1=round(test_top1, 2),
                  test_images=len(test))
    _save(output / "teacher.pt", dict(result, model=weights))
    return result
