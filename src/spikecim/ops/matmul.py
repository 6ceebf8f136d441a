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
``b``, ``N`` outputs). ``b`` has no static weight to prune: the accumulates on non-zero
weights are the accumulates (:meth:`~spikecim.ops.Op.weighted_accumulates`' default), as
``b``'s ``sparsity`` in the Workload is 0.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.ops import Op, register_op

__all__ = ["MatMul", "matmul_shared"]


class MatMul(nn.Module):
    """``forward(a, b) = a @ b`` (``torch.matmul``'s broadcasting), a module so tools can see it."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return matmul_shared(a, b)


def matmul_shared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.matmul(a, b)`` without copying ``b`` along the batch dimensions where it is
    broadcast. ``torch.matmul`` copies an expanded ``b`` to one matrix per product; attention
    written per token (each query against the same keys, expanded over the ``L`` queries) would
    hold ``L`` copies of the keys, ``L²·d`` values per sample (8.6 GB at ``L = 4096``,
    ``d = 128``). Here the rows of ``a`` that meet the same matrix of ``b`` are stacked into
    one product; the result is a view in ``a @ b``'s shape and order. Pass ``b`` with size 1
    along those dimensions where it can: an expanded ``b`` (stride 0) also works, but autograd
    gives it a gradient of its full expanded size, which its expand's backward then sums."""
    if a.dim() < 3 or b.dim() < 3:
        return torch.matmul(a, b)
    lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    (m, k), n = a.shape[-2:], b.shape[-1]
    b = b.reshape((1,) * (len(lead) + 2 - b.dim()) + b.shape)  # as many batch dimensions as a @ b
    shared = [i for i, size in enumerate(lead) if size > 1 and (b.shape[i] == 1 or b.stride(i) == 0)]
    if not shared:
        return torch.matmul(a, b)
    rest = [i for i in range(len(lead)) if i not in shared]
    order = rest + shared  # b's own dimensions, then those it is broadcast along
    a = a.expand(*lead, m, k).permute(*order, -2, -1)
    b = b[tuple(0 if i in shared else slice(None) for i in range(len(lead)))]
    rows = math.prod(lead[i] for i in shared) * m
    out = torch.matmul(a.reshape(*(lead[i] for i in rest), rows, k), b)
    out = out.view(*(lead[i] for i in order), m, n)
    back = sorted(range(len(order)), key=order.__getitem__)  # the inverse of order
    return out.permute(*back, -2, -1)


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
        return (a != 0).flatten(1).sum(1).to(torch.float64) * b.shape[-1]

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
