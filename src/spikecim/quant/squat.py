"""SQUAT: the neuron state snapped to a fixed set of levels after every update
(docs/references.md#squat; Venkatesh, Marinescu and Eshraghian, NICE 2024; snnTorch 1.0
``snntorch/functional/quant.py``, ``state_quant``).

:func:`state_levels` builds the 2^b levels exactly as ``state_quant`` does (same sums in the
same order, in Python floats, then one float32 tensor; the uniform levels by
``torch.linspace``), between min = −θ(1 + lower_limit) and max = θ(1 + upper_limit):

- ``uniform``: linspace(min, max, 2^b);
- ``threshold-centred``: n_lo = ⌊L·(θ − min)/(max − min)⌋ levels from min up to θ and
  L − n_lo from θ up to max, spaced geometrically with ratio m (0.05, 0.1, 0.3, 0.5, 0.7,
  0.9, 0.925 for 1 to 7 bits, 0.95 from 8), densest next to θ; θ itself is not a level.

:func:`snap` is the quantiser: the nearest level forward (the lowest of two equally near
ones, as ``state_quant``'s ``torch.min``), identity backward.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from spikecim.errors import SpikecimError

__all__ = ["LEVELS", "StateQuantizer", "default_multiplier", "snap", "state_levels"]

LEVELS = ("uniform", "threshold-centred")
Levels = Literal["uniform", "threshold-centred"]
_MULTIPLIERS = {1: 0.05, 2: 0.1, 3: 0.3, 4: 0.5, 5: 0.7, 6: 0.9, 7: 0.925}


def default_multiplier(bits: int) -> float:
    """snnTorch's ratio of neighbouring gaps for ``bits`` (0.95 from 8 bits)."""
    return _MULTIPLIERS.get(bits, 0.95)


def state_levels(
    bits: int,
    threshold: float = 1.0,
    levels: Levels = "uniform",
    lower_limit: float = 0.0,
    upper_limit: float = 0.2,
    multiplier: float | None = None,
) -> torch.Tensor:
    """The 2^``bits`` levels, ascending, float32 (module docstring)."""
    _check(bits, threshold, levels, lower_limit, upper_limit)
    count = 2**bits
    lo = -(threshold + threshold * lower_limit)
    hi = threshold + threshold * upper_limit
    if levels == "uniform":
        return torch.linspace(lo, hi, count)
    m = default_multiplier(bits) if multiplier is None else multiplier
    n_lo = math.floor(count * ((threshold - lo) / (hi - lo)))
    n_hi = count - n_lo
    values: list[float] = []
    if n_lo:
        room = _geometric_sum(m, n_lo) / (threshold - lo)
        v = lo
        for j in range(n_lo):
            values.append(v)
            v += m**j / room
    if n_hi:
        room = _geometric_sum(m, n_hi) / (hi - threshold)
        v = threshold
        for j in reversed(range(n_hi)):
            v += m**j / room
            values.append(v)
    return torch.tensor(values)


def snap(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Each entry of ``x`` replaced by its nearest level (``levels`` ascending), the lowest
    index on a tie in |level − x|; straight-through gradient."""
    return _nearest(x.detach(), levels.to(x.device, x.dtype)) + (x - x.detach())  # exact levels, gradient 1


class StateQuantizer:
    """A membrane quantiser for a neuron's params: ``q(v) = snap(v, levels)``."""

    def __init__(self, levels: torch.Tensor):
        self.levels = levels

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return snap(v, self.levels)


def _nearest(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    # the neighbours below and above x, then back over levels at the same float distance
    # (argmin over |levels − x| takes the first), without a [*x.shape, L] tensor
    hi = torch.searchsorted(levels, x.contiguous()).clamp_(1, len(levels) - 1)
    lo = hi - 1
    d_lo, d_hi = (levels[lo] - x).abs(), (levels[hi] - x).abs()
    idx = torch.where(d_lo <= d_hi, lo, hi)
    best = torch.minimum(d_lo, d_hi)
    while True:
        prev = (idx - 1).clamp_(min=0)
        back = (idx > 0) & ((levels[prev] - x).abs() == best)
        if not bool(back.any()):
            return levels[idx]
        idx = torch.where(back, prev, idx)


def _geometric_sum(m: float, count: int) -> float:
    total = 0.0
    for j in reversed(range(count)):
        total += m**j
    return total


def _check(bits, threshold, levels, lower_limit, upper_limit) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise SpikecimError(f"squat.bits: must be an integer from 1 to 8, got {bits!r}")
    if levels not in LEVELS:
        raise SpikecimError(f"squat.levels: must be one of {', '.join(LEVELS)}, got {levels!r}")
    if not float(threshold) > 0:
        raise SpikecimError(f"squat: the neuron's threshold must be > 0, got {threshold}")
    for name, v in (("lower_limit", lower_limit), ("upper_limit", upper_limit)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise SpikecimError(f"squat.{name}: must be a finite number >= 0, got {v!r}")
