"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``spikecim train`` detects ``WORLD_SIZE > 1`` in the environment that ``torchrun`` sets,
joins the process group (``gloo`` on the CPU, ``nccl`` on CUDA) and wraps the model in
DDP. Each process trains on ``batch[rank::world]`` of every global batch; DDP averages the
gradients, so the result equals single-process training on the global batch (for models
without batch-norm, whose statistics are per process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "is_main_process"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """True outside torchrun, and on rank 0 under it (the process that writes files)."""
    return int(os.environ.get("RANK", "0")) == 0
