"""Train stage: supernet training (CPU, GPU, torchrun/DDP), checkpoints, evaluation."""

from mcuformer.train.checkpoint import load_checkpoint, save_checkpoint, space_of
from mcuformer.train.config import TrainConfig
from mcuformer.train.evaluate import Accuracy, evaluate_archs
from mcuformer.train.trainer import train_supernet

__all__ = ["Accuracy", "TrainConfig", "evaluate_archs", "load_checkpoint", "save_checkpoint", "space_of",
           "train_supernet"]
