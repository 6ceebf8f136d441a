"""Building blocks shared by the model files: width scaling and size checks.

Every model scales its channel and hidden-unit counts by one ``width`` multiplier, so a
test or a quick sweep can shrink a published architecture without changing its topology:
``channels = max(1, round(base * width))``.
"""

from __future__ import annotations

import math

from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn.conv import Conv2d
from spikecim.nn.norm import BatchNorm2d

__all__ = ["check_hidden", "check_width", "conv_bn", "scaled"]


def check_width(name: str, width: float) -> float:
    """Validate a width multiplier at the door."""
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise SpikecimError(f"model.{name}.width: must be a number > 0, got {width!r}") from None
    if not w > 0:
        raise SpikecimError(f"model.{name}.width: must be > 0, got {width}")
    if not math.isfinite(w):
        raise SpikecimError(f"model.{name}.width: must be a finite number > 0, got {width}")
    return w


def check_hidden(name: str, hidden) -> tuple[int, ...]:
    """Validate hidden sizes at the door: a list of positive integers (empty: none), before the
    width multiplier (which would turn 0 or -3 into one unit)."""
    if not isinstance(hidden, list | tuple) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
    ):
        raise SpikecimError(f"model.{name}.hidden: must be a list of positive integers, got {hidden!r}")
    return tuple(hidden)


def scaled(base: int, width: float) -> int:
    """``max(1, round(base * width))``: a channel or unit count under the width multiplier."""
    return max(1, round(base * width))


def conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """``Conv2d(bias=False) -> BatchNorm2d``, 'same' padding for odd kernels (spikecim's
    :class:`~spikecim.nn.Conv2d`: event-driven on spikes)."""
    return [Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), BatchNorm2d(out_ch)]
