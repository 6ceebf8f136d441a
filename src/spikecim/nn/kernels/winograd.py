"""3×3 convolutions of stride 1 by Winograd's F(4×4, 3×3) on the CPU: ``winograd_cpu.c``'s
transforms through ctypes and one batched matrix product.

Lavin and Gray ("Fast Algorithms for Convolutional Neural Networks", CVPR 2016) compute a
3×3 convolution as 36 matrix products over the input channels, one per entry of the 6 × 6
transformed tiles, each tile giving 4 × 4 outputs: 36 multiply-adds per output tile and input
channel where the direct convolution takes 144. The input and output transforms are compiled
passes over the tiles (``winograd_cpu.c``), the products one ``torch.bmm``; the samples run in
groups whose transformed tiles stay within :data:`_GROUP_BYTES` (or hold
:data:`_MIN_GROUP_TILES` tiles, where that is more), through one buffer reused by every group,
so the extra memory is bounded whatever the batch.

spikecim runs it where its 3×3 convolutions of stride 1 train: the input gradient of the
event-driven spiking convolutions (:mod:`spikecim.nn.kernels.spike_conv_cpu`), a dense 3×3
convolution of the output gradient with the kernels turned by 180°, and, through
:func:`conv2d`, the forward, input gradient and weight gradient of the convolutions of dense
maps whose input needs a gradient (a spiking VGG's pooled spikes, an ANN's activations; the
weight gradient runs the algorithm backwards, :func:`weight_grad3x3`): on VGG-9 and ResNet-19
these were the largest part of a training step. A forward without a gradient (evaluation,
inference, the crossbars' digital reference) stays torch's direct convolution, as cuDNN's
Winograd kernels are also a training-time choice of the algorithm. The values differ from the direct convolution's by float
rounding of another algorithm: the transforms' constants (1/6, 1/24, 4, 8) enlarge the
rounding error of the products, within the bound of the bilinear algorithm that
``tests/test_nn_winograd.py`` computes for every output from the absolute values of the
transforms (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section 3.5).
An infinite entry of the output gradient gives NaN in its tiles (inf − inf in the
transforms) where the direct convolution gives ±inf or NaN: both are the non-finite gradient
a trainer must stop on.

``SPIKECIM_WINOGRAD=torch`` runs torch's transposed convolution and weight gradient instead
(the values of the direct algorithm, bit for bit torch's).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from spikecim.nn.kernels import cbuild

__all__ = ["applies", "available", "conv2d", "conv3x3", "conv_transpose2d", "weight_grad3x3"]

_SOURCE = Path(cbuild.__file__).with_name("winograd_cpu.c")
# Bytes of transformed tiles per group of samples (the input's and the output's, each): 2, 4, 8
# and 32 MiB were within the host's noise of each other on VGG-9's and ResNet-19's 3×3 layers at
# T·B = 64 (2 threads, a one-off comparison, 2026-12-07). A group's 36 products are [tiles, C] ×
# [C, Co], and each group packs all of U again: with 256 and 512 channels on 8×8 and 16×16 maps
# 8 MiB gave them 112-224 tiles, and groups of at least 448 ran 1.04-1.13x faster on 512
# channels (forward and weight gradient, T·B = 64 and 256, 2 threads, against the groups of
# 8 MiB in fresh buffers, interleaved in one process, 2026-12-07 12:00 UTC). The extra memory
# of any batch is 16 MiB besides U, or 2 · 36 · 448 · 4 bytes per channel where that is more
# (66 MiB at 512 channels).
_GROUP_BYTES = 8 << 20
_MIN_GROUP_TILES = 448
# Below these torch's direct convolution is used: with 16 or 32 channels in or out the input
# gradient ran at 0.56-0.80x torch's speed, with 64 and more at 1.18-2.02x (8x8 to 32x32 maps;
# `python benchmarks/bench_winograd.py`, 2 threads, 2026-12-07).
_MIN_CHANNELS = 64
_MIN_WORK = 1 << 22
# Above this many tile outputs per output (tile_overhang) torch's direct convolution is used: the
# input gradient ran at 0.45x torch's speed on 2x2 maps (4 tile outputs per output), 0.68-1.09x on
# 3x3, 5x5, 6x6 and 9x9 (1.78-2.56), 1.17-1.65x on 7x7, 13x13 and 14x14 (1.31-1.51) and 1.27-1.58x
# on 4x4 and 8x8 (1.0) (bench_winograd.py's fourth table, 2 threads, 2026-12-07 06:24 UTC).
_MAX_OVERHANG = 1.6
_PARALLEL_MIN = (
    1 << 16
)  # elements a pass writes below which one thread runs (applies() admits far larger calls)
_PTR, _LONG, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_SIZES = ("N", "C", "H", "W", "Ho", "Wo", "ph", "pw", "th", "tw", "xs", "A", "B")


class _Args(ctypes.Structure):  # wino_args of the C file
    _fields_ = [
        *((f, _PTR) for f in ("x", "v", "m", "y", "g", "u")),
        *((f, _LONG) for f in _SIZES),
        *((f, _INT) for f in ("flip", "isa", "failed", "clear")),
    ]


def available() -> bool:
    """Whether the compiled transforms run here (a C compiler) and ``SPIKECIM_WINOGRAD`` is
    not set to ``torch``."""
    return os.environ.get("SPIKECIM_WINOGRAD", "").lower() != "torch" and _library() is not None


def applies(x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> bool:
    """Whether :func:`conv3x3` computes ``F.conv2d(x, weight, padding=padding)``: float32 CPU
    tensors ``x [N, C, H, W]`` and ``weight [Co, C, 3, 3]``, padding 0 to 2 on each side, at
    least :data:`_MIN_CHANNELS` channels in and out and :data:`_MIN_WORK` multiply-adds per
    tap, an output map whose 4×4 tiles compute at most :data:`_MAX_OVERHANG` times its outputs
    (:func:`tile_overhang`), and nothing watching torch's ops (:func:`cbuild.watched`)."""
    if (
        x.dim() != 4
        or weight.dim() != 4
        or tuple(weight.shape[2:]) != (3, 3)
        or x.shape[1] != weight.shape[1]
    ):
        return False
    n, c, h, w = x.shape
    ph, pw = padding
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and 0 <= ph <= 2
        and 0 <= pw <= 2
        and h + 2 * ph >= 3
        and w + 2 * pw >= 3
        and min(c, weight.shape[0]) >= _MIN_CHANNELS
        and n * weight.shape[0] * c * (h + 2 * ph - 2) * (w + 2 * pw - 2) >= _MIN_WORK
        and tile_overhang(h + 2 * ph - 2, w + 2 * pw - 2) <= _MAX_OVERHANG
        and not cbuild.watched()
        and available()
    )


