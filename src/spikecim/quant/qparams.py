"""``QParams``: what a quantiser needs (step, zero point, integer range, granularity), and
the one formula that turns an observed range into them.

From a range [lo, hi] (torch ``ao/quantization/observer.py``, ``_calculate_qparams``; the
range is first widened to contain 0 so that 0 is exactly representable):

- symmetric: Δ = max(−lo, hi) / ((qmax − qmin)/2), z = 0 (or the middle of an unsigned range);
- asymmetric: Δ = (hi − lo)/(qmax − qmin), z = clamp(qmin − round(lo/Δ), qmin, qmax).

Δ is at least ``eps`` (float32's machine epsilon, as torch), so an all-zero range gives a
usable quantiser.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from spikecim.quant.functional import STE, dequantize, fake_quantize, quantize_to_int

__all__ = ["QParams", "int_range", "qparams_from_range"]

_EPS = float(torch.finfo(torch.float32).eps)


def int_range(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of a ``bits``-bit integer: signed [−2^(b−1), 2^(b−1) − 1] (``narrow``:
    [−(2^(b−1) − 1), 2^(b−1) − 1], symmetric about 0), unsigned [0, 2^b − 1]. ``bits`` is an
    integer from 1 (2 when ``narrow``: one bit holds no level besides 0) to 32."""
    low = 2 if signed and narrow else 1
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not low <= bits <= 32:
        raise ValueError(f"bits must be an integer from {low} to 32, got {bits!r}")
    if not signed:
        return 0, 2**bits - 1
    hi = 2 ** (bits - 1) - 1
    return (-hi if narrow else -hi - 1), hi


@dataclass(frozen=True)
class QParams:
    """Parameters of a uniform quantiser: ``scale`` (step Δ) and ``zero_point`` (scalars,
    or one per channel along ``axis``, or per group of ``group_size`` along ``axis``) and the
    integer range [``qmin``, ``qmax``]. Checked when built."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int
    axis: int | None = None
    group_size: int | None = None

    def __post_init__(self):
        if not self.qmin < self.qmax:
            raise ValueError(f"QParams: qmin ({self.qmin}) must be < qmax ({self.qmax})")
        if not bool(((self.scale > 0) & torch.isfinite(self.scale)).all()):
            raise ValueError("QParams: scale must be finite and > 0 (is the range finite?)")
        if self.scale.shape != self.zero_point.shape:
            raise ValueError(
                f"QParams: scale {tuple(self.scale.shape)} and zero_point "
                f"{tuple(self.zero_point.shape)} must have one shape"
            )
        if self.group_size is not None and self.axis is None:
            raise ValueError("QParams: group_size needs an axis")

    def fake_quantize(self, x: torch.Tensor, ste: STE = "saturated") -> torch.Tensor:
        """:func:`~spikecim.quant.fake_quantize` with these parameters."""
        return fake_quantize(
            x, self.scale, self.zero_point, self.qmin, self.qmax, self.axis, self.group_size, ste
        )

    def quantize_to_int(self, x: torch.Tensor, dtype: torch.dtype = torch.int32) -> torch.Tensor:
        return quantize_to_int(
            x, self.scale, self.zero_point, self.qmin, self.qmax, self.axis, self.group_size, dtype
        )

    def dequantize(self, q: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(q, self.scale, self.zero_point, self.axis, self.group_size, dtype)


def qparams_from_range(
    lo: torch.Tensor | float,
    hi: torch.Tensor | float,
    qmin: int,
    qmax: int,
    symmetric: bool = True,
    axis: int | None = None,
    group_size: int | None = None,
    eps: float = _EPS,
) -> QParams:
    """The step and zero point that cover [lo, hi] (module docstring); ``lo``/``hi`` are
    scalars or one value per channel/group."""
    lo = torch.as_tensor(lo, dtype=torch.float32)
    hi = torch.as_tensor(hi, dtype=torch.float32)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)  # 0 lies inside the range
    if symmetric:
        scale = torch.maximum(-lo, hi) / ((qmax - qmin) / 2)
        scale = torch.clamp(scale, min=eps)
        zero_point = torch.full_like(scale, 0 if qmin < 0 else (qmin + qmax + 1) // 2)
    else:
        scale = torch.clamp((hi - lo) / float(qmax - qmin), min=eps)
        zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax)
    return QParams(scale, zero_point.to(torch.int32), qmin, qmax, axis, group_size)
