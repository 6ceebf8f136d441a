"""Weight-only group-wise quantisation of synaptic layers, and round-to-nearest (RTN).

A weight ``W`` of a linear layer ``[out, in]`` or a convolution ``[out, in, k...]`` is seen as
the matrix ``[out, fan_in]`` (a convolution's input channels and kernel positions flattened in
that order). Every ``group_size`` consecutive entries of a row share one step Δ and zero
point z (one pair per output channel and input group), from the group's range through
:func:`~spikecim.quant.qparams_from_range`:

- asymmetric (the default, as TesseraQ and the weight-only LLM quantisers it builds on):
  integers [0, 2^b − 1], Δ = (max − min)/(2^b − 1), z = clamp(−round(min/Δ), 0, 2^b − 1);
- symmetric: integers [−2^(b−1), 2^(b−1) − 1], Δ = max|W|/(2^(b−1) − 1/2), z = 0.

The range is widened to contain 0 first (torch's observer convention, so 0 is exact). A
layer whose ``fan_in`` is not a multiple of ``group_size`` (e.g. a first convolution with
9 inputs per output) takes one group per output channel. RTN is
``(clamp(round(W/Δ) + z, qmin, qmax) − z)·Δ`` through :func:`~spikecim.quant.fake_quantize`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from spikecim.quant.qparams import QParams, int_range, qparams_from_range

__all__ = ["WeightQuantSpec", "group_size_for", "quantizable_layers", "rtn_weight", "weight_qparams"]


@dataclass(frozen=True)
class WeightQuantSpec:
    """Weight-only quantisation: ``bits`` (2 to 8), ``group_size`` inputs per step (None:
    one step per output channel), ``symmetric`` or asymmetric integers."""

    bits: int
    group_size: int | None = 128
    symmetric: bool = False

    def __post_init__(self):
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, numbers.Integral)
            or not 2 <= self.bits <= 8
        ):
            raise ValueError(f"bits: must be an integer between 2 and 8, got {self.bits!r}")
        if self.group_size is not None and (
            isinstance(self.group_size, bool)
            or not isinstance(self.group_size, numbers.Integral)
            or self.group_size < 1
        ):
            raise ValueError(
                f"group_size: must be an integer >= 1 (or None for one group per row), got {self.group_size!r}"
            )

    @property
    def qrange(self) -> tuple[int, int]:
        return int_range(self.bits, signed=self.symmetric)


def group_size_for(fan_in: int, spec: WeightQuantSpec) -> int:
    """The group size a layer with ``fan_in`` inputs per output takes (module docstring)."""
    g = spec.group_size
    return g if g is not None and g < fan_in and fan_in % g == 0 else fan_in


def weight_qparams(weight: torch.Tensor, spec: WeightQuantSpec) -> QParams:
    """Group-wise step and zero point of ``weight``, on its ``[out, fan_in]`` view: a scale
    of shape ``[out, fan_in // group]`` along axis 1."""
    w = weight.detach().reshape(weight.shape[0], -1).float()
    g = group_size_for(w.shape[1], spec)
    groups = w.reshape(w.shape[0], -1, g)
    qmin, qmax = spec.qrange
    return qparams_from_range(
        groups.amin(-1), groups.amax(-1), qmin, qmax, symmetric=spec.symmetric, axis=1, group_size=g
    )


def rtn_weight(weight: torch.Tensor, spec: WeightQuantSpec) -> torch.Tensor:
    """``weight`` rounded to the nearest level of its group (a plain tensor, ``weight``'s shape)."""
    qp = weight_qparams(weight, spec)
    w = weight.detach().reshape(weight.shape[0], -1).float()
    return qp.fake_quantize(w, ste=None).reshape(weight.shape).to(weight.dtype)


def quantizable_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The synaptic layers of ``module`` whose static weight gets quantised, by name: every
    operator of the registry (:func:`spikecim.ops.find`) with a programmed weight of rank ≥ 2
    (linear and convolution layers, and their subclasses). A layer that quantises its own
    weight at every forward, marked by a ``weight_bits`` attribute (the ternary
    :class:`~spikecim.nn.bitlinear.BitLinear` of ``matmulfree-tiny``), is left out: it already
    computes with quantised (ternary) weights, which post-training rounding of its latent
    float weight would only perturb."""
    from spikecim.ops import find

    out = {}
    for name, m in module.named_modules():
        op = find(m)
        w = op.static_weight(m) if op is not None else None
        if isinstance(w, torch.Tensor) and w.dim() >= 2 and getattr(m, "weight_bits", None) is None:
            out[name] = m
    return out
