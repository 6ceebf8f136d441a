"""``matmul``: the product of two activations, ``a @ b`` (attention's Q·Kᵀ and S·V).

Both operands are computed at run time. On a crossbar, ``b`` (``[..., K, N]``) is
written as conductances at every step and the rows of ``a`` (``[..., M, K]``) streamed as
inputs; nothing is programmed once. ``to_analog`` gives an
:class:`~spikecim.analog.dynamic.AnalogMatMul` (write noise, ClipFormer, read noise, DAC,
ADC) when the crossbar config's ``dynamic`` section puts the operator on a ``crossbar`` or
``sram``, and leaves it digital otherwise (the default); NIR export refuses it (NIR has no
node for it), and the Workload describes it with a *dynamic* operand ``b`` whose writes
the estimators cost.

Models use the module explicitly: ``self.attn = MatMul()`` … ``self.attn(q, k.transpose(-2,
-1))``. Accumulates: ``nnz(a) · N`` (each non-zero entry of a row of ``a`` meets one row of
``b``, ``N`` outputs).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.ops import Op, register_op

__all__ = ["MatMul"]


class MatMul(nn.Module):
    """``forward(a, b) = a @ b`` (``torch.matmul``), a module so tools can see it."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


@register_op
class MatMulOp(Op):
    kind = "matmul"
    modules = (MatMul,)
    operands_in = 2
    dynamic_inputs: ClassVar[dict[str, int]] = {"b": 1}  # dynamic operand -> index of the forward input

    def sample_ndim(self, module):
        return None

    def accumulates(self, module, inputs):
        a, b = inputs
        return (a != 0).to(torch.float32).flatten(1).sum(1) * b.shape[-1]

    def describe(self, module, in_shapes, out_shape):
        a, b = in_shapes
        if len(a) < 2 or len(b) < 2:
            raise SpikecimError(
                f"MatMul: both operands need a matrix per sample, got shapes {list(a)} and {list(b)}"
            )
        return {
            "batch": math.prod(out_shape[:-2]),
            "m": a[-2],
            "k": a[-1],
            "n": b[-1],
            "operands": {"b": {"kind": "dynamic", "bits": 32}},
        }

    def static_weight(self, module):
        return None

    def to_analog(self, module, config):
        """An :class:`~spikecim.analog.dynamic.AnalogMatMul` on the config's unit for this
        operator (``config.dynamic.unit``, resolved per module by ``to_analog``), or None
        (digital)."""
        if config.dynamic.unit == "digital":
            return None
        from spikecim.analog.dynamic import AnalogMatMul

        return AnalogMatMul(config, config.dynamic.unit)

    def to_nir(self, writer, module, name, prev):
        raise SpikecimError(
            f"layer '{name}' (MatMul): NIR has no node for a matmul of two activations; it cannot be exported"
        )
