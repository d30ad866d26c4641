"""Search space and subnet description: the first stage of the pipeline, imported by all others."""

from mcuformer.space.arch import STEMS, Arch, is_dense, low_rank, mlp_hidden, patch_grid, patch_padding, pooled_size
from mcuformer.space.search_space import SearchSpace

__all__ = ["Arch", "SearchSpace", "is_dense", "low_rank", "mlp_hidden", "patch_grid", "patch_padding",
           "pooled_size", "STEMS"]
