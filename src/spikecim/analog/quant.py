"""Uniform quantisers with a straight-through gradient (DAC, ADC, weights, conductance levels).

Q(v) = clip(round(v/Δ)·Δ, −bound, bound) with Δ = bound / (2^(bits−1) − 1): the symmetric
grid of aihwkit's IOParameters (``res = 1/(2^bits − 2)`` over ``2·bound``;
docs/references.md#adc-dac).
A 1-bit converter degenerates to the ternary grid {−bound, 0, bound}. The backward pass
is the identity (straight-through), so hardware-aware training and BN fine-tuning can
differentiate through the converters.

:func:`to_levels` is the one body: the integer level k = clip(round(v·n/bound), −n, n);
:func:`quantize` is k·Δ (or k/n). The crossbar keeps signals in level units between its
stages and applies the step sizes once, in its digital stage.
"""

from __future__ import annotations

import torch

__all__ = ["abs_max_scale", "level_count", "nonzero_scale", "quantize", "to_levels"]


def level_count(bits: int) -> int:
    """n = 2^(bits−1) − 1 levels on each side of zero (1 for a 1-bit converter)."""
    return max(2 ** (bits - 1) - 1, 1)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def to_levels(
    x: torch.Tensor, n: int, gain: float | torch.Tensor, overwrite: bool = False, clip: bool = True
) -> torch.Tensor:
    """Integer levels ``clip(round(x·gain), −n, n)`` as floats (gain = n/bound).

    ``overwrite=True`` lets an inference call (no gradient needed) work in ``x``'s memory;
    ``clip=False`` skips the clipping where the caller knows |x·gain| ≤ n (abs-max scaling).
    With a gradient the rounding and clipping are straight-through."""
    if not (torch.is_grad_enabled() and x.requires_grad):  # inference: fewer passes, same values
        k = (x.mul_(gain) if overwrite else x * gain).round_()
        return k.clamp_(-n, n) if clip else k
    k = _RoundSTE.apply(x * gain)
    return k - (k - k.clamp(-n, n)).detach() if clip else k  # clip in level units, straight-through


def quantize(
    x: torch.Tensor, bits: int, bound: float | torch.Tensor, normalised: bool = False
) -> torch.Tensor:
    """Round ``x`` to the ``bits``-bit grid over ±bound and clip to the bounds
    (``normalised=True`` returns Q(x)/bound, on the grid over ±1)."""
    n = level_count(bits)
    k = to_levels(x, n, n / bound)
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
