"""Average and max pooling whose windows tile the image, on the CPU: ``pool_cpu.c`` compiled
on first use and called through ctypes.

torch's CPU pooling of a contiguous (NCHW) tensor walks one window at a time with a branch
per entry: on a 2-core AMD EPYC (Zen 5) ``avg_pool2d`` of a ``[64, 128, 32, 32]`` float32
spike tensor takes 11 ms forward, about seven times a copy of the same tensor, and
``max_pool2d`` of a ReLU output about 4 ns per entry, most of it mispredicted branches.
The kernel runs along rows of outputs with selects instead, so its loops vectorise
(``benchmarks/bench_layers.py`` times both; docs/speed.md, "Pooling", its figures); the
values, the gradients and the max's choice among equal entries are torch's bit for bit
(``tests/test_nn_pool.py`` checks them against torch). The max keeps the offset of each
output's entry in its window as one byte, where torch keeps an int64 per output.

The kernel applies to float32 and float64 CPU tensors ``[N, C, H, W]`` or ``[C, H, W]`` in
the default (contiguous) layout, and ``[N, C, H, W]`` in channels-last (its output and
input gradient then channels-last too, as torch's), with kernel = stride, no padding, no
dilation and no ``ceil_mode``; everything else runs torch's pooling. So does every call
made while a torch function or dispatch mode is active, under ``torch.compile``,
``torch.jit.trace`` or CPU autocast: op counters (SpikingJelly's, torch's
``FlopCounterMode``), tracers and the compiler then see torch's pooling op, which they know.
``SPIKECIM_POOL=torch`` turns the kernel off.

In channels-last the loops run along the channels of one position. torch's channels-last
pooling vectorises too, but where the output gradient comes in the default layout (after a
flatten) its backward converts it and copies its input: the convnet's max pool in a
hardware-aware step, ``[64, 64, 8, 8]``, 0.29 against 0.61 ms forward and backward, one
thread (docs/speed.md, "Pooling").
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from spikecim.nn.kernels import cbuild

__all__ = ["applies", "available", "avg_pool2d", "max_pool2d"]

_REALS = {torch.float32: "float", torch.float64: "double"}
_PARALLEL_MIN = 1 << 16  # entries below which one thread is faster than waking another
_ITEM_ENTRIES = 1 << 14  # entries of input per work item (whole planes, or rows of windows)
_PTR, _LONG = ctypes.c_void_p, ctypes.c_int64


class _Args(ctypes.Structure):
    _fields_ = (
        [(n, _LONG) for n in ("planes", "H", "W", "kh", "kw", "OH", "OW", "per_item")]
        + [(n, _PTR) for n in ("x", "y", "idx", "gy", "gx")]
        + [(n, _LONG) for n in ("C", "channels_last")]
    )


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled kernel runs for ``dtype`` here (and is not turned off)."""
    return os.environ.get("SPIKECIM_POOL") != "torch" and dtype in _REALS and _library(dtype) is not None


def applies(x: torch.Tensor, kernel_size, stride, padding, dilation=1, ceil_mode: bool = False) -> bool:
    """Whether the kernel computes this pooling (else torch's runs)."""
    kernel = _pair(kernel_size)
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = kernel
    if (
        x.device.type != "cpu"
        or x.dim() not in (3, 4)
        or not (x.is_contiguous() or _channels_last(x))
        or ceil_mode
        or _pair(stride) != kernel
        or _pair(padding) != (0, 0)
        or _pair(dilation) != (1, 1)
        or kernel[0] * kernel[1] > 255
        or min(kernel) < 1
        or x.shape[-2] < kernel[0]
        or x.shape[-1] < kernel[1]
        or x.numel() == 0
        or cbuild.watched()
    ):
        return False
    return available(x.dtype)


