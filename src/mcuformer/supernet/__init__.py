"""Supernet stage: the weight-sharing ViT, its elastic layers, and the standalone subnet."""

from mcuformer.supernet.supervit import SuperViT
from mcuformer.supernet.vit import ViT

__all__ = ["SuperViT", "ViT"]
