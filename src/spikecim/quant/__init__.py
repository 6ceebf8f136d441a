"""Quantisation: uniform quantisers as pure functions, their parameters, and observers that
calibrate them from data (docs/quant.md).

- :func:`levels` (the one body), :func:`fake_quantize`, :func:`quantize_to_int`,
  :func:`dequantize`: symmetric or asymmetric, per tensor / per channel / per group,
  with a choice of straight-through gradient;
- :class:`QParams` and :func:`qparams_from_range`, :func:`int_range`;
- :class:`Observer` (observe, then compute) with :class:`MinMaxObserver`,
  :class:`AbsMaxObserver`, :class:`PercentileObserver`, switched on by :func:`observing`.

Torch only: neither ``spikecim.analog`` nor ``spikecim.hw`` is imported, so ``spikecim.nn``
and the analog converters can share these functions.
"""

from spikecim.quant.functional import STE, dequantize, expand_qparam, fake_quantize, levels, quantize_to_int
from spikecim.quant.observers import AbsMaxObserver, MinMaxObserver, Observer, PercentileObserver
from spikecim.quant.observing import observing
from spikecim.quant.qparams import QParams, int_range, qparams_from_range

__all__ = [
    "STE",
    "AbsMaxObserver",
    "MinMaxObserver",
    "Observer",
    "PercentileObserver",
    "QParams",
    "dequantize",
    "expand_qparam",
    "fake_quantize",
    "int_range",
    "levels",
    "observing",
    "qparams_from_range",
    "quantize_to_int",
]
