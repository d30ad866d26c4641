"""Fitness of many subnets on an in-memory held-out set (top-1, or the mean log-likelihood of the true
class), batched, cached by arch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mcuformer.data import build_eval_transform, load_subsplit, make_subsplit, open_split
from mcuformer.data.datasets import spread
from mcuformer.data.transforms import AugmentConfig
from mcuformer.errors import ConfigError
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.train import evaluate_archs, load_checkpoint, space_of
from mcuformer.train.checkpoint import (augment_of, check_classes, data_path_of, load_weights, recorded_split,
                                        trained_on)
from mcuformer.train.distributed import DistInfo
from mcuformer.train.evaluate import make_eval_loader


@dataclass
class Supernet:
    """A loaded checkpoint: the model, its space, and what evaluation needs to rebuild its inputs."""

    model: SuperViT
    space: SearchSpace
    num_classes: int
    classes: list | None
    augment: AugmentConfig
    data_path: Path | None
    train_config: dict | None = None  # the checkpoint's training settings (which images it saw)
    heldout_split: Path | None = None  # the split it was trained without, if its settings name one


def load_supernet(checkpoint, info: DistInfo) -> Supernet:
    state = load_checkpoint(checkpoint)
    space, num_classes = space_of(state), int(state["num_classes"])
    model = SuperViT(space, num_classes)
    load_weights(model, state, f"checkpoint {checkpoint}")
    model.to(info.device).eval()
    return Supernet(model, space, num_classes, state.get("classes"), augment_of(state), trained_on(state),
                    state.get("config"), recorded_split(checkpoint, state))


def resolve_search_data(net: Supernet, data_path) -> Path:
    return data_path_of({"data_path": net.data_path}, data_path)


def default_heldout_split(net: Supernet, data_path: Path) -> Path | None:
    """The held-out split the supernet was trained without, when the search reads the data it trained on
    (a split indexes one dataset's train images); None when it records none or trained on other data."""
    split = net.heldout_split
    if split is None or net.data_path is None or Path(net.data_path).resolve() != Path(data_path).resolve():
        return None
    if not split.is_file():
        raise ConfigError(f"the supernet was trained without the held-out split {split}, which is not found: "
                          "put it back, or pass --subsplit")
    return split


def heldout_dataset(net: Supernet, data_path: Path, subsplit=None, per_class: int = 100, seed: int = 0,
                    limit: int = 0):
    """The held-out sub-split of train (a `mcuformer sub-split` file, or a seeded one of
    ``per_class`` images per class), with the eval transform. Returns (dataset, split dict or path)."""
    train = open_split(data_path, "train")
    _check_classes(net, train, data_path)
    if subsplit:
        idx, source = load_subsplit(subsplit, train), str(subsplit)
    else:
        made = make_subsplit(data_path, per_class, seed=seed)
        idx, source = made["heldout"], f"generated: {per_class} per class, seed {seed}"
    ds = train.subset(idx)
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    ds.transform = build_eval_transform(net.augment, net.space.img_size, ds.source_size)
    return ds, source


def test_dataset(net: Supernet, data_path: Path, limit: int = 0):
    ds = open_split(data_path, "val")
    _check_classes(net, ds, data_path)
    if limit:
        ds = ds.subset(spread(len(ds), limit))
    ds.transform = build_eval_transform(net.augment, net.space.img_size, ds.source_size)
    return ds


def _check_classes(net: Supernet, ds, data_path) -> None:
    check_classes({"classes": net.classes}, ds, data_path)


def preload(dataset, info: DistInfo, batch_size: int, workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Decode this rank's shard once and keep the batches on the device: a search reads them
    once per generation, so decoding them each time would dominate on CPU."""
    loader = make_eval_loader(dataset, info, batch_size, workers)
    return [(x.to(info.device), y.to(info.device)) for x, y in loader]


# what a search can maximise on the held-out set, and how its plots name it
FITNESS = {"top1": "held-out top-1 (%)", "loglik": "held-out log-likelihood"}


def check_fitness(name: str) -> str:
    if name not in FITNESS:
        raise ConfigError(f"fitness must be one of {sorted(FITNESS)}, got {name!r}")
    return name


class FitnessCache:
    """A fitness per arch on fixed batches, each arch evaluated once (every batch read once per call).
    Held-out top-1 is kept beside it, for the reports."""

    def __init__(self, model: SuperViT, batches, info: DistInfo, amp: str = "auto", metric: str = "top1"):
        self.model, self.batches, self.info, self.amp = model, batches, info, amp
        self.metric = check_fitness(metric)
        self.scores: dict[Arch, float] = {}
        self.top1: dict[Arch, float] = {}

    def __contains__(self, arch: Arch) -> bool:
        return arch in self.scores

    def restore(self, arch: Arch, fitness: float) -> None:
        """A score from a saved search state (its top-1 too when top-1 is the fitness)."""
        self.scores[arch] = fitness
        if self.metric == "top1":
            self.top1[arch] = fitness

    def _run(self, archs: list[Arch]) -> None:
        accs = evaluate_archs(self.model, archs, self.batches, self.info, self.amp, progress=False)
        for a, acc in zip(archs, accs):
            self.scores[a] = acc.top1 if self.metric == "top1" else acc.loglik
            self.top1[a] = acc.top1

    def evaluate(self, archs: list[Arch]) -> list[float]:
        todo = list(dict.fromkeys(a for a in archs if a not in self.scores))
        if todo:
            self._run(todo)
        return [self.scores[a] for a in archs]

    def heldout_top1(self, archs: list[Arch]) -> list[float]:
        """Held-out top-1 (an arch restored from a state with another fitness is evaluated again)."""
        todo = list(dict.fromkeys(a for a in archs if a not in self.top1))
        if todo:
            self._run(todo)
        return [self.top1[a] for a in archs]
