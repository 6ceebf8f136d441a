"""The crossbar's converters in one pass each on the CPU: ``converters_cpu.c`` through ctypes.

The inference kernels of the noisy forward (:mod:`spikecim.analog.tiles`), each equal bit
for bit to the torch passes it replaces (docs/analog.md, "Passes of the noisy forward"):

- :func:`dac_levels`: the input DAC of one input tile, ``rint(x·n_dac/s)`` with ``s`` the
  abs-max of every input vector (or given), in one read for the range and one for the
  levels, instead of ``amax``, ``amin``, ``mul``, ``round`` over the whole tile;
- :func:`adc_accumulate`: the column ADC and the digital stage, ``Σ_i Σ_s clamp(rint(y·k),
  −q, q)·gain[i, o, s]·row_scale[i, n, l]``, one read of the column outputs and one write
  of the layer's output instead of five passes and a sum over tiles and slices; with the
  output noise ``y + α·z`` drawn in the same pass (the normals and sum of
  :func:`spikecim.analog.noise.add_normal_`);
- :func:`unfold_dac`: a convolution's patches gathered straight into DAC levels, as
  ``F.unfold`` lays them out or as rows (one matrix of patches per input tile, the layout
  of one large product: :func:`spikecim.analog.gemm.prefers_rows`);
- :func:`all_binary`: whether a convolution's input is binary spikes (they take the direct
  convolution), one pass instead of two comparisons, an ``or`` and an ``all``.

The C file is compiled once per machine by :func:`spikecim.nn.kernels.cbuild.build`. When no
compiler works, :func:`available` is False (with one warning) and the torch passes run. Only
for inference: the torch passes keep the straight-through gradients of hardware-aware
training and BN fine-tuning. Work is split over input vectors on
``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from spikecim.nn.kernels import cbuild
from spikecim.ops.conv import output_size

__all__ = [
    "GEOMETRY_FIELDS",
    "adc_accumulate",
    "all_binary",
    "available",
    "dac_levels",
    "unfold_dac",
]

_SOURCE = Path(cbuild.__file__).with_name("converters_cpu.c")
_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
# float64 is for checking, not speed: one plain build
_PARALLEL_MIN = 1 << 16  # elements below which one thread is faster than waking more


def available(x: torch.Tensor) -> bool:
    """Whether the kernels run for ``x`` (a non-empty CPU tensor of float32 or float64, below
    2^31 elements so every index fits the kernels' 32-bit tables; compiler found)."""
    return (
        x.device.type == "cpu"
        and x.dtype in _REALS
        and 0 < x.numel() < 2**31
        and _library(x.dtype) is not None
    )


def all_binary(x: torch.Tensor) -> bool:
    """Whether every value of the contiguous ``x`` is exactly 0 or 1, as
    ``((x == 0) | (x == 1)).all()`` in one pass without temporaries."""
    x = x.contiguous()
    lib = _library(x.dtype)[0]
    return bool(lib.all_binary(ctypes.c_void_p(x.data_ptr()), ctypes.c_int64(x.numel())))


def dac_levels(
    x: torch.Tensor, n_dac: int, scale: torch.Tensor | None = None, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAC levels of the input vectors of ``x[N, R, L]`` (vectors along R; unit stride along
    L, or L = 1) and their abs-max scales ``[N, 1, L]`` (1 for an all-zero vector).

    ``scale``: the vectors' abs-max when known (positive, ``[N, 1, L]``); ``out``: where the
    levels go (``x`` itself for in place; default a new ``[N, R, L]`` tensor)."""
    N, R, L = x.shape
    if L > 1 and x.stride(2) != 1:
        x = x.contiguous()
    if out is not None and L > 1 and out.stride(2) != 1:
        raise ValueError("dac_levels: out needs unit stride along L")
    out = torch.empty(N, R, L, dtype=x.dtype) if out is None else out
    given = scale is not None
    scale = torch.empty(N, 1, L, dtype=x.dtype) if scale is None else scale.to(x.dtype).contiguous()
    lib, Args, _ = _library(x.dtype)
    a = Args(
        x=x.data_ptr(),
        out=out.data_ptr(),
        scale=scale.data_ptr(),
        N=N,
        R=R,
        L=L,
        sn=x.stride(0),
        sr=x.stride(1),
        on=out.stride(0),
        orow=out.stride(1),
        given=int(given),
        n_dac=float(n_dac),
    )
    lib.dac_levels(ctypes.byref(a), _threads(x.numel()))
    return out, scale


# patches.h's patch_geometry, as the fields of a ctypes structure that embeds it
GEOMETRY_FIELDS = [
    (n, ctypes.c_int64)
    for n in ("N", "C", "H", "W", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "Ho", "Wo", "R", "n_in")
]


def unfold_dac(
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    tile_rows: int,
    n_dac: int,
    out: torch.Tensor | None = None,
    rows: bool = False,
) -> tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]:
    """``F.unfold(x)``'s patches ``[N, C·kh·kw, L]`` already in DAC levels, and the scales
    ``[n_in, N, 1, L]``: the abs-max of every patch over each input tile's ``tile_rows`` rows
    (1 for an all-zero patch), as :func:`dac_levels` on the unfolded tiles. The patches are
    gathered from ``x[N, C, H, W]`` and written once (into ``out`` if given: ``N·C·kh·kw·L``
    elements). ``rows=True``: the same levels as one matrix per input tile, ``[N·L, R_i]``
    (tile i's rows of every patch, patch ``n·L + l`` in row ``n·L + l``), in a list."""
    x = x.contiguous()
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    Ho, Wo = output_size((H, W), kernel_size, stride, padding, dilation)
    K, L = C * kh * kw, Ho * Wo
    n_in = -(-K // tile_rows)
    out = torch.empty(N, K, L, dtype=x.dtype) if out is None else out
    if not out.is_contiguous() or out.numel() != N * K * L:
        raise ValueError(f"unfold_dac: out needs {N * K * L} contiguous elements")
    scale = torch.empty(n_in, N, 1, L, dtype=x.dtype)
    lib, Args = _library(x.dtype)[0], _unfold_struct(_REALS[x.dtype][1])
    sizes = (N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, tile_rows, n_in)
    a = Args(x.data_ptr(), out.data_ptr(), scale.data_ptr(), *sizes, float(n_dac), int(rows))
    lib.unfold_dac(ctypes.byref(a), _threads(out.numel()))
    if a.failed:
        raise MemoryError("analog: no memory for the patch DAC's work buffers")
    if not rows:
        return out.view(N, K, L), scale
    flat, M = out.view(-1), N * L
    widths = [min(tile_rows, K - i * tile_rows) for i in range(n_in)]
    return [flat[i * M * tile_rows :][: M * w].view(M, w) for i, w in enumerate(widths)], scale


def adc_accumulate(
    y: torch.Tensor,
    gain: torch.Tensor,
    row_scale: torch.Tensor | None,
    adc: tuple[float, int] | None,
    out_features: int,
    out_noise: tuple[float, int] | None = None,
    rows: bool = False,
) -> torch.Tensor:
    """``out[N, out_features, L]`` from the column outputs ``y[n_in, N, n_out, S, C, L]``
    (contiguous): ``Σ_i Σ_s f(y)·gain[i, o, s]·row_scale[i, n, l]`` with ``f(v) = clamp(rint(v·k),
    −q, q)`` for ``adc = (k, q)`` (None: ``f(v) = v``), the sum left to right, i outer.
    ``gain`` broadcasts to ``[n_in, 1, n_out, S, 1, 1]``; ``row_scale`` holds ``n_in·N·L`` values
    in the order ``[n_in, N, L]`` (None: 1). ``out_noise = (alpha, seed)``: ``y + alpha·z``
    goes into ``f`` instead of ``y``, z the normals of ``noise.standard_normal(y.shape, seed)``
    (what ``noise.add_normal_(y, alpha, seed=seed)`` adds; ``y`` is left as it is).
    ``rows=True``: ``y`` is ``[n_in, N, L, n_out, S, C]``, the column outputs of the patches
    as rows (:func:`unfold_dac` with ``rows``); the result is exactly that of
    ``y.permute(0, 1, 3, 4, 5, 2)`` in the first layout, normals included."""
    if rows:
        n_in, N, L, n_out, S, C = y.shape
    else:
        n_in, N, n_out, S, C, L = y.shape
    y = y.contiguous()
    gain = gain.to(y.dtype).expand(n_in, 1, n_out, S, 1, 1).contiguous()
    if row_scale is not None:
        row_scale = row_scale.to(y.dtype).reshape(n_in, N, L).contiguous()
    out = torch.empty(N, out_features, L, dtype=y.dtype)
    k, q = adc if adc is not None else (1.0, 0)
    alpha, seed = out_noise if out_noise is not None else (0.0, 0)
    lib, _, Args = _library(y.dtype)
    a = Args(
        y=y.data_ptr(),
        gain=gain.data_ptr(),
        row_scale=None if row_scale is None else row_scale.data_ptr(),
        out=out.data_ptr(),
        n_in=n_in,
        N=N,
        n_out=n_out,
        S=S,
        C=C,
        L=L,
        out_f=out_features,
        adc=int(adc is not None),
        out_noise=int(out_noise is not None),
        rows=int(rows),
        k=k,
        q=float(q),
        alpha=float(alpha),
        seed=int(seed) & (2**64 - 1),
    )
    lib.adc_accumulate(ctypes.byref(a), _threads(y.numel()))
    return out


def _threads(work: int) -> int:
    return cbuild.threads(work, _PARALLEL_MIN)


def _structs(real) -> tuple[type[ctypes.Structure], type[ctypes.Structure]]:
    ptr, long, int_ = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    dac = [(n, ptr) for n in ("x", "out", "scale")] + [
        (n, long) for n in ("N", "R", "L", "sn", "sr", "on", "orow")
    ]
    dac += [("given", int_), ("n_dac", real)]
    adc = [(n, ptr) for n in ("y", "gain", "row_scale", "out")]
    adc += [(n, long) for n in ("n_in", "N", "n_out", "S", "C", "L", "out_f")]
    adc += [("adc", int_), ("out_noise", int_), ("rows", int_), ("k", real), ("q", real), ("alpha", real)]
    adc += [("seed", ctypes.c_uint64)]
    return (
        type("DACArgs", (ctypes.Structure,), {"_fields_": dac}),
        type("ADCArgs", (ctypes.Structure,), {"_fields_": adc}),
    )


@functools.cache
def _unfold_struct(real) -> type[ctypes.Structure]:
    fields = [(n, ctypes.c_void_p) for n in ("x", "out", "scale")] + GEOMETRY_FIELDS
    fields += [("n_dac", real), ("rows", ctypes.c_int32), ("failed", ctypes.c_int32)]
    return type("UnfoldArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library(dtype: torch.dtype):
    """``(ctypes library, DAC argument struct, ADC argument struct)`` for ``dtype``, built once;
    None (with a warning) when no compiler works."""
    real_c, real = _REALS[dtype]
    lib = cbuild.load(
        _SOURCE,
        f"converters_cpu_{real_c}",
        cbuild.flag_sets(real_c),
        "CPU converter kernels",
        "using the torch passes",
    )
    if lib is None:
        return None
    lib.all_binary.argtypes = [ctypes.c_void_p, ctypes.c_int64]
    lib.all_binary.restype = ctypes.c_int32
    dac, adc = _structs(real)
    for name, Args in (("dac_levels", dac), ("adc_accumulate", adc), ("unfold_dac", _unfold_struct(real))):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
        fn.restype = None
    return lib, dac, adc
