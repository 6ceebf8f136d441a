"""Event-driven convolutions of spike maps on the CPU: ``spike_conv_cpu.c`` through ctypes.

A convolution whose input holds only 0s and 1s (the spikes of a LIF layer) needs no
multiplications: each output is the sum of the weights under the spikes in its window. The
kernel adds exactly those, one vector of 64 output channels per spike and tap, and computes
the weight gradient the same way (each weight's gradient is the sum of the output gradient
at the positions its input spiked); the input gradient, whose output gradient has no zeros
to skip, is the transposed convolution, at stride 1 by Winograd's algorithm
(:func:`spikecim.nn.kernels.winograd.conv_transpose2d`, torch's where that does not apply),
at other strides torch's. At a spike rate of 25 % the forward does a quarter
of the dense convolution's additions, in 0.5–0.75 of its time on one core, the weight
gradient in about half (``benchmarks/bench_spike_conv.py``; docs/speed.md, "Spiking
convolutions"). For the weight gradient the spikes are kept as bits, not as the float
input torch's convolution keeps; where the spike rate makes Winograd's weight gradient the
faster (:data:`_WINOGRAD_WGRAD_FROM`: many channels, many spikes), the backward pass unpacks
the bits and runs :func:`spikecim.nn.kernels.winograd.weight_grad3x3` on them.

:func:`conv2d` runs it where it applies and torch's ``conv2d`` everywhere else (a dense
3×3 input of stride 1 that needs a gradient through :func:`spikecim.nn.kernels.winograd.conv2d`,
Winograd's algorithm), with the same values to float rounding (the sums run in another
order) and the same gradients: a
float32 CPU input ``[N, C, H, W]`` not in channels-last layout (torch's convolution keeps
that layout; the kernel writes the default one), any stride, dilation 1, one group, numeric
padding, a kernel 1 or 3 wide and at most 16 tall, a stride of at most 16, a CPU with AVX-512 (F, BW, VL) or AVX2 (with FMA and POPCNT: the
kernel has loops for both, chosen per call, with the same bits), every entry 0 or 1 (checked
in the pass that reads the spikes, which stops at the first other value) and at most
:data:`DENSE_FROM` of them 1 (above, the dense product is faster). A call made while a
torch function or dispatch mode is active (op counters, ``torch.compile``, tracers), under
CPU autocast or a ``torch.func`` transform runs torch's op, which they know; so does every
call with ``SPIKECIM_CONV=torch`` in the environment. A backward with ``create_graph=True``
runs torch's gradient ops on the spikes the bits hold, so second derivatives are torch's,
except through the weight gradient where the input requires a gradient: the bits have no
graph to the spikes' source, and that derivative raises (:class:`_NoSecondDerivative`).

A 1×1 convolution of stride s without padding (a ResNet's projection shortcut) reads only
the positions the stride lands on: :func:`conv2d` convolves ``x[:, :, ::s, ::s]`` at stride
1, on the kernel where those are sparse spikes, else on torch's convolution, both faster
than torch's strided one (``benchmarks/bench_spike_conv.py``, its shortcut table). Other
strided windows of spikes (a ResNet's 3×3 downsampling convolution) run on the kernel at
their stride: its weight gradient adds each spike into the taps whose output position the
stride lands on (``benchmarks/bench_spike_conv.py``, its stride-2 table).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from spikecim.nn.kernels import cbuild, winograd
from spikecim.ops.conv import output_size

__all__ = ["DENSE_FROM", "applies", "available", "conv2d", "conv2d_into", "sparse_spikes_likely"]

# Spike rate above which torch's dense convolution takes the call. At 0.4 the kernel still ran
# forward and both gradients 1.08-1.22x faster than torch on the layers where it ran, at 0.5
# none ran and the pass over the spikes cost 1-5 % (python benchmarks/bench_spike_conv.py
# --rate 0.4 --rate 0.5, 1 thread, 2026-12-06): the cut lies on the safe side of the crossover.
DENSE_FROM = 0.4
PROFILER_NAME = "spikecim::spike_conv"  # conv2d_into's record in torch's profiler (conv2d's: _SpikeConv)
_SOURCE = Path(cbuild.__file__).with_name("spike_conv_cpu.c")
# Output positions per forward work item, about: 128 and 256 ran within 5 % of each other on
# VGG-9's and ResNet-19's spiking layers at rate 0.25 (1 and 2 threads, interleaved, 2026-12-06).
_PANEL = 256
_COLUMNS = 64  # the forward's output channels per pass (FCB in the C file)
# Input positions per block of the weight gradient (rows of one or more samples), times the
# stride's sh·sw up to 4: a block of a stride-2 layer's spikes splits into four classes of row and
# column (spike_conv_cpu.c), and blocks of 1024 positions took 0.75-0.80 of the time of blocks
# of 256 on ResNet-19's two 3×3 stride-2 layers at rates 0.2 and 0.3 (T·B = 64, 2 threads,
# a one-off comparison on a Zen 4 EPYC, 2026-12-07; 512: 0.78-0.87)
_WGRAD_POSITIONS = 256
# (fewest channels in or out, spike rate) from which Winograd's weight gradient of the unpacked
# spikes (winograd.weight_grad3x3) beats the event-driven one, whose time grows with the rate
# where Winograd's does not. The crossovers on ResNet-19's and VGG-9's 3×3 layers at T·B = 64
# and 256, interpolated between rates 0.2 and 0.3 (`python benchmarks/bench_winograd.py
# --batch 64` and `--batch 256`, its fifth table, 2 threads, 2026-12-07): 512 channels at 8×8
# 0.13 and 0.17, 256 at 16×16 0.19 and 0.23, 256 at 8×8 0.18 and 0.20, 128 at 16×16 and 32×32
# 0.27-0.29 at T·B = 64 and none below 0.3 at 256, 64 none below 0.3; the rates here lie at or
# above the larger of each pair.
_WINOGRAD_WGRAD_FROM = ((512, 0.17), (256, 0.24))
_PARALLEL_MIN = 1 << 18  # additions below which one thread beats waking another
_FIELDS = ("x", "mask", "rowbits", "wt", "y", "gy", "gw", "counts")
_SIZES = (
    "N",
    "C",
    "H",
    "W",
    "Co",
    "Cop",
    "KH",
    "KW",
    "ph",
    "pw",
    "Ho",
    "Wo",
    "CW",
    "JW",
    "xs",
    "rows",
    "cbw",
    "rblock",
    "nblock",
    "sh",
    "sw",
)


class _Args(ctypes.Structure):  # spike_conv_args of the C file
    _fields_ = [
        *((f, ctypes.c_void_p) for f in _FIELDS),
        *((f, ctypes.c_int64) for f in _SIZES),
        ("failed", ctypes.c_int32),
        ("isa", ctypes.c_int32),
    ]


def available() -> bool:
    """Whether the compiled kernel runs here: a CPU with AVX-512 F, BW and VL or with AVX2, FMA
    and POPCNT, a C compiler, and ``SPIKECIM_CONV`` not set to ``torch``."""
    return os.environ.get("SPIKECIM_CONV", "").lower() != "torch" and _library() is not None


def applies(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation, groups: int) -> bool:
    """Whether the kernel may compute this convolution, before its input is read (the pass
    over the spikes then checks that they are 0s and 1s and few enough)."""
    if isinstance(padding, str) or x.dim() != 4 or weight.dim() != 4:
        return False
    co, c, kh, kw = weight.shape
    h, w = x.shape[-2:]
    ph, pw = _pair(padding)
    if (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
        or groups != 1
        or min(_pair(stride)) < 1
        or _pair(dilation) != (1, 1)
        or kw not in (1, 3)
        or kh > 16  # the weight gradient's tables of kernel rows and row classes hold 16
        or max(_pair(stride)) > 16
        or min(ph, pw) < 0
        or h + 2 * ph < kh
        or w + 2 * pw < kw
        or x.numel() == 0
        or (x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
        or kh * kw * c * _round_up(co, _COLUMNS) >= 2**31
        or cbuild.watched()
    ):
        return False
    return available()


def sparse_spikes_likely(x: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> bool:
    """Whether :func:`conv2d` of ``x`` will most likely run the kernel: it applies, and a
    strided sample of ``x`` (one entry in 61, cheap) holds only 0s and 1s, at most
    :data:`DENSE_FROM` of them ones. For callers that choose between this and another fast
    path; :func:`conv2d` itself checks every entry."""
    if not applies(x, weight, stride, padding, dilation, 1):
        return False
    sample = x.detach().reshape(-1)[::61]
    ones = sample == 1
    return bool((ones | (sample == 0)).all()) and float(ones.float().mean()) <= DENSE_FROM


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d`` (the same arguments, values to float rounding, and gradients), event-driven
    where :func:`applies` and the input turns out to be sparse spikes."""
    if _pointwise_strided(x, weight, stride, padding):
        # a 1×1 window without padding reads only the positions the stride lands on: the same
        # convolution of those alone at stride 1, which the kernel takes (a copy of 1/(sh·sw)
        # of the input; torch's strided 1×1 convolution and its backward are slower than both)
        sh, sw = _pair(stride)
        x, stride, dilation = x[:, :, ::sh, ::sw].contiguous(), 1, 1
    if applies(x, weight, stride, padding, dilation, groups):
        x = _samples_contiguous(x)
        bits = _spike_bits(x, _pair(padding))
        if bits is not None:
            mask, rowbits, rate = bits
            by_winograd = _weight_grad_by_winograd(x, weight, _pair(padding), _pair(stride), rate)
            return _SpikeConv.apply(
                x, weight, bias, mask, rowbits, _pair(padding), _pair(stride), by_winograd
            )
    if _pair(stride) == (1, 1) and _pair(dilation) == (1, 1) and groups == 1 and not isinstance(padding, str):
        return winograd.conv2d(
            x, weight, bias, _pair(padding)
        )  # a dense input's gradient by Winograd's algorithm
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _pointwise_strided(x: torch.Tensor, weight: torch.Tensor, stride, padding) -> bool:
    """Whether ``conv2d`` is a 1×1 convolution of stride above 1 and no padding of a CPU input
    ``[N, C, H, W]`` in the default layout, with the kernel on and nothing watching torch's ops."""
    return (
        not isinstance(padding, str)
        and _pair(padding) == (0, 0)
        and _pair(stride) != (1, 1)
        and weight.dim() == 4
        and tuple(weight.shape[2:]) == (1, 1)
        and x.dim() == 4
        and x.device.type == "cpu"
        and x.is_contiguous()
        and not cbuild.watched()
        and available()
    )


