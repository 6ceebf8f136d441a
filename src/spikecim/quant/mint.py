"""MINT: one learnable scale per layer, shared by the weights and the membrane
(docs/references.md#mint; Yin et al., ASP-DAC 2024; public code ``RuokaiYin/MINT_Quantization``,
``training_utils.py``: ``w_q``, ``u_q``).

With n = 2^(b−1) − 1 levels each side of 0 and the layer's scale α::

    q(x) = round(clamp(f(x)/α, −1, 1)·n) · α/n          f = tanh (the paper's code) or identity

straight-through rounding (the clamp's own gradient, 1 inside and 0 outside, is kept, so α
learns from the saturated entries), α initialised to 2·mean|W|/√n. The quantised value is
k·s with the integer level k ∈ [−n, n] and the step s = α/n.

Every function rounds through :func:`spikecim.quant.levels`, the one quantiser body:

- :func:`mint_quantize`: the paper's formula, in the paper's order of operations;
- :func:`mint_step_quantize`: ``clamp(round(x/s), −n, n)·s`` for a given step s, what the
  integer-compatible membrane uses (with f = identity the two are the same function; this
  order keeps x/s exact when s is a power of two, which the integer path needs);
- :func:`power_of_two_step`: s rounded to the nearest power of two (straight-through), so
  that the fake-quantised model's float arithmetic is exact and equals the integer path
  bit for bit (docs/quant.md, "MINT's integer path").

:func:`memory_footprint` counts weights and membranes at their bit widths against 32 bits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from spikecim.errors import SpikecimError
from spikecim.quant.functional import levels

__all__ = [
    "MINT_BITS",
    "Footprint",
    "Squash",
    "memory_footprint",
    "mint_alpha_init",
    "mint_levels",
    "mint_quantize",
    "mint_step_quantize",
    "n_levels",
    "power_of_two_step",
]

Squash = Literal["tanh", "clamp"]
MINT_BITS = (2, 3, 4, 5, 6, 7, 8)


def n_levels(bits: int) -> int:
    """n = 2^(b−1) − 1, the largest integer level (b ≥ 2)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in MINT_BITS:
        raise SpikecimError(f"mint.bits: must be an integer from 2 to 8, got {bits!r}")
    return 2 ** (bits - 1) - 1


def mint_alpha_init(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """α₀ = 2·mean|W| / √n (the reference code's ``initial_beta``), a 0-d tensor."""
    return (weight.detach().abs().mean() * 2 / math.sqrt(n_levels(bits))).clone()


def mint_levels(
    x: torch.Tensor, alpha: torch.Tensor | float, bits: int, squash: Squash = "tanh"
) -> torch.Tensor:
    """The integer levels k = round(clamp(f(x)/α, −1, 1)·n) as floats, straight-through."""
    n = n_levels(bits)
    fx = torch.tanh(x) if squash == "tanh" else x
    return levels(torch.clamp(fx / alpha, -1.0, 1.0), n, ste="identity")


def mint_quantize(
    x: torch.Tensor, alpha: torch.Tensor | float, bits: int, squash: Squash = "tanh"
) -> torch.Tensor:
    """q(x) = round(clamp(f(x)/α, −1, 1)·n)·α/n (module docstring)."""
    return mint_levels(x, alpha, bits, squash) * alpha / n_levels(bits)


def mint_step_quantize(x: torch.Tensor, step: torch.Tensor | float, bits: int) -> torch.Tensor:
    """clamp(round(x/s), −n, n)·s: the clamp variant of q with α = n·s, rounded on x/s.

    Straight-through inside [−n, n] and 0 outside (the clamp's gradient), so ``step`` learns
    from the saturated entries as α does."""
    n = n_levels(bits)
    return levels(x, 1.0 / step, 0, -n, n, ste="saturated") * step


def power_of_two_step(alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """s = 2^round(log2(α/n)) forward, the gradient of α/n backward."""
    s = alpha / n_levels(bits)
    return s + (torch.exp2(torch.round(torch.log2(s.detach()))) - s.detach())


@dataclass(frozen=True)
class Footprint:
    """Weights and membranes at their bit widths against ``reference_bits`` each."""

    bits: int
    reference_bits: int

    @property
    def reduction(self) -> float:
        """1 − bits/reference_bits: 0.9375 for 2-bit weights and membranes against 32."""
        return 1.0 - self.bits / self.reference_bits if self.reference_bits else 0.0


def memory_footprint(
    weights: Iterable[tuple[int, int]], membranes: Iterable[tuple[int, int]], reference_bits: int = 32
) -> Footprint:
    """The memory of ``weights`` and ``membranes``, each a list of (elements, bits), against
    the same elements at ``reference_bits``. 2-bit weights and membranes: 93.75 % smaller."""
    items = [(int(c), int(b)) for c, b in [*weights, *membranes]]
    if any(c < 0 or b < 1 for c, b in items):
        raise SpikecimError("memory_footprint: element counts must be >= 0 and bits >= 1")
    return Footprint(sum(c * b for c, b in items), sum(c * reference_bits for c, _ in items))