def avg_pool2d(
    x: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> torch.Tensor:
    """``F.avg_pool2d`` (the same arguments and values), on the kernel where it applies."""
    if divisor_override is None and applies(x, kernel_size, stride, padding, 1, ceil_mode):
        return _AvgPool.apply(x, _pair(kernel_size))
    return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def max_pool2d(
    x: torch.Tensor,
    kernel_size,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> torch.Tensor:
    """``F.max_pool2d`` (the same arguments and values), on the kernel where it applies."""
    if not return_indices and applies(x, kernel_size, stride, padding, dilation, ceil_mode):
        return _MaxPool.apply(x, _pair(kernel_size))
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _channels_last(x: torch.Tensor) -> bool:
    """Whether the kernel reads ``x`` as channels-last: ``[N, C, H, W]`` laid out so, and not
    also in the default layout (C = 1, or H = W = 1, is both)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


class _AvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
        cl = _channels_last(x)
        y = torch.empty(_out_shape(x.shape, kernel), dtype=x.dtype, memory_format=_layout(cl))
        _call("avg_pool_forward", x.shape, kernel, cl, x=x, y=y)
        ctx.shape, ctx.kernel, ctx.cl = x.shape, kernel, cl
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        if torch.is_grad_enabled():  # create_graph=True: the same map in torch ops, differentiable
            kh, kw = ctx.kernel
            return _to_windows(
                gy.unsqueeze(-1).expand(*gy.shape, kh * kw) / (kh * kw), ctx.shape, ctx.kernel
            ), None
        gy = gy.contiguous(memory_format=_layout(ctx.cl))
        gx = torch.empty(ctx.shape, dtype=gy.dtype, memory_format=_layout(ctx.cl))
        _call("avg_pool_backward", ctx.shape, ctx.kernel, ctx.cl, gy=gy, gx=gx)
        return gx, None


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
        shape, cl = _out_shape(x.shape, kernel), _channels_last(x)
        y = torch.empty(shape, dtype=x.dtype, memory_format=_layout(cl))
        idx = torch.empty(shape, dtype=torch.uint8, memory_format=_layout(cl))
        _call("max_pool_forward", x.shape, kernel, cl, x=x, y=y, idx=idx)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.kernel, ctx.cl = x.shape, kernel, cl
        return y

    @staticmethod
    def backward(ctx, gy: torch.Tensor):
        (idx,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the same map in torch ops, differentiable
            kh, kw = ctx.kernel
            chosen = F.one_hot(idx.long(), kh * kw).to(gy.dtype)  # each output's window entry
            return _to_windows(gy.unsqueeze(-1) * chosen, ctx.shape, ctx.kernel), None
        gy = gy.contiguous(memory_format=_layout(ctx.cl))
        gx = torch.empty(ctx.shape, dtype=gy.dtype, memory_format=_layout(ctx.cl))
        _call("max_pool_backward", ctx.shape, ctx.kernel, ctx.cl, gy=gy, idx=idx, gx=gx)
        return gx, None


def _to_windows(per_entry: torch.Tensor, shape: torch.Size, kernel: tuple[int, int]) -> torch.Tensor:
    """The input gradient ``[..., H, W]`` from each output's gradient per window entry
    (``per_entry[..., Ho, Wo, kh·kw]``, row-major in the window): the windows laid back over
    the input, zeros where no window reaches (the rows and columns past ``Ho·kh``, ``Wo·kw``)."""
    kh, kw = kernel
    *lead, ho, wo, _ = per_entry.shape
    grid = per_entry.reshape(*lead, ho, wo, kh, kw).transpose(-3, -2).reshape(*lead, ho * kh, wo * kw)
    return F.pad(grid, (0, shape[-1] - wo * kw, 0, shape[-2] - ho * kh))


def _out_shape(shape: torch.Size, kernel: tuple[int, int]) -> tuple[int, ...]:
    return (*shape[:-2], shape[-2] // kernel[0], shape[-1] // kernel[1])


def _call(
    fn: str, shape: torch.Size, kernel: tuple[int, int], channels_last: bool, **tensors: torch.Tensor
) -> None:
    """Run ``fn`` of the library over the planes of ``shape`` ([..., H, W]), or over the rows
    of outputs of a channels-last ``[N, C, H, W]``."""
    H, W = shape[-2:]
    C = shape[1] if channels_last else 1
    planes = shape.numel() // (H * W * C)
    dtype = next(t.dtype for n, t in tensors.items() if n != "idx")
    # entries of input per work item: whole planes, or whole rows of windows in channels-last
    per_item = max(1, _ITEM_ENTRIES // (kernel[0] * W * C if channels_last else H * W))
    args = _Args(
        planes=planes,
        H=H,
        W=W,
        kh=kernel[0],
        kw=kernel[1],
        OH=H // kernel[0],
        OW=W // kernel[1],
        per_item=per_item,
        C=C,
        channels_last=int(channels_last),
        **{n: ctypes.c_void_p(t.data_ptr()) for n, t in tensors.items()},
    )
    getattr(_library(dtype), fn)(ctypes.byref(args), cbuild.threads(shape.numel(), _PARALLEL_MIN))


@functools.cache
def _library(dtype: torch.dtype):
    """The ctypes library for ``dtype``, built once; None when it cannot be built."""
    passes = ("avg_pool_forward", "max_pool_forward", "avg_pool_backward", "max_pool_backward")
    source = Path(__file__).with_name("pool_cpu.c")
    return cbuild.load_real(
        source, _REALS[dtype], "pooling CPU kernel", "using torch's pooling", dict.fromkeys(passes, _Args)
    )