def conv2d_into(x: torch.Tensor, weight: torch.Tensor, padding, out: torch.Tensor) -> bool:
    """``out[N, Co, Ho, Wo] = F.conv2d(x, weight, None, 1, padding)`` written in place, without
    a gradient, where the kernel takes the call (:func:`applies` with stride 1, and ``x``
    sparse spikes); returns whether it did (else ``out`` is untouched). ``x`` may be a slice
    of channels, read in place; ``out`` must be contiguous: for callers that gather several
    convolutions' outputs in one tensor."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        return False
    if not (out.is_contiguous() and out.dtype == torch.float32 and applies(x, weight, 1, padding, 1, 1)):
        return False
    with torch.profiler.record_function(PROFILER_NAME):  # what a profile of the caller shows
        x = _samples_contiguous(x)
        bits = _spike_bits(x, _pair(padding))
        if bits is None:
            return False
        _forward(x, weight, bits[0], _pair(padding), out=out)
    return True


def _samples_contiguous(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when each sample is contiguous (a slice of channels is: the kernel reads
    the samples ``x.stride(0)`` apart), else a contiguous copy."""
    n, c, h, w = x.shape
    if x.is_contiguous() or (x.stride()[1:] == (h * w, w, 1) and (n == 1 or x.stride(0) >= c * h * w)):
        return x
    return x.contiguous()


