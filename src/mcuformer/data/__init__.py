"""Data stage: ImageFolder roots and archives, transforms, the held-out sub-split."""

from mcuformer.data.datasets import ImageDataset, open_split
from mcuformer.data.paths import default_data_path, resolve_data_path
from mcuformer.data.split import complement, load_subsplit, make_subsplit
from mcuformer.data.transforms import AugmentConfig, build_eval_transform, build_train_transform, mix_batch

__all__ = ["AugmentConfig", "ImageDataset", "build_eval_transform", "build_train_transform", "complement",
           "default_data_path", "load_subsplit", "make_subsplit", "mix_batch", "open_split", "resolve_data_path"]
