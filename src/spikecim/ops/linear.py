"""``linear``: ``nn.Linear`` and its subclasses, ``y = x·Wᵀ + b`` on the last dimension.

Accumulates: ``nnz(x) · out_features`` (each non-zero input feeds every output). Those on
non-zero weights: ``Σ_f nnz(x[..., f]) · nnz(W[:, f])`` (a non-zero input of feature ``f``
meets the non-zero weights of column ``f``). A linear layer applied to ``[..., S, F]``
(tokens) acts at every one of the ``S`` positions: ``positions = S`` (the product of the
dimensions before the features). Counts are exact integers, returned as float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikecim.ops import Op, register_op
from spikecim.ops._bits import static_operand


@register_op
class Linear(Op):
    kind = "linear"
    modules = (nn.Linear,)
    on_crossbar = True

    def sample_ndim(self, module):
        return None

    def accumulates(self, module, inputs):
        return _pairs(inputs[0], torch.full((module.in_features,), module.out_features))

    def weighted_accumulates(self, module, inputs):
        return _pairs(inputs[0], (module.weight != 0).sum(0))

    def describe(self, module, in_shapes, out_shape):
        w = module.weight
        return {
            "in_ch": module.in_features,
            "out_ch": module.out_features,
            "positions": math.prod(in_shapes[0][:-1]),
            "has_bias": module.bias is not None,
            "operands": {"weight": static_operand(module, w)},
        }

    def static_weight(self, module):
        return module.weight

    def to_analog(self, module, config):
        from spikecim.analog.layers import AnalogLinear

        twin = getattr(module, "analog_twin", None)  # a linear layer with its own crossbar form (BitLinear)
        return twin(config) if twin is not None else AnalogLinear(module, config)

    def to_nir(self, writer, module, name, prev):
        import nir

        from spikecim.interop.export_layers import as_numpy

        weight = as_numpy(module.weight)
        if module.bias is not None:
            return writer.add(name, nir.Affine(weight=weight, bias=as_numpy(module.bias)))
        return writer.add(name, nir.Linear(weight=weight))


def _pairs(x: torch.Tensor, fan_out: torch.Tensor) -> torch.Tensor:
    """Per row of ``x[N, ..., F]``: Σ over its non-zero entries of ``fan_out[feature]``, the
    outputs each one feeds (float64, exact)."""
    per_feature = (x != 0).reshape(x.shape[0], -1, x.shape[-1]).sum(1).to(torch.float64)
    return per_feature @ fan_out.to(per_feature.device, torch.float64)
