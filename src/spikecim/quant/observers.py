"""Observers: collect statistics of a tensor over calibration batches, then compute the
quantiser's parameters (torch ``ao/quantization/observer.py``: ``forward`` updates the
statistics, ``calculate_qparams`` computes the parameters).

An :class:`Observer` has two steps and holds nothing else:

- ``observe(x)``: update the statistics with one batch (no gradient, ``x`` is not kept:
  a copy is, where the statistic needs the values);
- ``compute_range() -> (lo, hi)``: the range the statistic says should be represented;
  ``compute_qparams() -> QParams`` turns it into a step and zero point
  (:func:`~spikecim.quant.qparams_from_range`).

With ``axis`` the statistic is kept per channel (index along ``axis``), otherwise for the
whole tensor. Built-ins: :class:`MinMaxObserver` (running min and max),
:class:`AbsMaxObserver` (running max |x|, a symmetric range), :class:`PercentileObserver`
(a percentile of the values or of |x|, linear interpolation as ``numpy.percentile``; it
keeps every observed value).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from spikecim.quant.qparams import QParams, qparams_from_range

__all__ = ["AbsMaxObserver", "MinMaxObserver", "Observer", "PercentileObserver"]


class Observer(ABC):
    """Observe, then compute. ``qmin``/``qmax``: the integer range of the quantiser the
    parameters are for; ``symmetric``: zero point 0 (a range symmetric about 0);
    ``axis``: per-channel statistics along this dimension (None: per tensor)."""

    def __init__(self, qmin: int = -128, qmax: int = 127, symmetric: bool = True, axis: int | None = None):
        if not qmin < qmax:
            raise ValueError(f"observer: qmin ({qmin}) must be < qmax ({qmax})")
        self.qmin, self.qmax, self.symmetric, self.axis = qmin, qmax, symmetric, axis
        self.count = 0  # batches observed

    def observe(self, x: torch.Tensor) -> None:
        """Update the statistics with ``x``. An empty ``x`` holds no statistic and is skipped
        (as torch's observers return an empty input untouched)."""
        if x.numel() == 0:
            return
        with torch.no_grad():
            self._update(x.detach())
        self.count += 1

    def compute_qparams(self) -> QParams:
        """The quantiser parameters for the range observed so far."""
        lo, hi = self.compute_range()
        return qparams_from_range(lo, hi, self.qmin, self.qmax, self.symmetric, self.axis)

    @abstractmethod
    def compute_range(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) to represent: scalars, or one per channel along ``axis``."""

    @abstractmethod
    def _update(self, x: torch.Tensor) -> None: ...

    def _check_observed(self) -> None:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__}: compute_range before any observe(x)")

    def _per_channel(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``[channels, elements]`` (per channel) or ``[1, elements]``."""
        if self.axis is None:
            return x.reshape(1, -1)
        return x.movedim(self.axis, 0).reshape(x.shape[self.axis], -1)


class MinMaxObserver(Observer):
    """Running minimum and maximum (torch ``MinMaxObserver`` / ``PerChannelMinMaxObserver``)."""

    def __init__(self, qmin: int = -128, qmax: int = 127, symmetric: bool = False, axis: int | None = None):
        super().__init__(qmin, qmax, symmetric, axis)
        self.min_val: torch.Tensor | None = None
        self.max_val: torch.Tensor | None = None

    def _update(self, x):
        v = self._per_channel(x)
        lo, hi = v.amin(dim=1), v.amax(dim=1)
        if self.min_val is None:
            self.min_val, self.max_val = lo, hi
        else:
            self.min_val, self.max_val = torch.minimum(self.min_val, lo), torch.maximum(self.max_val, hi)

    def compute_range(self):
        self._check_observed()
        return _squeeze(self.min_val, self.axis), _squeeze(self.max_val, self.axis)


class AbsMaxObserver(Observer):
    """Running max |x|; the range is [−max|x|, max|x|]."""

    def __init__(self, qmin: int = -128, qmax: int = 127, axis: int | None = None):
        super().__init__(qmin, qmax, True, axis)
        self.abs_max: torch.Tensor | None = None

    def _update(self, x):
        m = self._per_channel(x).abs().amax(dim=1)
        self.abs_max = m if self.abs_max is None else torch.maximum(self.abs_max, m)

    def compute_range(self):
        self._check_observed()
        m = _squeeze(self.abs_max, self.axis)
        return -m, m


class PercentileObserver(Observer):
    """A percentile of the observed values, linear interpolation (``numpy.percentile``'s
    default). ``absolute=True``: ``percentile`` of |x|, range [−p, p] (symmetric);
    otherwise the range is [P(100 − percentile), P(percentile)]. Every value is kept (as
    float32) until :meth:`compute_range`."""

    def __init__(
        self,
        percentile: float = 99.99,
        qmin: int = -128,
        qmax: int = 127,
        absolute: bool = True,
        axis: int | None = None,
    ):
        if not 0 <= percentile <= 100:
            raise ValueError(f"PercentileObserver: percentile must be in [0, 100], got {percentile}")
        super().__init__(qmin, qmax, absolute, axis)
        self.percentile, self.absolute = percentile, absolute
        self.values: list[torch.Tensor] = []

    def _update(self, x):
        v = x.abs() if self.absolute else x.clone()  # a copy: x may be a work tensor reused later
        self.values.append(self._per_channel(v).float())

    def compute_range(self):
        self._check_observed()
        vals = self.values[0] if len(self.values) == 1 else torch.cat(self.values, dim=1)
        his, los = [], []
        for row in vals.cpu().numpy():  # one row per channel (one row per tensor)
            his.append(percentile(row, self.percentile))
            if not self.absolute:
                los.append(percentile(row, 100.0 - self.percentile))
        hi = _squeeze(torch.tensor(his, dtype=torch.float64), self.axis)
        lo = -hi if self.absolute else _squeeze(torch.tensor(los, dtype=torch.float64), self.axis)
        return lo, hi


def percentile(vals: np.ndarray, pct: float) -> float:
    """``np.percentile(vals, pct)`` (linear interpolation), by partial selection in place:
    the same value without sorting or copying the (often tens of millions of) values.
    ``vals`` is reordered."""
    pos = pct / 100.0 * (vals.size - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    vals.partition([lo, hi] if hi != lo else [lo])
    a, b = float(vals[lo]), float(vals[hi])
    return a + (b - a) * (pos - lo)


def _squeeze(v: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Per tensor: a 0-d tensor; per channel: 1-d."""
    return v.reshape(()) if axis is None else v
