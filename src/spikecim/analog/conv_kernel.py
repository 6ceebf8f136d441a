"""An analog convolution with its converters in one compiled pass: ``conv_adc_cpu.c``.

In inference with the DAC on, an analog convolution otherwise runs three passes over memory
(:mod:`spikecim.analog.converter_kernels` and :mod:`spikecim.analog.gemm`): the patches
written once as DAC levels, a oneDNN product per tile, and the ADC reading the column
outputs back. On a CPU with AVX-512 or AVX2 with FMA (float32, the differential mapping, no
ADC observer) :func:`conv_adc` does the three per sample and panel of about 256 patches, in
cache: the patches' levels go into a panel of the tile's rows, a register-blocked product
multiplies it with the read matrix, and each block of column outputs goes through the
output noise, the ADC and the digital stage straight into the output. Neither the patches
nor the column outputs are written to memory.

The DAC and ADC levels, the output-noise normals and the sums over tiles and slices are
those of the passes; the products sum each tile's rows in ascending order with one fused
multiply-add per row, where oneDNN blocks them its own way, so the two agree to float
rounding (an output can land one ADC level apart where a column output lies on a rounding
boundary). The formulas are written out at the top of the C file. ``SPIKECIM_GEMM=onednn``
in the environment keeps the three passes (``torch``: the passes on torch's product).

The kernel has AVX-512 and AVX2 loops, the widest this CPU runs chosen at every call, which
do the same IEEE operations lane by lane and give the same bits. ``SPIKECIM_ISA=avx2`` in the
environment runs the AVX2 loops on a CPU with AVX-512 (:func:`cbuild.isa`), as a CPU
without it would.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from spikecim.analog import converter_kernels
from spikecim.nn.kernels import cbuild
from spikecim.ops.conv import output_size

__all__ = ["available", "conv_adc"]

_SOURCE = Path(cbuild.__file__).with_name("conv_adc_cpu.c")
_PANEL = 256  # patches per work item, about: 512 rows × 256 patches of levels stay in L2
_PARALLEL_MIN = 1 << 20  # multiply-adds below which one thread beats waking more


def available(x: torch.Tensor) -> bool:
    """Whether :func:`conv_adc` runs for ``x``: a non-empty float32 CPU tensor, a CPU with
    AVX-512 or AVX2 with FMA, the kernel built, and ``SPIKECIM_GEMM`` unset in the
    environment (``onednn`` keeps the passes with oneDNN's products, ``torch`` the passes
    with torch's)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0:
        return False
    if os.environ.get("SPIKECIM_GEMM", "").lower() in ("torch", "onednn"):
        return False
    return _library() is not None


def conv_adc(
    x: torch.Tensor,
    geometry: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]],
    m: torch.Tensor,
    n_dac: int | None,
    factor: torch.Tensor,
    adc: tuple[float, int] | None,
    out_features: int,
    c_tile: int,
    out_noise: tuple[float, int] | None,
) -> torch.Tensor:
    """``out [N, out_features, L]``: the convolution of ``x [N, C, H, W]`` (``geometry``:
    kernel size, stride, padding, dilation) through the read matrix ``m [n_in, R, n_out·S·C]``
    (input tile i takes patch rows ``i·R …``), the patches in DAC levels with ``n_dac``
    levels each side of zero (None: the patches as they are, scale 1: the DAC off, or
    binary spikes, which it leaves unchanged), the column outputs ``y`` through
    ``f(y + alpha·z)`` with ``f(v) = clamp(rint(v·k), −q, q)`` for ``adc = (k, q)`` (None:
    ``f(v) = v``), z the
    normals of ``out_noise = (alpha, seed)`` (None: no noise), times ``factor [n_in, n_out,
    S]`` and the patch's DAC scale, summed over slices and tiles: what
    :func:`converter_kernels.unfold_dac`, the tile products and
    :func:`converter_kernels.adc_accumulate` give, to the products' float rounding."""
    x = x.contiguous()
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geometry
    Ho, Wo = output_size((H, W), *geometry)
    n_in, R, cols = m.shape
    n_out, S = factor.shape[1:]
    lib, nr, widest = _library()
    panels = -(-cols // nr)  # blocks of the micro-tile's nr columns
    packed = F.pad(m.to(torch.float32), (0, panels * nr - cols))  # [n_in, R, panels·nr]
    packed = packed.view(n_in, R, panels, nr).transpose(1, 2).contiguous()
    factor = factor.to(torch.float32).contiguous()
    out = torch.empty(N, out_features, Ho * Wo, dtype=torch.float32)
    k, q = adc if adc is not None else (1.0, 0)
    alpha, seed = out_noise if out_noise is not None else (0.0, 0)
    a = _Args(
        x=x.data_ptr(), b=packed.data_ptr(), gain=factor.data_ptr(), out=out.data_ptr(),
        N=N, C=C, H=H, W=W, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, Ho=Ho, Wo=Wo,
        R=R, n_in=n_in, cols=cols, n_out=n_out, S=S, c_tile=c_tile, out_f=out_features,
        ho_rows=min(Ho, max(1, _PANEL // Wo)), samples=max(1, _PANEL // (Ho * Wo)), n_dac=float(n_dac or 0), k=k, q=float(q), alpha=float(alpha),
        dac=int(n_dac is not None), adc=int(adc is not None), out_noise=int(out_noise is not None),
        isa=cbuild.isa(widest), failed=0, seed=int(seed) & (2**64 - 1),
    )  # fmt: skip
    lib.conv_adc(ctypes.byref(a), cbuild.threads(N * Ho * Wo * C * kh * kw * cols, _PARALLEL_MIN))
    if a.failed:
        raise MemoryError("analog: no memory for the convolution kernel's work buffers")
    return out


class _Args(ctypes.Structure):  # conv_adc_args of the C file
    _fields_ = [
        *((n, ctypes.c_void_p) for n in ("x", "b", "gain", "out")),
        *converter_kernels.GEOMETRY_FIELDS,
        *((n, ctypes.c_int64) for n in ("cols", "n_out", "S", "c_tile", "out_f", "ho_rows", "samples")),
        *((n, ctypes.c_float) for n in ("n_dac", "k", "q", "alpha")),
        *((n, ctypes.c_int32) for n in ("dac", "adc", "out_noise", "isa", "failed")),
        ("seed", ctypes.c_uint64),
    ]


@functools.cache
def _library():
    """``(ctypes library, columns per micro-tile, the widest loops this CPU runs: 3 AVX-512, 2
    AVX2 with FMA)``, built once; None where the CPU has neither or no compiler works (one
    warning)."""
    lib = cbuild.load_real(
        _SOURCE, "float", "analog convolution kernel", "using the passes", {"conv_adc": _Args}
    )
    if lib is None:
        return None
    lib.conv_adc_available.restype = ctypes.c_int
    widest = int(lib.conv_adc_available())
    if not widest:
        return None
    lib.conv_adc_tile_columns.restype = ctypes.c_int
    return lib, int(lib.conv_adc_tile_columns()), widest
