"""BatchNorm's training forward on the CPU: ``bn_cpu.c`` compiled on first use and called
through ctypes; the backward is torch's own (``aten::native_batch_norm_backward``).

torch's CPU BatchNorm sums each channel of a contiguous ``[N, C, H, W]`` tensor in one
scalar chain of double additions, twice (the mean, then the squared deviations): on a
2-core AMD EPYC (Zen 5, both threads) its training forward of a ``[64, 128, 32, 32]``
float32 tensor takes 6.8 ms where its inference forward (one vectorised pass) takes 1.1 ms
(median of 15 interleaved calls; ``benchmarks/bench_layers.py`` times the kernel against it). The kernel runs the
same arithmetic with eight chains side by side, then the output pass
``y = x·alpha + beta`` with torch's ``alpha`` and ``beta``; the batch statistics it saves
for the backward, the running statistics and the output are torch's (a double sum taken in
another order can differ in its last bits, which a float's rounding does not see unless
the sum lies within about 1e-13 of a rounding boundary; ``tests/test_nn_batchnorm.py``
compares the outputs, statistics and gradients with torch's).

It applies to float32 and float64 CPU tensors ``[N, C, H, W]`` in the default layout with
more than one value per channel, in training (batch statistics); everything else, and every
call under a torch function or dispatch mode, ``torch.compile``, ``torch.jit.trace`` or CPU autocast,
runs ``F.batch_norm``. ``SPIKECIM_BATCHNORM=torch`` turns the kernel off.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from spikecim.nn.kernels import cbuild

__all__ = ["applies", "available", "batch_norm"]

_REALS = {torch.float32: "float", torch.float64: "double"}
_PARALLEL_MIN = 1 << 16  # entries below which one thread is faster than waking another
_ITEM_ENTRIES = 1 << 14  # entries per work item of the output pass (whole planes)
_PTR, _LONG = ctypes.c_void_p, ctypes.c_int64


class _Args(ctypes.Structure):
    _fields_ = (
        [(n, _LONG) for n in ("N", "C", "HW", "planes_per_item")]
        + [(n, _PTR) for n in ("x", "y", "weight", "bias", "mean", "invstd", "running_mean", "running_var")]
        + [(n, _PTR) for n in ("alpha", "beta")]
        + [("eps", ctypes.c_double), ("momentum", ctypes.c_double), ("fused", ctypes.c_int)]
    )


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled kernel runs for ``dtype`` here (and is not turned off)."""
    return os.environ.get("SPIKECIM_BATCHNORM") != "torch" and dtype in _REALS and _library(dtype) is not None


def applies(x: torch.Tensor, training: bool, *params: torch.Tensor | None) -> bool:
    """Whether the kernel computes ``F.batch_norm(x, ..., training)`` (else torch's runs)."""
    return (
        training
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.is_contiguous()
        and x.numel() > 0
        and x.numel() // x.shape[1] > 1
        and all(
            p is None or (p.dtype == x.dtype and p.device.type == "cpu" and p.is_contiguous()) for p in params
        )
        and not cbuild.watched()
        and available(x.dtype)
    )


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``F.batch_norm`` (the same arguments and values), on the kernel where it applies."""
    if applies(x, training, running_mean, running_var, weight, bias):
        return _BatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


class _BatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        C = x.shape[1]
        y = torch.empty_like(x)
        mean, invstd, alpha, beta = (x.new_empty(C) for _ in range(4))
        hw = x[0, 0].numel()
        with torch.no_grad():
            args = _Args(
                N=x.shape[0],
                C=C,
                HW=hw,
                planes_per_item=max(1, _ITEM_ENTRIES // hw),
                eps=eps,
                momentum=momentum,
                fused=_fused(x.dtype),
                **{
                    n: ctypes.c_void_p(t.data_ptr() if t is not None else 0)
                    for n, t in (
                        ("x", x),
                        ("y", y),
                        ("weight", weight),
                        ("bias", bias),
                        ("mean", mean),
                        ("invstd", invstd),
                        ("running_mean", running_mean),
                        ("running_var", running_var),
                        ("alpha", alpha),
                        ("beta", beta),
                    )
                },
            )
            _library(x.dtype).bn_forward(ctypes.byref(args), cbuild.threads(x.numel(), _PARALLEL_MIN))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: torch's batch norm again, differentiable twice
            return (*_differentiable_grads(x, weight, gy, ctx.eps, needs[:3]), None, None, None, None)
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy, x, weight, None, None, mean, invstd, True, ctx.eps, [needs[0], needs[1], needs[2]]
        )
        return gx, gw, gb, None, None, None, None


def _differentiable_grads(x, weight, gy, eps: float, needs) -> tuple:
    """The input, weight and bias gradients of the training batch norm as a graph (for a
    second derivative): torch's ``F.batch_norm`` on the kept input, its gradients taken with
    ``create_graph``; the bias gradient is the sum of ``gy`` (the bias only shifts)."""
    inputs = [t for t, need in zip((x, weight), needs[:2], strict=True) if need]
    y = F.batch_norm(x, None, None, weight, None, True, 0.0, eps) if inputs else None
    grads = iter(torch.autograd.grad(y, inputs, gy, create_graph=True) if inputs else ())
    gx = next(grads) if needs[0] else None
    gw = next(grads) if needs[1] else None
    gb = gy.sum((0, 2, 3)) if needs[2] else None
    return gx, gw, gb


@functools.cache
def _fused(dtype: torch.dtype) -> int:
    """Whether the CPU kernels torch runs here fuse multiply-adds (its AVX2 and AVX-512 builds;
    ``ATEN_CPU_CAPABILITY=default`` picks the build without): the kernel then does too."""
    return int(torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))


@functools.cache
def _library(dtype: torch.dtype):
    """The ctypes library for ``dtype``, built once; None when it cannot be built."""
    source = Path(__file__).with_name("bn_cpu.c")
    return cbuild.load_real(
        source, _REALS[dtype], "BatchNorm CPU kernel", "using torch's BatchNorm", {"bn_forward": _Args}
    )
