"""The crossbar form of a :class:`~spikecim.nn.bitlinear.BitLinear` layer.

What a crossbar holds is the ternary weight ``W_q ∈ {−s, 0, s}`` (programmed as it is: on
single-level cells a sign cell and a magnitude cell, the Workload's ``weight_bits = 2``),
never the full-precision latent weight that training keeps. The digital periphery keeps the
layer's RMSNorm and per-token 8-bit activation quantisation, so with an ideal crossbar the
layer computes exactly ``activation_quant(RMSNorm(x)) · W_qᵀ``, the digital BitLinear.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.analog.config import CrossbarConfig
from spikecim.analog.layers import AnalogLinear
from spikecim.nn.bitlinear import BitLinear, activation_quant

__all__ = ["AnalogBitLinear"]


class AnalogBitLinear(nn.Module):
    """``crossbar(activation_quant(RMSNorm(x)))`` with the ternary weight on the crossbar."""

    def __init__(self, layer: BitLinear, config: CrossbarConfig) -> None:
        super().__init__()
        self.norm = layer.norm
        ternary = nn.Linear(layer.in_features, layer.out_features, bias=False)
        with torch.no_grad():
            ternary.weight.copy_(layer.quantized_weight())
        self.crossbar = AnalogLinear(ternary, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.crossbar(activation_quant(self.norm(x)))
