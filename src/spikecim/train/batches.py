"""Batches from in-memory tensors and the model's time-major input.

Shuffling and encoding draw from generators seeded by ``(seed, epoch)``, so an epoch is
the same whether the run was interrupted before it or not (what makes resume exact).
Under ``torchrun`` each process takes its share ``batch[rank::world]`` of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from spikecim.data.encode import get_encoder

__all__ = ["epoch_generator", "iterate_batches", "to_model_input"]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``: seeded with ``(seed * 100003 + epoch) mod 2**63``, so
    every run seed (0 <= seed < 2**63) gives a seed ``torch.Generator`` takes."""
    return torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**63)


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x_b, y_b)``; shuffled when ``generator`` is given, in order otherwise (a
    process under torchrun takes its share of each batch: :meth:`DistInfo.share`)."""
    n = x.shape[0]
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def to_model_input(
    x: torch.Tensor,
    steps: int,
    encoder: str,
    spiking: bool,
    generator: torch.Generator | None = None,
    frames: bool = False,
) -> torch.Tensor:
    """``x[B, ...] -> [T, B, ...]``: encoded for a spiking model, ``T = 1`` for an ANN twin.

    For a data set of spike frames (``frames=True``, ``x[B, T, ...]``, e.g. N-MNIST) the
    spiking model gets the frames time-major, and the ANN twin their mean over time as
    one frame.
    """
    if frames and not spiking:
        return x.float().mean(1).unsqueeze(0)
    if not spiking:
        return x.unsqueeze(0)
    return get_encoder(encoder, frames=frames)(x, steps, generator)