def _weight_grad_by_winograd(
    x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int], stride: tuple[int, int], rate: float
) -> bool:
    """Whether the weight gradient of this convolution of spikes at ``rate`` runs Winograd's
    algorithm on the spikes unpacked from their bits (:data:`_WINOGRAD_WGRAD_FROM`, at stride 1
    where :func:`winograd.applies`), not the event-driven kernel."""
    channels = min(weight.shape[0], weight.shape[1])
    start = next((r for c, r in _WINOGRAD_WGRAD_FROM if channels >= c), None)
    return start is not None and rate >= start and stride == (1, 1) and winograd.applies(x, weight, padding)


class _SpikeConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, mask, rowbits, padding, stride, by_winograd: bool):
        y = _forward(x, weight, mask, padding, stride=stride)
        if bias is not None:
            y += bias.view(1, -1, 1, 1)
        ctx.save_for_backward(rowbits, weight)  # the spikes as bits: x itself is not kept
        ctx.padding, ctx.stride, ctx.has_bias, ctx.shape = padding, stride, bias is not None, x.shape
        ctx.by_winograd = by_winograd
        return y

    @staticmethod
    def backward(ctx, gy):
        rowbits, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that is itself differentiable
            return _backward_graph(ctx, gy, rowbits, weight)
        gy = gy.contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0] and ctx.stride == (1, 1):  # the transposed convolution
            gx = winograd.conv_transpose2d(gy, weight, ctx.padding)
        elif ctx.needs_input_grad[0]:
            gx = _conv_transpose_strided(gy, weight, ctx.shape, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1] and ctx.by_winograd:
            x = _unpack_rowbits(rowbits, ctx.shape[-1], gy.dtype)
            gw = winograd.weight_grad3x3(x, gy, ctx.padding)
        elif ctx.needs_input_grad[1]:
            gw = _weight_grad(ctx.shape, rowbits, gy, weight.shape, ctx.padding, ctx.stride)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


