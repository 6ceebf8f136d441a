"""The crossbar's converters (DAC, ADC) on :mod:`spikecim.quant`'s one quantiser body.

A converter is symmetric over ±bound with n = 2^(bits−1) − 1 levels each side of zero:
the grid of aihwkit's IOParameters (``res = 1/(2^bits − 2)`` over ``2·bound``,
``aihwkit/simulator/parameters/io.py``; docs/references.md#adc-dac). A 1-bit converter degenerates to the ternary grid
{−bound, 0, bound}. Its levels are :func:`spikecim.quant.levels` with inverse step
n/bound, zero point 0, range [−n, n] and the straight-through gradient through rounding
*and* clipping (``ste="identity"``), so hardware-aware training and BN fine-tuning
differentiate through the converters. The crossbar keeps signals in level units between
its stages and applies the step sizes once, in its digital stage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spikecim.quant import levels

__all__ = ["Converter", "abs_max_scale", "level_count", "nonzero_scale", "quantize"]


def level_count(bits: int) -> int:
    """n = 2^(bits−1) − 1 levels on each side of zero (1 for a 1-bit converter)."""
    return max(2 ** (bits - 1) - 1, 1)


@dataclass(frozen=True)
class Converter:
    """One converter stage of a crossbar: ``bits`` and its full-scale ``bound`` in
    normalised units (None: the largest possible signal)."""

    bits: int
    bound: float | None = None


def quantize(
    x: torch.Tensor, bits: int, bound: float | torch.Tensor, normalised: bool = False
) -> torch.Tensor:
    """Round ``x`` to the ``bits``-bit grid over ±bound and clip to the bounds
    (``normalised=True`` returns Q(x)/bound, on the grid over ±1)."""
    n = level_count(bits)
    k = levels(x, n / bound, 0, -n, n, ste="identity")
    # k/n·bound: the ends land exactly on ±bound.
    return k / n if normalised else k / n * bound


def abs_max_scale(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Per-vector abs-max (aihwkit noise management ``ABS_MAX``); 1 where the vector is zero."""
    x = x.detach()
    s = torch.maximum(x.amax(dim=dim, keepdim=True), -x.amin(dim=dim, keepdim=True))  # no |x| copy
    return nonzero_scale(s)


def nonzero_scale(s: torch.Tensor) -> torch.Tensor:
    """An abs-max ``s`` with zeros (all-zero vectors) replaced by 1."""
    return torch.where(s > 0, s, torch.ones_like(s))
