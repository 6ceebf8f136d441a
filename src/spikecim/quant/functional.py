"""Uniform quantisers as pure functions, one body for every variant.

A uniform quantiser with step ``scale`` Δ, zero point z and integer range [qmin, qmax]
(Jacob et al. 2018, "Quantization and training of neural networks for efficient
integer-arithmetic-only inference", eqs. 1-2; torch's ``fake_quantize_per_tensor_affine``):

    q = clamp(round(x / Δ) + z, qmin, qmax)        (round half to even)
    x̂ = (q − z) · Δ

Symmetric quantisers have z = 0; asymmetric ones a z that puts the real 0 on the grid.
:func:`levels` is the one body: it multiplies by the inverse step (as torch's kernels do:
``inv_scale = 1 / scale``, then ``x · inv_scale``), rounds, shifts and clips. What varies is
injected: where the inverse step comes from (:func:`quantize_to_int` and
:func:`fake_quantize` take Δ, a converter may pass its own gain), its granularity (one Δ per
tensor, per channel along ``axis``, or per group of ``group_size`` elements along ``axis``:
:func:`expand_qparam` broadcasts it) and the gradient (``ste``):

- ``"saturated"``: straight-through inside [qmin, qmax], 0 outside (Hubara et al. 2016;
  what torch's fake quantisation returns),
- ``"identity"``: straight-through everywhere, clipping included (Bengio et al. 2013, the
  converters of the analog crossbar),
- ``None``: the true gradient of rounding, 0.
"""

from __future__ import annotations

from typing import Literal

import torch

from spikecim.autograd import Function

__all__ = [
    "STE",
    "dequantize",
    "expand_qparam",
    "fake_quantize",
    "levels",
    "quantize_to_int",
]

STE = Literal["saturated", "identity"] | None


class _RoundSTE(Function):
    """round(x) forward, identity backward (forward and context apart, a vmap rule generated:
    ``torch.func``'s transforms take it)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.round(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad


def levels(
    x: torch.Tensor,
    inv_scale: float | torch.Tensor,
    zero_point: int | torch.Tensor = 0,
    qmin: int | None = None,
    qmax: int | None = None,
    ste: STE = "saturated",
    inplace: bool = False,
) -> torch.Tensor:
    """The integer levels ``clamp(round(x·inv_scale) + zero_point, qmin, qmax)`` as floats.

    ``inv_scale`` and ``zero_point`` broadcast against ``x`` (see :func:`expand_qparam`).
    ``qmin = qmax = None`` skips the clipping where the caller knows the levels lie inside.
    ``inplace=True`` lets an inference call (no gradient through ``x``) work in ``x``'s
    memory. With a gradient, ``ste`` picks the backward pass (module docstring)."""
    clip = qmin is not None or qmax is not None
    if not (torch.is_grad_enabled() and x.requires_grad):  # inference: fewer passes, same values
        k = (x.mul_(inv_scale) if inplace else x * inv_scale).round_()
        if not (isinstance(zero_point, int) and zero_point == 0):
            k = k.add_(zero_point)
        return k.clamp_(qmin, qmax) if clip else k
    k = x * inv_scale
    k = torch.round(k) if ste is None else _RoundSTE.apply(k)
    if not (isinstance(zero_point, int) and zero_point == 0):
        k = k + zero_point
    if not clip:
        return k
    if ste == "identity":
        return k - (k - k.clamp(qmin, qmax)).detach()  # clip in level units, straight-through
    return k.clamp(qmin, qmax)  # clamp's gradient: 1 inside [qmin, qmax], 0 outside


def quantize_to_int(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    axis: int | None = None,
    group_size: int | None = None,
    dtype: torch.dtype = torch.int32,
) -> torch.Tensor:
    """``q = clamp(round(x/scale) + zero_point, qmin, qmax)`` as integers of ``dtype``
    (per tensor, per channel or per group: :func:`expand_qparam`). No gradient."""
    inv_scale, zero_point = _inverse(x, scale, zero_point, axis, group_size)
    with torch.no_grad():
        return levels(x, inv_scale, zero_point, qmin, qmax, ste=None).to(dtype)


def dequantize(
    q: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    axis: int | None = None,
    group_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``x̂ = (q − zero_point)·scale`` in ``dtype``."""
    scale = expand_qparam(_as_tensor(scale, dtype), q, axis, group_size)
    zero_point = expand_qparam(_as_tensor(zero_point, dtype), q, axis, group_size)
    return (q.to(dtype) - zero_point) * scale


def fake_quantize(
    x: torch.Tensor,
    scale: float | torch.Tensor,
    zero_point: int | torch.Tensor,
    qmin: int,
    qmax: int,
    axis: int | None = None,
    group_size: int | None = None,
    ste: STE = "saturated",
) -> torch.Tensor:
    """``(clamp(round(x/scale) + zero_point, qmin, qmax) − zero_point)·scale`` in ``x``'s
    dtype, differentiable by ``ste``. Per tensor it equals
    ``torch.fake_quantize_per_tensor_affine``, per channel (``axis``)
    ``torch.fake_quantize_per_channel_affine``; per group (``axis`` and ``group_size``)
    every ``group_size`` consecutive elements along ``axis`` share one step."""
    inv_scale, zp = _inverse(x, scale, zero_point, axis, group_size)
    k = levels(x, inv_scale, zp, qmin, qmax, ste=ste)
    scale = expand_qparam(_as_tensor(scale, x.dtype), x, axis, group_size)
    return (k - zp) * scale


def expand_qparam(
    p: torch.Tensor, x: torch.Tensor, axis: int | None = None, group_size: int | None = None
) -> torch.Tensor:
    """A step or zero point shaped to broadcast against ``x``.

    - per tensor (``axis`` None): ``p`` as given (a scalar or already broadcastable);
    - per channel (``axis``): ``p`` has ``x.shape[axis]`` elements, one per index along ``axis``;
    - per group (``axis`` and ``group_size``): along ``axis`` ``p`` has
      ``x.shape[axis] // group_size`` entries, element i takes entry ``i // group_size``;
      ``p`` is 1-D (the same for every other index) or has ``x``'s rank (then its other
      dimensions broadcast against ``x``'s, e.g. one group scale per output channel).
    """
    if axis is None:
        return p
    axis = axis % x.dim()
    size = x.shape[axis]
    if group_size is not None:
        if group_size <= 0 or size % group_size:
            raise ValueError(f"group_size {group_size} must divide the size {size} along axis {axis}")
        size //= group_size
    if p.dim() <= 1:
        if p.numel() != size:
            raise ValueError(f"expected {size} scale or zero-point values along axis {axis}, got {p.numel()}")
        shape = [1] * x.dim()
        shape[axis] = size
        p = p.reshape(shape)
    elif p.dim() != x.dim() or p.shape[axis] != size:
        raise ValueError(
            f"a {p.dim()}-d scale must have x's rank {x.dim()} and {size} entries along axis {axis}"
        )
    return p if group_size is None else p.repeat_interleave(group_size, dim=axis)


def _as_tensor(p: float | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return p.to(dtype) if isinstance(p, torch.Tensor) else torch.tensor(p, dtype=dtype)


def _inverse(x, scale, zero_point, axis, group_size):
    """``1/scale`` (in ``x``'s dtype, as torch computes it) and the zero point, broadcast."""
    inv = torch.reciprocal(_as_tensor(scale, x.dtype))
    zp = zero_point
    if isinstance(zero_point, torch.Tensor):
        zp = expand_qparam(zero_point.to(x.dtype), x, axis, group_size)
    return expand_qparam(inv, x, axis, group_size), zp
