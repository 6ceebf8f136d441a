"""The converters of hardware-aware training in one pass each on the CPU: ``hwa_cpu.c``
through ctypes (float32; :mod:`spikecim.analog.hwa` runs the torch passes for anything else).

- :func:`dac`: clip to the learned range ±r, the DAC's levels, each input's clip code
  (``UPPER`` x ≥ r, ``LOWER`` x ≤ −r, ``OUTSIDE`` |x| > r) and the count of clipped inputs
  (weighted by their patch copies for a convolution tile), instead of ``clamp``, ``aminmax``,
  three comparisons, two counts, ``mul``, ``round``, ``mul``;
- :func:`dac_backward`: the input gradient zeroed where ``OUTSIDE`` and the clipped inputs'
  sum for the range's gradient, instead of ``masked_fill``, two boolean gathers, two clamps
  and two sums;
- :func:`conv_range_grad`: a convolution tile's clipped patch entries' gradient Wᵀ·G read
  only at the clipped inputs, instead of the gradient at every patch entry (one matmul of
  the size of the convolution) and index arithmetic over the clipped inputs;
- :func:`adc`: the ADC's levels, the bound, the saturation mask and the sum over tiles;
- :func:`moments`: Σx and Σx² over a convolution tile's patch entries, each input weighted
  by its copies, in one read instead of two sums over the batch, a square and two products.

The DAC's and the ADC's outputs equal the torch passes bit for bit (same operations in the
same order, no fused multiply-add); the sums accumulate in double. The C file is compiled
once per machine by :func:`spikecim.nn.kernels.cbuild.load`; when no compiler works,
:func:`available` is False (one warning) and the torch passes run. Work is split into chunks
(samples for :func:`conv_range_grad`) over ``torch.get_num_threads()`` threads.

A convolution tile's tensors ``[B, C, H, W]`` may lie in torch's default layout or in
``torch.channels_last`` (the layout :class:`spikecim.analog.hwa.HwaLayer` runs its
convolutions in on the CPU): the elementwise passes run over the elements in the order they
lie, with each input's ``copies`` read in that order, and their outputs take the input's
layout; :func:`conv_range_grad` reads the codes in either order. Any other layout is copied
into the default one first.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np
import torch

from spikecim.nn.kernels import cbuild

__all__ = [
    "LOWER",
    "OUTSIDE",
    "UPPER",
    "adc",
    "available",
    "channels_last",
    "conv_range_grad",
    "dac",
    "dac_backward",
    "dense",
    "grid",
    "moments",
]

UPPER, LOWER, OUTSIDE = 1, 2, 4  # the clip code's bits (hwa_cpu.c)
_SOURCE = Path(cbuild.__file__).with_name("hwa_cpu.c")
_CHUNK = 1 << 14  # elements per work item
_PARALLEL_MIN = 1 << 16  # elements below which one thread is faster than waking more


def channels_last(t: torch.Tensor) -> bool:
    """Whether ``t`` lies dense in channels-last with the channels' stride 1, as torch lays
    it out (for one channel the elements lie as in the default layout, and the strides say
    which layout torch's convolution writes)."""
    return t.dim() == 4 and t.stride(1) == 1 and t.is_contiguous(memory_format=torch.channels_last)


def _as_laid_out(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(t, nhwc)``: ``t`` dense in its layout (a copy when it is neither), and whether
    that is channels-last (:func:`channels_last`)."""
    if channels_last(t):
        return t, True
    if t.is_contiguous():
        return t, False
    if t.dim() == 4 and t.stride(1) == 1:  # a channel slice of a channels-last tensor
        return t.contiguous(memory_format=torch.channels_last), True
    return t.contiguous(), False


def dense(t: torch.Tensor) -> bool:
    """Whether ``t`` lies dense in torch's default layout or in channels-last (the layouts the
    kernels write into in place)."""
    return t.is_contiguous() or channels_last(t)


def _layout(nhwc: bool) -> torch.memory_format:
    return torch.channels_last if nhwc else torch.contiguous_format


def _storage_order(copies: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """``copies`` ``[C, H, W]`` as float32 in the order of a channels-last input's elements
    (``[H, W, C]``) with ``nhwc``, else in its own."""
    return (copies.permute(1, 2, 0) if nhwc else copies).to(torch.float32).contiguous()


def available(x: torch.Tensor) -> bool:
    """Whether the kernels run for ``x``: a non-empty float32 CPU tensor, no ``torch.func``
    transform running (its tensors have no storage of their own), compiler found."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.numel() > 0
        and not cbuild.transformed()
        and _library() is not None
    )


