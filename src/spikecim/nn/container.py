"""Time folding: stateless layers run once over ``T*B``, neurons over ``[T, B, ...]``.

:class:`Sequential` holds plain torch layers (``nn.Linear``, ``nn.Conv2d``, pooling,
BatchNorm, Flatten...) next to :class:`TemporalModule` children (neurons, residual blocks).
It keeps the activation folded as ``[T*B, ...]`` through runs of stateless layers and unfolds
it to ``[T, B, ...]`` only for temporal children, so no stateless layer loops over time and
every synaptic layer stays a plain torch module (what ``to_analog``, tracing and NIR export
look for).
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.nn.neurons import TemporalModule

__all__ = ["Sequential", "apply_folded", "fold", "unfold"]


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.unflatten(0, (steps, x.shape[0] // steps))


def apply_folded(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless module to ``x[T, B, ...]`` in one call over ``T*B``."""
    return unfold(module(fold(x)), x.shape[0])


class Sequential(nn.Sequential, TemporalModule):
    """A time-major ``nn.Sequential``: ``[T, B, ...] -> [T, B, ...]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[0]
        h, folded = x, False
        for layer in self:
            if isinstance(layer, TemporalModule):
                if folded:
                    h, folded = unfold(h, steps), False
                h = layer(h)
            else:
                if not folded:
                    h, folded = fold(h), True
                h = layer(h)
        return unfold(h, steps) if folded else h
