"""Uniform quantisers with a straight-through gradient (DAC, ADC, weights, conductance levels).

Q(v) = clip(round(v/Δ)·Δ, −bound, bound) with Δ = bound / (2^(bits−1) − 1): the symmetric
grid of aihwkit's IOParameters (``res = 1/(2^bits − 2)`` over ``2·bound``, REFERENCE §3).
A 1-bit converter degenerates to the ternary grid {−bound, 0, bound}. The backward pass
is the identity (straight-through), so hardware-aware training and BN fine-tuning can
differentiate through the converters.
"""

from __future__ import annotations

import torch

__all__ = ["abs_max_scale", "quantize", "step_size"]


def step_size(bits: int, bound: float | torch.Tensor) -> float | torch.Tensor:
    """Δ of a ``bits``-bit symmetric converter over ±bound."""
    return bound / max(2 ** (bits - 1) - 1, 1)


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def quantize(
    x: torch.Tensor, bits: int, bound: float | torch.Tensor, normalised: bool = False
) -> torch.Tensor:
    """Round ``x`` to the ``bits``-bit grid over ±bound and clip to the bounds
    (``normalised=True`` returns Q(x)/bound, on the grid over ±1)."""
    n = max(2 ** (bits - 1) - 1, 1)
    if not (torch.is_grad_enabled() and x.requires_grad):  # inference: fewer passes, same values
        k = (x * (n / bound)).round_().clamp_(-n, n).div_(n)
        return k if normalised else k.mul_(bound)
    k = _RoundSTE.apply(x * (n / bound))
    # Clip in level units (straight-through), then k/n·bound: the ends land exactly on ±bound.
    k = k - (k - k.clamp(-n, n)).detach()
    return k / n if normalised else k / n * bound


def abs_max_scale(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Per-vector abs-max (aihwkit noise management ``ABS_MAX``); 1 where the vector is zero."""
    x = x.detach()
    s = torch.maximum(x.amax(dim=dim, keepdim=True), -x.amin(dim=dim, keepdim=True))  # no |x| copy
    return torch.where(s > 0, s, torch.ones_like(s))
