"""Seeded work that leaves torch's global random state as it found it.

Everything spikecim draws itself takes an explicit ``torch.Generator`` (shuffling, encoders,
weight noise, programming noise). Two things cannot: PyTorch's layer constructors (weight
initialisation) and code that draws from the global generator by design (the crossbar read
noise). :func:`seeded` runs those in a forked copy of the global state, seeded for the
purpose, so two runs in one process never see each other's draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with the global generators (CPU and initialised CUDA devices) seeded
    with ``seed``; their previous state is restored afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
