"""A resumable, shardable sampler: the order of an epoch is a pure function of (seed, epoch), and
iteration can start at any batch of it (a run killed mid-epoch resumes at the next batch)."""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pad: bool = True):
        self.n, self.shuffle, self.seed, self.rank, self.world = n, shuffle, seed, rank, world_size
        self.pad = pad  # training pads to equal shards (DistributedSampler); evaluation must not
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Start iterating at sample ``start`` of this rank's shard (batches done x batch size)."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad and self.world > 1:
            total = -(-self.n // self.world) * self.world
            order += order[: total - self.n]
        return order[self.rank:: self.world]

    def __iter__(self):
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)