def dac(
    x: torch.Tensor, r: torch.Tensor, bits_levels: int | None, copies: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """``(y, code, clipped, weighted)``: y = clamp(x, −r, r), on the grid of ``bits_levels``
    levels each side of zero over ±r when given (rint(y·(n/r))·(r/n), the scalars computed
    as torch computes ``n / r`` and ``r / n`` in float32: :func:`grid`); each input's clip code;
    #(x ≥ r) + #(x ≤ −r); and Σ ``copies`` (``[C, H, W]`` of an input ``[B, C, H, W]``) over
    the inputs with x ≥ r or x ≤ −r (0.0 without ``copies``)."""
    x, nhwc = _as_laid_out(x)
    n = x.numel()
    items = -(-n // _CHUNK)
    y = torch.empty_like(x, memory_format=_layout(nhwc))
    code = torch.empty_like(x, dtype=torch.uint8, memory_format=_layout(nhwc))
    count = (ctypes.c_int64 * items)()
    weighted = (ctypes.c_double * items)() if copies is not None else None
    copies = None if copies is None else _storage_order(copies, nhwc)
    r = float(r)
    inv, step = grid(r, bits_levels)
    lib, structs = _library()
    a = structs["dac"](
        x=x.data_ptr(),
        copies=copies.data_ptr() if copies is not None else None,
        y=y.data_ptr(),
        code=code.data_ptr(),
        count=ctypes.addressof(count),
        weighted=ctypes.addressof(weighted) if weighted is not None else None,
        n=n,
        chunk=_CHUNK,
        inner=copies.numel() if copies is not None else 1,
        r=r,
        inv=inv,
        step=step,
        quantise=bits_levels is not None,
    )
    lib.hwa_dac_forward(ctypes.byref(a), cbuild.threads(n, _PARALLEL_MIN))
    return y, code, sum(count), sum(weighted) if weighted is not None else 0.0


def dac_backward(
    g: torch.Tensor, code: torch.Tensor, sums: bool, inplace: bool = False
) -> tuple[torch.Tensor, float]:
    """``(grad, clipped)``: ``g`` zeroed where the code is ``OUTSIDE`` (written into ``g``
    with ``inplace``), and with ``sums`` Σ_{UPPER} min(g, 0) − Σ_{LOWER} max(g, 0) (else 0.0);
    ``code`` is read in ``g``'s layout."""
    g, nhwc = _as_laid_out(g)
    code = code.contiguous(memory_format=_layout(nhwc))
    grad = g if inplace else torch.empty_like(g, memory_format=_layout(nhwc))
    n = g.numel()
    items = -(-n // _CHUNK)
    partial = (ctypes.c_double * items)() if sums else None
    lib, structs = _library()
    a = structs["dac_back"](
        g=g.data_ptr(),
        code=code.data_ptr(),
        grad=grad.data_ptr(),
        sums=ctypes.addressof(partial) if partial is not None else None,
        n=n,
        chunk=_CHUNK,
    )
    lib.hwa_dac_backward(ctypes.byref(a), cbuild.threads(n, _PARALLEL_MIN))
    return grad, sum(partial) if partial is not None else 0.0


def conv_range_grad(code: torch.Tensor, kernel: torch.Tensor, g: torch.Tensor, geometry) -> float:
    """Σ over the patch entries copied from an input coded ``UPPER`` of min(g_patch, 0), plus
    over those coded ``LOWER`` of min(−g_patch, 0); g_patch = Σ_m W[m, c, i, j]·G[b, m, window]
    for the input ``code`` ``[B, C, H, W]``, the tile's ``kernel`` ``[M, C, kh, kw]`` and the
    output gradient ``g`` ``[B, M, Ho, Wo]`` (channels-last: no copy of it)."""
    stride, padding, dilation = geometry
    B, C, H, W = code.shape
    M, _, kh, kw = kernel.shape
    Ho, Wo = g.shape[2:]
    code, nhwc = _as_laid_out(code)  # kept referenced while the kernel reads it
    kt = kernel.detach().permute(1, 2, 3, 0).contiguous()  # [C, kh, kw, M]: each tap's column
    gt = g.permute(0, 2, 3, 1).contiguous()  # [B, Ho, Wo, M]: each window's M values side by side
    partial = (ctypes.c_double * B)()
    windows = torch.empty(H * kh + W * kw, dtype=torch.int64)
    lib, structs = _library()
    a = structs["range"](
        code=code.data_ptr(),
        kt=kt.data_ptr(),
        gt=gt.data_ptr(),
        partial=ctypes.addressof(partial),
        windows=windows.data_ptr(),
        B=B, C=C, H=H, W=W, M=M, kh=kh, kw=kw, Ho=Ho, Wo=Wo,
        sh=stride[0], sw=stride[1], ph=padding[0], pw=padding[1], dh=dilation[0], dw=dilation[1],
        nhwc=nhwc,
    )  # fmt: skip
    lib.hwa_conv_range_grad(ctypes.byref(a), cbuild.threads(code.numel(), _PARALLEL_MIN))
    return sum(partial)


def adc(
    y: torch.Tensor, prev: torch.Tensor | None, bound: torch.Tensor, bits_levels: int | None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(out, code, saturated)``: with ``bits_levels`` = n, k = rint(y·(n/bound)) and
    v = clamp(k, −n, n)·(bound/n), code ``OUTSIDE`` where |k| > n; else v = clamp(y, ±bound),
    code ``OUTSIDE`` where |y| > bound (:func:`dac_backward` masks the gradient with it); out = prev + v, written into ``prev`` (dense in its layout, ``y``'s dtype: the caller's check; ``y``
    is read in that layout), a new tensor of v in ``y``'s layout without ``prev``; the mask in
    ``out``'s layout; saturated: whether any mask is set."""
    if prev is None:
        y, nhwc = _as_laid_out(y)
    else:
        nhwc = channels_last(prev)
        y = y.contiguous(memory_format=_layout(nhwc))
    out = torch.empty_like(y, memory_format=_layout(nhwc)) if prev is None else prev
    mask = torch.empty_like(y, dtype=torch.uint8, memory_format=_layout(nhwc))
    n = y.numel()
    items = -(-n // _CHUNK)
    saturated = (ctypes.c_int64 * items)()
    bound = float(bound)
    inv, step = grid(bound, bits_levels)
    lib, structs = _library()
    a = structs["adc"](
        y=y.data_ptr(),
        prev=prev.data_ptr() if prev is not None else None,
        out=out.data_ptr(),
        mask=mask.data_ptr(),
        saturated=ctypes.addressof(saturated),
        n=n,
        chunk=_CHUNK,
        inv=inv,
        step=step,
        q=float(bits_levels or 0),
        bound=bound,
        quantise=bits_levels is not None,
    )
    lib.hwa_adc_forward(ctypes.byref(a), cbuild.threads(n, _PARALLEL_MIN))
    return out, mask, any(saturated)


def moments(x: torch.Tensor, copies: torch.Tensor) -> tuple[float, float]:
    """``(Σ copies·x, Σ copies·x²)`` in double over an input ``x`` ``[B, C, H, W]`` with
    ``copies`` ``[C, H, W]`` (x² rounded to float32 first, as ``x.square()``)."""
    x, nhwc = _as_laid_out(x)
    copies = _storage_order(copies, nhwc)
    n = x.numel()
    items = -(-n // _CHUNK)
    s1, s2 = (ctypes.c_double * items)(), (ctypes.c_double * items)()
    lib, structs = _library()
    a = structs["moments"](
        x=x.data_ptr(),
        copies=copies.data_ptr(),
        s1=ctypes.addressof(s1),
        s2=ctypes.addressof(s2),
        n=n,
        chunk=_CHUNK,
        inner=copies.numel(),
    )
    lib.hwa_moments(ctypes.byref(a), cbuild.threads(n, _PARALLEL_MIN))
    return sum(s1), sum(s2)


def grid(scale: float, levels: int | None) -> tuple[float, float]:
    """``(n / s, s / n)`` for the float32 ``scale`` s and ``levels`` n as torch computes them
    on a float32 tensor s (``n / s`` is ``s.reciprocal() * n``), each operation rounded to
    float32 (done in double, then rounded: exact for one division or one product of float32
    values); ``(s, s)`` without levels (unused)."""
    if levels is None:
        return scale, scale
    inv = float(np.float32(1.0 / scale)) if scale != 0 else float("inf")  # torch: 1/0 = inf
    return float(np.float32(inv * levels)), float(np.float32(scale / levels))


def _struct(name: str, pointers: tuple[str, ...], ints: tuple[str, ...], floats: tuple[str, ...], flag: bool):
    fields = [(p, ctypes.c_void_p) for p in pointers] + [(i, ctypes.c_int64) for i in ints]
    fields += [(f, ctypes.c_float) for f in floats] + ([("quantise", ctypes.c_int32)] if flag else [])
    return type(name, (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library():
    """``(ctypes library, {name: argument struct})``, built once; None (with a warning) when
    no compiler works."""
    lib = cbuild.load(
        _SOURCE,
        "hwa_cpu",
        cbuild.flag_sets(),
        "hardware-aware training kernels",
        "using the torch passes",
    )
    if lib is None:
        return None
    structs = {
        "dac": _struct(
            "DacArgs",
            ("x", "copies", "y", "code", "count", "weighted"),
            ("n", "chunk", "inner"),
            ("r", "inv", "step"),
            True,
        ),
        "dac_back": _struct("DacBackArgs", ("g", "code", "grad", "sums"), ("n", "chunk"), (), False),
        "range": _struct(
            "RangeArgs",
            ("code", "kt", "gt", "partial", "windows"),
            ("B", "C", "H", "W", "M", "kh", "kw", "Ho", "Wo", "sh", "sw", "ph", "pw", "dh", "dw", "nhwc"),
            (),
            False,
        ),
        "moments": _struct("MomentsArgs", ("x", "copies", "s1", "s2"), ("n", "chunk", "inner"), (), False),
        "adc": _struct(
            "AdcArgs",
            ("y", "prev", "out", "mask", "saturated"),
            ("n", "chunk"),
            ("inv", "step", "q", "bound"),
            True,
        ),
    }
    for fn, key in (
        ("hwa_dac_forward", "dac"),
        ("hwa_dac_backward", "dac_back"),
        ("hwa_conv_range_grad", "range"),
        ("hwa_adc_forward", "adc"),
        ("hwa_moments", "moments"),
    ):
        f = getattr(lib, fn)
        f.argtypes = [ctypes.POINTER(structs[key]), ctypes.c_int]
        f.restype = None
    return lib, structs
