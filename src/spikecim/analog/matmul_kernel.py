"""The product of crossbars written at run time in two compiled passes: ``matmul_adc_cpu.c``.

:class:`spikecim.analog.dynamic.AnalogMatMul` streams the rows of ``a [B, M, K]`` through the
signed read matrix ``mt [B, n_in, R, n_out·S·C]`` of its written operand. On the CPU (float32
or float64, the differential mapping, no ADC observer) two kernels replace its torch passes:

- :func:`columns`: the input DAC of every row and input tile (abs-max, ``dac.bits``: the
  levels of :func:`spikecim.analog.converter_kernels.dac_levels`) and the MVM, one pass
  that writes the column outputs ``y [B, n_in, M, n_out·S·C]`` once, instead of a pad, a
  copy into tiles, the DAC, ``matmul`` and the copies between them;
- :func:`output`: the ADC, the shift-and-add of the slices, each tile's scale, the DAC's
  scales and the sum over input tiles, one read of ``y`` and one write of ``[B, M, N]``
  instead of five passes.

The output noise is added to ``y`` between them by :func:`spikecim.analog.noise.add_normal_`
(the same draws as the torch path). The DAC and ADC levels are those of the torch path; the
MVM sums its rows in ascending order where ``bmm`` picks its own, so the result equals the
torch path to float rounding (bit for bit where the products are exact). The formulas are
written out at the top of the C file. Without a C compiler (one warning) the torch passes run.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from spikecim.analog import written_kernel
from spikecim.nn.kernels import cbuild

__all__ = ["available", "columns", "output"]

_SOURCE = Path(cbuild.__file__).with_name("matmul_adc_cpu.c")
_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
_PARALLEL_MIN = 1 << 16  # column outputs below which one thread beats waking more


def available(x: torch.Tensor, rows: int) -> bool:
    """Whether the kernels run for ``x`` (a non-empty CPU tensor of float32 or float64) and
    tiles of ``rows`` rows (compiler found)."""
    if x.device.type != "cpu" or x.dtype not in _REALS or x.numel() == 0:
        return False
    lib = _library(x.dtype)
    return lib is not None and rows <= lib[3]


def columns(a: torch.Tensor, mt: torch.Tensor, n_dac: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The column outputs ``y [B, n_in, M, W]`` of the rows of ``a [B, M, K]`` through the read
    matrix ``mt [B, n_in, R, W]`` (one input tile per R rows of ``a``), in DAC levels with
    ``n_dac`` (levels each side of zero; None: the DAC off), and the rows' DAC scales
    ``[B, n_in, M]`` (None with the DAC off). ``a`` may also be ``[B1, B2, M, K]`` (``B =
    B1·B2``) and is read where it lies, through its strides (queries split into heads)."""
    mt = mt.contiguous()
    *_, M, K = a.shape
    Bn, n_in, R, W = mt.shape
    L1, s0, s1 = written_kernel.lead_strides(a)
    y = torch.empty(Bn, n_in, M, W, dtype=a.dtype)
    scale = torch.empty(Bn, n_in, M, dtype=a.dtype) if n_dac is not None else None
    lib, Columns, _, _ = _library(a.dtype)
    args = Columns(
        a=a.data_ptr(), mt=mt.data_ptr(), y=y.data_ptr(), dac_scale=None if scale is None else scale.data_ptr(),
        B=Bn, M=M, K=K, R=R, n_in=n_in, W=W, L1=L1, s0=s0, s1=s1, sM=a.stride(-2), sK=a.stride(-1),
        dac=int(n_dac is not None), n_dac=float(n_dac or 0),
    )  # fmt: skip
    lib.written_columns(ctypes.byref(args), cbuild.threads(y.numel(), _PARALLEL_MIN))
    return y, scale


def output(
    y: torch.Tensor,
    w_scale: torch.Tensor,
    gain: torch.Tensor,
    dac_scale: torch.Tensor | None,
    adc: tuple[float, int] | None,
    n_out: int,
    N: int,
) -> torch.Tensor:
    """``out [B, M, N]`` from the column outputs ``y [B, n_in, M, n_out·S·C]``: each value
    ``f(y)`` with ``f(v) = clamp(rint(v·k), −q, q)`` for ``adc = (k, q)`` (None: ``f(v) =
    v``), one slice times ``w_scale·gain[0]``, several summed with ``gain [S]`` then times
    ``w_scale [B, n_in, 1, n_out, 1]``, times ``dac_scale [B, n_in, M]`` (None: 1), summed
    over input tiles."""
    y = y.contiguous()
    Bn, n_in, M, W = y.shape
    S = gain.numel()
    C = W // (n_out * S)
    w_scale = w_scale.to(y.dtype).reshape(Bn, n_in, n_out).contiguous()
    gain = gain.to(y.dtype).contiguous()
    out = torch.empty(Bn, M, N, dtype=y.dtype)
    k, q = adc if adc is not None else (1.0, 0)
    lib, _, Output, _ = _library(y.dtype)
    args = Output(
        y=y.data_ptr(), w_scale=w_scale.data_ptr(), gain=gain.data_ptr(),
        dac_scale=None if dac_scale is None else dac_scale.contiguous().data_ptr(), out=out.data_ptr(),
        B=Bn, M=M, N=N, n_in=n_in, n_out=n_out, S=S, C=C, adc=int(adc is not None), k=k, q=float(q),
    )  # fmt: skip
    lib.written_output(ctypes.byref(args), cbuild.threads(y.numel(), _PARALLEL_MIN))
    return out


def _structs(real) -> tuple[type[ctypes.Structure], type[ctypes.Structure]]:
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    cols = [(n, ptr) for n in ("a", "mt", "y", "dac_scale")] + [
        (n, i64) for n in ("B", "M", "K", "R", "n_in", "W", "L1", "s0", "s1", "sM", "sK")
    ]
    cols += [("dac", i32), ("n_dac", real)]
    outs = [(n, ptr) for n in ("y", "w_scale", "gain", "dac_scale", "out")]
    outs += [(n, i64) for n in ("B", "M", "N", "n_in", "n_out", "S", "C")]
    outs += [("adc", i32), ("k", real), ("q", real)]
    return (
        type("ColumnsArgs", (ctypes.Structure,), {"_fields_": cols}),
        type("OutputArgs", (ctypes.Structure,), {"_fields_": outs}),
    )


@functools.cache
def _library(dtype: torch.dtype):
    """``(ctypes library, columns struct, output struct, the most rows a tile may have)`` for
    ``dtype``, built once; None (with a warning) when no compiler works."""
    real_c, real = _REALS[dtype]
    lib = cbuild.load(
        _SOURCE,
        f"matmul_adc_cpu_{real_c}",
        cbuild.flag_sets(real_c),
        "kernels of the written crossbars' product",
        "using the torch passes",
    )
    if lib is None:
        return None
    cols, outs = _structs(real)
    for name, Args in (("written_columns", cols), ("written_output", outs)):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
        fn.restype = None
    lib.max_rows.restype = ctypes.c_int32
    return lib, cols, outs, int(lib.max_rows())
