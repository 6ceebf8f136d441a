"""Data-parallel training under ``torchrun`` (PyTorch DistributedDataParallel).

``spikecim train`` detects ``WORLD_SIZE > 1`` in the environment that ``torchrun`` sets,
joins the process group (``gloo`` on the CPU, ``nccl`` on CUDA) and wraps the model in
DDP. Each process draws the random transforms of every whole global batch (augmentation,
mixup and CutMix, a random spike encoder), keeps ``batch[rank::world]`` (:meth:`DistInfo.share`)
and weights its loss by its share (:func:`share_weight`), so DDP's average of the gradients
is the gradient of the mean loss over the global batch, and the result equals
single-process training on the global batch (for models without batch-norm, whose
statistics are per process). Every batch needs at least one sample per process
(:func:`check_shares`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from spikecim.errors import SpikecimError

__all__ = ["DistInfo", "check_shares", "init_distributed", "is_main_process", "share_weight"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, t: torch.Tensor, dim: int) -> torch.Tensor:
        """This process's share ``[rank::world]`` of a global batch along ``dim``."""
        if self.world == 1:
            return t
        return t[(slice(None),) * dim + (slice(self.rank, None, self.world),)]


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


def check_shares(samples: int, batch_size: int, world: int) -> None:
    """Refuse batches that some of the ``world`` processes would have no share of: that
    process would skip the step while the others wait for its gradient for ever."""
    last = samples % batch_size or batch_size
    smallest = min(batch_size, samples, last)
    if world > 1 and smallest < world:
        raise SpikecimError(
            f"data.batch_size: under torchrun each of the {world} processes takes a share of every batch, "
            f"but batches of {batch_size} leave a last batch of {smallest} of the {samples} training samples; "
            f"choose a batch_size that leaves at least {world} (or none) in the last batch"
        )


def share_weight(local: int, batch: int, world: int) -> float:
    """The factor on a process's mean loss over its ``local`` samples of a global batch of
    ``batch`` that makes DDP's average over ``world`` processes the gradient of the mean loss
    over the whole batch: ``local * world / batch`` (the shares of 63 samples over two
    processes, 32 and 31, count 32/63 and 31/63, not 1/2 each)."""
    return local * world / batch
