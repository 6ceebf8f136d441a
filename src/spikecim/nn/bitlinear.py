"""BitLinear: the ternary-weight, 8-bit-activation linear layer of the MatMul-free LM.

Zhu et al., "Scalable MatMul-free Language Modeling" (2024), public code
``ridgerchu/matmulfreellm`` (``mmfreelm/ops/bitnet.py``); docs/references.md#matmul-free-lm.

- the input is normalised, ``x̂ = RMSNorm(x)`` (ε = 1e-8, learned gain);
- activations are quantised per token to 8 bits: ``s_x = 127 / max|x̂|`` over the last
  dimension, ``x_q = clamp(round(x̂·s_x), −128, 127) / s_x``;
- weights are ternary: ``s_w = 1 / mean|W|`` over the whole matrix,
  ``W_q = clamp(round(W·s_w), −1, 1) / s_w``, so every entry is one of ``{−1/s_w, 0, 1/s_w}``;
- ``y = x_q · W_qᵀ`` (no bias), both quantisers with straight-through gradients.

The quantisers are pure functions; :class:`BitLinear` is an ``nn.Linear`` (the operator
registry sees a linear layer) whose ``weight_bits = 2`` tells the tracer a weight takes two
cells or a sign bit and a magnitude bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BitLinear", "activation_quant", "ternary_weight", "ternary_weight_scale"]

ACT_LEVELS = 127.0  # 8-bit signed activations, symmetric scale (clamped to -128..127)
_EPS_SCALE = 1e-5  # the public code's floor on max|x| and mean|W|


def activation_quant(x: torch.Tensor) -> torch.Tensor:
    """Per-token 8-bit fake quantisation: ``clamp(round(x·127/max|x|), −128, 127)·max|x|/127``."""
    scale = ACT_LEVELS / x.abs().amax(dim=-1, keepdim=True).clamp(min=_EPS_SCALE)
    return (x * scale).round().clamp(-128, 127) / scale


def ternary_weight_scale(w: torch.Tensor) -> torch.Tensor:
    """``s_w = 1 / mean|W|`` (a 0-d tensor)."""
    return 1.0 / w.abs().mean().clamp(min=_EPS_SCALE)


def ternary_weight(w: torch.Tensor) -> torch.Tensor:
    """``clamp(round(W·s_w), −1, 1) / s_w``: values in ``{−1/s_w, 0, 1/s_w}``."""
    scale = ternary_weight_scale(w)
    return (w * scale).round().clamp(-1, 1) / scale


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` forward, identity gradient to ``x`` backward."""
    return x + (q - x).detach()


class BitLinear(nn.Linear):
    """``y = activation_quant(RMSNorm(x)) · ternary_weight(W)ᵀ`` with straight-through gradients."""

    weight_bits = 2  # ternary: a sign and a magnitude bit (or two cells on a crossbar)

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-8) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.norm = nn.RMSNorm(in_features, eps=eps)

    def quantized_weight(self) -> torch.Tensor:
        """The ternary weight the layer multiplies by (``{−s, 0, s}`` with ``s = mean|W|``)."""
        return ternary_weight(self.weight)

    def analog_twin(self, config) -> nn.Module:
        """The crossbar form (:class:`~spikecim.analog.bitlinear.AnalogBitLinear`): the ternary
        weight programmed, RMSNorm and the 8-bit activations kept digital."""
        from spikecim.analog.bitlinear import AnalogBitLinear

        return AnalogBitLinear(self, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn = self.norm(x)
        xq = _ste(xn, activation_quant(xn))
        wq = _ste(self.weight, ternary_weight(self.weight))
        return F.linear(xq, wq)