def tile_overhang(ho: int, wo: int) -> float:
    """The outputs the 4×4 tiles over an ``ho × wo`` output map compute, per output the map
    has: 1 where 4 divides both sides, up to 16 on a 1×1 map."""
    return 16 * -(-ho // 4) * -(-wo // 4) / (ho * wo)


def conv3x3(
    x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int], *, flip: bool = False
) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=padding)`` (stride 1, no bias), or with ``flip`` the
    convolution by the kernels turned by 180° with their two channel axes exchanged
    (``weight [C, Co, 3, 3]``), which is the transposed convolution
    ``F.conv_transpose2d(x, weight, padding=2 - padding)``: the input gradient of a 3×3
    convolution of padding ``2 - padding``. No gradient flows through it. The caller checks
    :func:`applies` (with ``weight.transpose(0, 1)`` for ``flip``)."""
    x = x.detach().contiguous()
    weight = weight.detach().contiguous()
    n, c, h, w = x.shape
    co = weight.shape[0] if not flip else weight.shape[1]
    ho, wo = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    lib, isa = _library(), cbuild.isa(_widest())
    u = torch.empty(36, c, co)  # U[k] as the right factor: [C in][C out]
    a, b = weight.shape[:2]
    _call(
        lib.wino_weights,
        cbuild.threads(a * b * 36, _PARALLEL_MIN),
        g=weight,
        u=u,
        A=a,
        B=b,
        flip=int(flip),
        isa=isa,
    )
    y = x.new_empty(n, co, ho, wo)
    threads = cbuild.threads(y.numel(), _PARALLEL_MIN)
    groups = list(_groups(n, (h, w), (ho, wo), padding, max(c, co), isa))
    work_v, work_m = _work(groups, c), _work(groups, co)
    for k, (n0, tiles, geometry) in enumerate(groups):
        v, out = _tiles(work_v, tiles, c), _tiles(work_m, tiles, co)
        _call(lib.wino_input, threads, x=x[n0], v=v, C=c, xs=c * h * w, **geometry)
        # the later groups' products are added to the zeros the output transform leaves where
        # it read M: torch.bmm has BLAS clear M in a pass of its own (beta = 0), for the first
        if k == 0:
            torch.bmm(v, u, out=out)
        else:
            out.baddbmm_(v, u)
        _call(lib.wino_output, threads, m=out, y=y[n0], C=co, clear=int(k < len(groups) - 1), **geometry)
    return y


def weight_grad3x3(x: torch.Tensor, gy: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """The gradient ``[Co, C, 3, 3]`` of the weight of ``F.conv2d(x, weight, padding=padding)``
    (stride 1) for the output gradient ``gy [N, Co, Ho, Wo]``: Gᵀ (Σ_tiles Ĝ ⊙ V) G with
    V = Bᵀ d B of the input's tiles and Ĝ = A gy Aᵀ of the output gradient's, the sum over
    the tiles 36 matrix products (``torch.bmm``, then ``torch.baddbmm``). The caller checks :func:`applies`."""
    x, gy = x.detach().contiguous(), gy.detach().contiguous()
    n, c, h, w = x.shape
    co, ho, wo = gy.shape[1:]
    lib, isa = _library(), cbuild.isa(_widest())
    gu = torch.empty(36, c, co)
    threads = cbuild.threads(gy.numel(), _PARALLEL_MIN)
    groups = list(_groups(n, (h, w), (ho, wo), padding, max(c, co), isa))
    work_v, work_g = _work(groups, c), _work(groups, co)
    for n0, tiles, geometry in groups:
        v, g = _tiles(work_v, tiles, c), _tiles(work_g, tiles, co)
        _call(lib.wino_input, threads, x=x[n0], v=v, C=c, xs=c * h * w, **geometry)
        _call(lib.wino_grad_tiles, threads, x=gy[n0], v=g, C=co, xs=co * ho * wo, **geometry)
        if n0 == 0:  # the first group's products written, not added to zeros (no pass to clear gu)
            torch.bmm(v.transpose(1, 2), g, out=gu)
        else:
            gu.baddbmm_(v.transpose(1, 2), g)
    gw = torch.empty(co, c, 3, 3)
    _call(lib.wino_weight_grad, cbuild.threads(36 * c * co, _PARALLEL_MIN), g=gw, u=gu, A=co, B=c, isa=isa)
    return gw


def conv_transpose2d(gy: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv_transpose2d(gy, weight, padding=padding)`` at stride 1, for any ``weight
    [Co, C, KH, KW]``: the input gradient of ``F.conv2d(x, weight, padding=padding)``, by
    :func:`conv3x3` where the kernel is 3×3 and it applies, else torch's."""
    full = (2 - padding[0], 2 - padding[1])
    if applies(gy, weight.transpose(0, 1), full):
        return conv3x3(gy, weight, full, flip=True)
    return F.conv_transpose2d(gy, weight, padding=padding)


def conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int]
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, 1, padding)`` by :func:`conv3x3`, with the input and weight
    gradients :func:`conv_transpose2d` and :func:`weight_grad3x3`, where ``x`` requires a
    gradient (a training forward), the kernel is 3×3 and the convolution :func:`applies`;
    torch's convolution otherwise (every forward without a gradient)."""
    if torch.is_grad_enabled() and x.requires_grad and applies(x, weight, padding):
        return _GradientsByWinograd.apply(x, weight, bias, padding)
    return F.conv2d(x, weight, bias, 1, padding)


class _GradientsByWinograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        y = conv3x3(x, weight, padding)
        if bias is not None:
            y += bias.view(1, -1, 1, 1)
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        wants_x, wants_w, wants_b = ctx.needs_input_grad[:3]
        wants_b = wants_b and ctx.has_bias
        if torch.is_grad_enabled():  # create_graph=True: torch's gradient ops, which build a graph
            gx = torch.nn.grad.conv2d_input(x.shape, weight, gy, padding=ctx.padding) if wants_x else None
            gw = torch.nn.grad.conv2d_weight(x, weight.shape, gy, padding=ctx.padding) if wants_w else None
        else:
            gy = gy.contiguous()
            gx = conv_transpose2d(gy, weight, ctx.padding) if wants_x else None
            gw = weight_grad3x3(x, gy, ctx.padding) if wants_w else None
        return gx, gw, gy.sum((0, 2, 3)) if wants_b else None, None