def _conv_transpose_strided(gy, weight, shape, stride, padding) -> torch.Tensor:
    """The input gradient ``[N, C, H, W]`` of a strided convolution: torch's transposed
    convolution, its output padding the rows and columns the stride leaves past the last
    window, run in channels-last (oneDNN's deconvolution works in that layout: given ``gy`` in
    the default one it converts its output back itself, more slowly than ``contiguous``). The
    same bits as ``torch.nn.grad.conv2d_input``; on ResNet-19's 128 → 256 and 256 → 512 layers
    at T·B = 64, 70–71 and 47–48 ms against 76–78 and 57–59 ms for the transposed convolution
    in the default layout, 81 and 47–57 ms for ``conv2d_input`` (2 threads, one-off
    comparisons on a Zen 4 EPYC, 2026-12-07)."""
    extra = tuple(
        size - ((out - 1) * s - 2 * p + k)
        for size, out, s, p, k in zip(shape[-2:], gy.shape[-2:], stride, padding, weight.shape[-2:])
    )
    gy = gy.contiguous(memory_format=torch.channels_last)
    return F.conv_transpose2d(gy, weight, None, stride, padding, extra).contiguous()


def _backward_graph(ctx, gy, rowbits, weight):
    """The gradients as torch ops that build a graph, for second derivatives: the input
    gradient and the bias's as in the plain backward, the weight's as torch's convolution
    gradient of the spikes the bits hold (0 and 1, exact). The bits carry no graph to the
    layer that made the spikes: where the input requires a gradient, the weight gradient's
    own derivatives are an error (:class:`_NoSecondDerivative`) rather than missing a term."""
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = torch.nn.grad.conv2d_input(ctx.shape, weight, gy, ctx.stride, ctx.padding)
    if ctx.needs_input_grad[1]:
        x = _unpack_rowbits(rowbits, ctx.shape[-1], gy.dtype)
        gw = torch.nn.grad.conv2d_weight(x, weight.shape, gy, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[0]:
            gw = _NoSecondDerivative.apply(gw)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = gy.sum((0, 2, 3))
    return gx, gw, gb, None, None, None, None, None


def _unpack_rowbits(rowbits: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The spikes ``[N, C, H, W]`` (0 or 1 of ``dtype``) of the bits over each row's columns
    (bit ``j % 16`` of word ``j // 16`` is column j): contiguous where ``width`` is at most 16
    (one word per row, only its ``width`` bits unpacked) or a multiple of 16."""
    lanes = min(width, 16)
    bits = torch.ones(lanes, dtype=torch.int16) << torch.arange(lanes, dtype=torch.int16)
    out = torch.empty(*rowbits.shape, lanes, dtype=dtype)
    torch.ne(rowbits.unsqueeze(-1) & bits, 0, out=out)
    return out.flatten(-2)[..., :width]


class _NoSecondDerivative(torch.autograd.Function):
    """The weight gradient as it is, whose derivatives raise one clear error: the
    event-driven convolution keeps its input as bits, with no graph to the spikes' source."""

    @staticmethod
    def forward(ctx, gw):
        return gw.view_as(gw)

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError(
            "spiking convolution: a second derivative through its weight gradient needs the "
            "input's graph, which the event-driven kernel does not keep (it stores the spikes as "
            "bits); set SPIKECIM_CONV=torch to run torch's convolution"
        )


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _args(
    x_shape: torch.Size,
    shape: torch.Size,
    padding: tuple[int, int],
    xs: int = 0,
    stride: tuple[int, int] = (1, 1),
    **tensors,
) -> ctypes.Structure:
    n, c, h, w = x_shape
    co, _, kh, kw = shape
    ph, pw = padding
    ho, wo = output_size((h, w), (kh, kw), stride, padding, (1, 1))
    # about _WGRAD_POSITIONS output positions, at most 4 × its input positions (the lists of
    # spikes of a block are per_c·C words)
    positions = _WGRAD_POSITIONS * min(stride[0] * stride[1], 4)
    rblock = min(h, positions // w) or 1
    nblock = max(1, positions // (h * w)) if rblock == h else 1
    return _Args(
        **{name: t.data_ptr() for name, t in tensors.items()},
        N=n, C=c, H=h, W=w, Co=co, Cop=_round_up(co, _COLUMNS), KH=kh, KW=kw, ph=ph, pw=pw, Ho=ho, Wo=wo,
        CW=-(-c // 16), JW=-(-w // 16), xs=xs or c * h * w, rows=max(1, _PANEL // wo), cbw=16, rblock=rblock,
        nblock=nblock, sh=stride[0], sw=stride[1], isa=cbuild.isa(_widest()),
    )  # fmt: skip


def _spike_bits(x: torch.Tensor, padding: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, float] | None:
    """The spikes of ``x`` as bits twice: over the channels at each padded position
    (``[N][H + 2ph][W + 2pw][ceil(C/16)]`` words, for the forward) and over the columns of
    each row (``[N][C][H][ceil(W/16)]``, for the weight gradient), and the share of ones;
    None when an entry is not 0 or 1 or more than :data:`DENSE_FROM` of them are 1."""
    n, c, h, w = x.shape
    ph, pw = padding
    mask = torch.zeros(n, h + 2 * ph, w + 2 * pw, -(-c // 16), dtype=torch.int16)
    rowbits = torch.empty(n, c, h, -(-w // 16), dtype=torch.int16)
    counts = torch.empty(n * mask.shape[-1], dtype=torch.int64)
    a = _args(
        x.shape,
        torch.Size((1, c, 1, 1)),
        padding,
        x.stride(0),
        x=x,
        mask=mask,
        rowbits=rowbits,
        counts=counts,
    )
    _library().spike_masks(ctypes.byref(a), cbuild.threads(x.numel(), _PARALLEL_MIN))
    ones = int(counts.sum())
    if bool((counts < 0).any()) or ones > DENSE_FROM * x.numel():
        return None
    return mask, rowbits, ones / x.numel()


def _forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    padding: tuple[int, int],
    out: torch.Tensor | None = None,
    stride: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    co, c, kh, kw = weight.shape
    cop = _round_up(co, _COLUMNS)  # [Cop/64][KH][KW][C][64]
    wt = weight.detach()
    if cop != co:  # F.pad copies even with nothing to pad
        wt = F.pad(wt, (0, 0, 0, 0, 0, 0, 0, cop - co))
    wt = wt.reshape(cop // _COLUMNS, _COLUMNS, c, kh, kw)
    wt = wt.permute(0, 3, 4, 2, 1).contiguous()
    n, _, h, w = x.shape
    shape = (n, co, *output_size((h, w), (kh, kw), stride, padding, (1, 1)))
    y = x.new_empty(shape) if out is None else out.view(shape)
    a = _args(x.shape, weight.shape, padding, stride=stride, mask=mask, wt=wt, y=y)
    _library().spike_conv_forward(ctypes.byref(a), cbuild.threads(x.numel() * kh * kw * co, _PARALLEL_MIN))
    if a.failed:
        raise MemoryError("spiking convolution: no memory for the kernel's work buffers")
    return y


def _weight_grad(
    x_shape: torch.Size,
    rowbits: torch.Tensor,
    gy: torch.Tensor,
    shape: torch.Size,
    padding: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
) -> torch.Tensor:
    co, c, kh, kw = shape
    gw = torch.zeros(kh, kw, c, _round_up(co, _COLUMNS))
    a = _args(x_shape, shape, padding, stride=stride, rowbits=rowbits, gy=gy, gw=gw)
    threads = cbuild.threads(x_shape.numel() * kh * kw * co, _PARALLEL_MIN)
    a.cbw = _weight_grad_columns(x_shape[-2] * x_shape[-1], a.Cop, threads, a.isa)
    _library().spike_conv_weight_grad(ctypes.byref(a), threads)
    if a.failed:
        raise MemoryError("spiking convolution: no memory for the kernel's work buffers")
    # [KH][KW][C][Cop] -> [Co][C][KH][KW] in two copies, each taps or channels kept together:
    # 5.1 against 8.2 ms in one for 512 channels in and out (2 threads, a Zen 4 EPYC, a one-off
    # comparison, 2026-12-07)
    taps = gw.view(kh * kw, c, -1)[:, :, :co].permute(1, 2, 0).contiguous()  # [C][Co][KH·KW]
    return taps.permute(1, 0, 2).contiguous().view(co, c, kh, kw)


def _weight_grad_columns(positions: int, columns: int, threads: int, isa: int = cbuild.ISAS["avx512"]) -> int:
    """Output channels per weight-gradient item (the accumulators of a kernel row hold
    KW·cbw/16 vectors of 16 lanes): 32, or 64 for maps under 16×16, whose blocks hold several
    samples (the fastest of 16, 32 and 64 with blocks of 128 to 1024 positions on VGG-9's and
    ResNet-19's spiking layers, benchmarks/bench_spike_conv.py's shapes, 1 thread); 32 with
    the AVX2 loops (``isa`` 2), whose 16 registers hold a 3-wide row's accumulators for 32
    channels: 64 take two passes over the spikes, slower on those layers. Halved down to 16
    until there are two items per thread. Each weight's sum runs over the same blocks in the
    same order whatever the items, so the result does not depend on it."""
    cbw = 32 if positions >= 256 or isa < cbuild.ISAS["avx512"] else 64
    while cbw > 16 and columns // cbw < 2 * threads:
        cbw //= 2
    return cbw


@functools.cache
def _library():
    """The ctypes library, built once; None where the CPU has neither AVX-512 F/BW/VL nor
    AVX2 with FMA and POPCNT (``spike_conv_available()`` 0; else 3 or 2, the widest loops it
    runs, which :func:`cbuild.isa` may narrow per call) or no compiler works (one warning)."""
    passes = ("spike_masks", "spike_conv_forward", "spike_conv_weight_grad")
    lib = cbuild.load_real(
        _SOURCE, "float", "spiking convolution kernel", "using torch's", dict.fromkeys(passes, _Args)
    )
    if lib is None:
        return None
    lib.spike_conv_available.restype = ctypes.c_int
    return lib if lib.spike_conv_available() else None


@functools.cache
def _widest() -> int:
    """The widest loops this CPU runs (3 AVX-512, 2 AVX2), asked of the library once."""
    return int(_library().spike_conv_available())
