"""The linear layer of the built-in models: ``torch.nn.Linear``, its products on oneDNN.

:class:`Linear` is ``nn.Linear`` (same arguments, state, ``isinstance``) whose forward and
backward products run oneDNN's float32 GEMM (:mod:`spikecim.nn.kernels.onednn`) where it is
reachable and the product is large enough to pay for the call (:data:`MIN_MACS`), and
``F.linear`` everywhere else. On a CPU whose MKL runs at the AVX2 rate (AMD's AVX-512
cores) the forward and both gradients take about half the time: VGG-9's classifier
(4096 → 1024 at T·B = 64) 4.9 against 10.3 ms forward and backward on two Zen 5 cores
(``python benchmarks/bench_linear.py``; docs/speed.md, "Linear layers"). The values are
float rounding apart from torch's (another order of summation), the gradients too.

Like spikecim's other kernels it steps aside for tools that watch or rewrite torch's ops (a
torch function or dispatch mode such as ``FlopCounterMode``, ``torch.compile``,
``jit.trace``, CPU autocast, ``torch.func``'s transforms): those see ``aten::linear``.
``SPIKECIM_GEMM=torch`` turns it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.nn.kernels import cbuild, onednn

__all__ = ["MIN_MACS", "Linear", "linear"]

# Multiply-adds of one product below which F.linear is as fast: the forward and both
# gradients through oneDNN, against F.linear's, took 0.85x as long at 4.2 M, 1.15-1.2x less
# at 8.4 M and 1.7-2.3x less from 34 M (two Zen 5 cores; python benchmarks/bench_linear.py).
MIN_MACS = 1 << 23
_MIN_SIDE = 16  # fewer rows or outputs: F.linear


class Linear(nn.Linear):
    """``nn.Linear`` whose products run on oneDNN's GEMM where it is faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` (the same arguments, values to float rounding, and gradients), its
    products on oneDNN where :func:`applies`."""
    if not applies(x, weight, bias):
        return F.linear(x, weight, bias)
    rows = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        y = _Linear.apply(rows, weight, bias)
    else:
        y = onednn.linear(rows, weight, bias)
    return y if x.dim() == 2 else y.view(*x.shape[:-1], weight.shape[0])


def applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether :func:`linear` runs oneDNN's GEMM for this call."""
    if x.dim() < 2 or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        return False
    rows, (outputs, inputs) = x.numel() // max(x.shape[-1], 1), weight.shape
    return (
        all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in (x, weight, bias))
        and min(rows, outputs) >= _MIN_SIDE
        and rows * inputs * outputs >= MIN_MACS
        and not cbuild.watched()
        and onednn.available()
    )


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return onednn.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        # a backward that builds a graph (create_graph=True, for a second derivative) takes
        # torch's products, which autograd can differentiate again; the others oneDNN's
        product = torch.mm if torch.is_grad_enabled() else lambda a, b: onednn.linear(a, b.t())
        gy = gy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = product(gy, weight)
        if ctx.needs_input_grad[1]:
            gw = product(gy.t(), x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum(0)
        return gx, gw, gb