def _groups(
    n: int, size: tuple[int, int], out: tuple[int, int], padding: tuple[int, int], channels: int, isa: int
):
    """``(first sample, tiles, geometry)`` for each group of the ``n`` samples whose
    transformed tiles (36 rows of ``channels`` per tile) stay within :data:`_GROUP_BYTES`, or
    that holds :data:`_MIN_GROUP_TILES` tiles where that is more;
    ``geometry``: the fields of ``_Args`` that describe the group's images and tiles."""
    th, tw = -(-out[0] // 4), -(-out[1] // 4)
    by_bytes = _GROUP_BYTES // (36 * th * tw * channels * 4)
    group = max(1, min(n, max(by_bytes, -(-_MIN_GROUP_TILES // (th * tw)))))
    for n0 in range(0, n, group):
        m = min(group, n - n0)
        geometry = {"N": m, "H": size[0], "W": size[1], "Ho": out[0], "Wo": out[1], "th": th, "tw": tw}
        yield n0, m * th * tw, {**geometry, "ph": padding[0], "pw": padding[1], "isa": isa}


def _work(groups: list, channels: int) -> torch.Tensor:
    """One buffer for the transformed tiles of every group, sized for the largest: a fresh
    buffer per group alternated between two blocks of the heap, twice the memory the
    transforms and products go through, which then fell out of the cache between groups."""
    return torch.empty(36 * max(tiles for _, tiles, _ in groups) * channels)


def _tiles(work: torch.Tensor, tiles: int, channels: int) -> torch.Tensor:
    """The ``[36, tiles, channels]`` of a group at the start of ``work``."""
    return work[: 36 * tiles * channels].view(36, tiles, channels)


def _call(fn, threads: int, **fields) -> None:
    """``fn`` of the C file on an ``_Args`` of ``fields`` (tensors by their data pointer)."""
    args = _Args(**{k: v.data_ptr() if isinstance(v, torch.Tensor) else v for k, v in fields.items()})
    fn(ctypes.byref(args), threads)
    if args.failed:
        raise MemoryError("Winograd convolution: no memory for the transforms' work buffers")


@functools.cache
def _library():
    """The ctypes library, built once; None where no compiler works (one warning)."""
    passes = ("wino_weights", "wino_input", "wino_output", "wino_grad_tiles", "wino_weight_grad")
    lib = cbuild.load_real(
        _SOURCE,
        "float",
        "Winograd convolution kernel",
        "using torch's convolution",
        dict.fromkeys(passes, _Args),
    )
    if lib is not None:
        lib.wino_available.restype = ctypes.c_int
    return lib


@functools.cache
def _widest() -> int:
    """The widest loops this CPU runs (3 AVX-512, 2 AVX2, 0 plain C), asked once."""
    return int(_library().wino_available())
