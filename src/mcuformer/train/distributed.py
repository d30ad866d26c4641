"""torchrun / DistributedDataParallel plumbing (nothing home-made: env:// rendezvous from torchrun)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mcuformer.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def check_device(device: str) -> None:
    """auto, cpu, cuda or cuda:N, and a GPU only where there is one (a typo never falls back silently)."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: no CUDA GPU is available here (use cpu or auto)")


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on GPUs, gloo on CPU."""
    check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def ddp_process_group(info: DistInfo):
    """The process group for DistributedDataParallel: on gloo (CPU) a group of its own, None (the default
    group) on NCCL. DDP keeps its group alive after ``destroy_process_group`` (pytorch#107298), and a
    leaked gloo group's worker threads still hold our last collectives' tensors when the interpreter
    exits, which aborts the process (SIGABRT, "terminate called without an active exception"). On
    a group of its own, DDP's group runs only DDP's own collectives, which end long before exit, and the
    default group that runs ours is freed, its threads joined, by ``cleanup``."""
    if not info.enabled or dist.get_backend() != "gloo":
        return None
    return dist.new_group(backend="gloo")


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when the flag is set on any rank (a signal caught by one process)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
