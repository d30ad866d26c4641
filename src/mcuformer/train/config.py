"""Training settings: defaults, a YAML file (``--config``), then command-line overrides."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields

from mcuformer.data.transforms import AugmentConfig
from mcuformer.errors import ConfigError
from mcuformer.utils.checks import check_number
from mcuformer.utils.io import read_structured

SAMPLING = ("uniform", "sandwich")
CROPS = ("auto", "random-resized", "pad-crop", "none")
DISTILL = ("none", "inplace")
AMP = ("auto", "bf16", "fp16", "off")
ON_OFF = ("auto", "on", "off")


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128           # per process
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 5
    warmup_lr: float = 1e-6
    weight_decay: float = 0.05
    grad_clip: float = 5.0          # 0 disables
    drop_path: float = 0.1
    sampling: str = "uniform"       # uniform: one random subnet per step; sandwich: largest+smallest+random
    sandwich_random: int = 1        # random subnets per sandwich step (BigNAS uses 2)
    sample_max_params: int = 0      # >0: random draws keep to subnets of at most this many parameters
    distill: str = "none"           # inplace: the largest subnet's soft predictions teach the others (sandwich)
    distill_alpha: float = 1.0      # weight of a teacher's soft predictions in the target (1: teacher only)
    lr_base_batch: int = 0          # >0: lr is for this global batch and scales linearly with the real one
    data_on_device: str = "auto"    # on: the split decoded once onto the device, augmented there in batches
    aug_groups: int = 16            # RandAugment groups per batch on the device path (each draws its ops)
    time_budget_s: float = 0        # >0: after epoch 1, cut the epochs to what fits this many seconds
    checkpoint_every_s: float = 0   # >0: also checkpoint within an epoch this often
    amp: str = "auto"               # auto: bf16 on GPU, off on CPU
    compile: bool = False
    channels_last: bool = False
    workers: int = 4
    seed: int = 0
    eval_every: int = 1
    eval_batch_size: int = 256
    steps_per_epoch: int = 0        # >0 caps the steps of an epoch (smoke runs, CI)
    limit_train: int = 0            # >0 trains on a seeded subset of this many images
    limit_eval: int = 0             # >0 evaluates on the first N validation images
    exclude_split: str | None = None  # a sub-split JSON whose held-out images training must not see
    device: str = "auto"
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self):
        if isinstance(self.augment, dict):
            known = {f.name for f in fields(AugmentConfig)}
            bad = sorted(map(str, set(self.augment) - known))
            if bad:
                raise ConfigError(f"unknown augment setting(s) {bad}; known: {sorted(known)}")
            aug = dict(self.augment)
            for k in ("mean", "std"):
                if k in aug:
                    if not isinstance(aug[k], (list, tuple)):
                        raise ConfigError(f"augment.{k} must hold 3 numbers (R, G, B), got {aug[k]!r}")
                    aug[k] = tuple(aug[k])
            self.augment = AugmentConfig(**aug)
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be a mapping of augmentation settings (crop: ..., mixup: ...), "
                              f"got {self.augment!r}")
        if isinstance(self.data_on_device, bool):  # YAML reads a bare on/off as a boolean
            self.data_on_device = "on" if self.data_on_device else "off"
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling must be one of {SAMPLING}, got {self.sampling!r}")
        if self.distill not in DISTILL:
            raise ConfigError(f"distill must be one of {DISTILL}, got {self.distill!r}")
        if self.distill == "inplace" and self.sampling != "sandwich":
            raise ConfigError("distill: inplace needs sampling: sandwich (the largest subnet is the teacher)")
        if self.data_on_device not in ON_OFF:
            raise ConfigError(f"data_on_device must be one of {ON_OFF}, got {self.data_on_device!r}")
        if not isinstance(self.distill_alpha, (int, float)) or not 0.0 <= self.distill_alpha <= 1.0:
            raise ConfigError(f"distill_alpha must lie in [0, 1], got {self.distill_alpha!r}")
        if self.amp not in AMP:
            raise ConfigError(f"amp must be one of {AMP}, got {self.amp!r}")
        # every number finite (a NaN compares false with every bound), integers whole
        for k in ("epochs", "batch_size", "eval_batch_size", "eval_every", "sandwich_random", "aug_groups"):
            setattr(self, k, check_number(getattr(self, k), k, integer=True, positive=True))
        for k in ("workers", "steps_per_epoch", "limit_train", "limit_eval", "seed", "lr_base_batch",
                  "sample_max_params"):
            setattr(self, k, check_number(getattr(self, k), k, integer=True, minimum=0))
        check_number(self.lr, "lr", positive=True)  # a peak of 0 would run the whole schedule and change nothing
        for k in ("min_lr", "warmup_lr", "weight_decay", "warmup_epochs", "grad_clip", "time_budget_s",
                  "checkpoint_every_s"):
            check_number(getattr(self, k), k, minimum=0)
        check_number(self.drop_path, "drop_path", minimum=0, maximum=1)
        check_number(self.distill_alpha, "distill_alpha", minimum=0, maximum=1)
        for k in ("compile", "channels_last"):
            if not isinstance(getattr(self, k), bool):
                raise ConfigError(f"{k} must be true or false, got {getattr(self, k)!r}")
        if self.exclude_split is not None and not isinstance(self.exclude_split, str):
            raise ConfigError(f"exclude_split must be a file name, got {self.exclude_split!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check_augment(self.augment)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["augment"]["mean"], d["augment"]["std"] = list(d["augment"]["mean"]), list(d["augment"]["std"])
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping of training settings")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"{where}: unknown training setting(s) {bad}")
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path) -> "TrainConfig":
        d = read_structured(path) or {}
        return cls.from_dict(d, where=str(path))


def _check_augment(a: AugmentConfig) -> None:
    if a.crop not in CROPS:
        raise ConfigError(f"augment.crop must be one of {CROPS}, got {a.crop!r}")
    for k in ("hflip", "randaugment"):
        if not isinstance(getattr(a, k), bool):
            raise ConfigError(f"augment.{k} must be true or false, got {getattr(a, k)!r}")
    for k in ("randaugment_ops", "randaugment_magnitude"):
        check_number(getattr(a, k), f"augment.{k}", integer=True, minimum=0)
    for k in ("random_erasing", "mixup_switch_prob", "label_smoothing"):
        check_number(getattr(a, k), f"augment.{k}", minimum=0, maximum=1)
    if a.label_smoothing == 1:  # the target would be uniform whatever the label: nothing left to learn
        raise ConfigError("augment.label_smoothing must be below 1 (at 1 the target holds no label), got 1")
    for k in ("mixup", "cutmix"):
        check_number(getattr(a, k), f"augment.{k}", minimum=0)
    for k in ("mean", "std"):
        v = getattr(a, k)
        if len(v) != 3:
            raise ConfigError(f"augment.{k} must hold 3 numbers (R, G, B), got {list(v)}")
        for x in v:
            check_number(x, f"augment.{k}", positive=(k == "std"))


# Fine-tuning one subnet (`mcuformer finetune`, the pipeline's fine-tune stage), over the supernet's own
# settings (its augmentation and normalisation stay): a short, gentler schedule at half its learning rate.
FINETUNE_DEFAULTS = {"epochs": 10, "warmup_epochs": 1, "sampling": "uniform", "distill": "none",
                     "distill_alpha": 0.5, "time_budget_s": 0, "steps_per_epoch": 0, "limit_train": 0}


def finetune_settings(supernet_config: dict | None, **overrides) -> dict:
    """The settings a fine-tuning run starts from: the supernet's, then FINETUNE_DEFAULTS, lr halved."""
    base = dict(supernet_config or {})
    return {**base, **FINETUNE_DEFAULTS, "lr": 0.5 * float(base.get("lr", 1e-3)), **overrides}
