"""The crossbars written at run time in one compiled pass: operand tiles to the read matrix.

:class:`spikecim.analog.dynamic.AnalogMatMul` writes its second operand ``b [B, K, N]`` into
crossbars at every call. In the common inference case (CPU, float32 or float64, no gradient,
the differential mapping whose idle cell reads exactly G_min, a device whose read-noise
formula the kernel has: PCM or none) the C function ``written_run`` of
``nn/kernels/normal_cpu.c`` goes from ``b`` to the signed read matrix
``mt [B, n_in, R, n_out·S·C]`` the product multiplies by, in one pass over the entries:
scale (the tile's abs-max or the calibrated range), clip, ClipFormer, bit slicing,
conductance levels, write noise, PCM read noise and sign. The formulas, each the one of the
torch path in :mod:`spikecim.analog.dynamic`, are written out at the top of that C section.

The normals come from the generator of :mod:`spikecim.analog.noise` for one key drawn from
torch's generator: element ``j`` of ``mt`` (row-major) takes normal ``j`` of the stream for
its write noise and normal ``total + j`` for its read noise (``total`` = ``mt.numel()``),
so ``noise.standard_normal((2 * total,), seed)`` reproduces them, whatever the number of
threads. Elsewhere, or without a C compiler (one warning from :mod:`spikecim.analog.noise`),
the torch path runs.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from spikecim.analog import noise
from spikecim.analog.config import CrossbarConfig
from spikecim.analog.devices import PCMDevice
from spikecim.nn.kernels import cbuild

__all__ = ["available", "fused_device", "lead_strides", "read_matrix"]

_PARALLEL_MIN = 1 << 15  # cells below which one thread beats waking more


def fused_device(cfg: CrossbarConfig, unit: str) -> str | None:
    """``"pcm"`` or ``"none"``: the read noise the kernel applies for this crossbar (None:
    a device whose read-noise formula the kernel does not have; the torch path runs)."""
    if unit != "crossbar" or not cfg.device.has_read_noise:
        return "none"
    if type(cfg.device) is PCMDevice:
        return "pcm"
    return None


def read_matrix(
    b: torch.Tensor,
    cfg: CrossbarConfig,
    unit: str,
    bound: float | None,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(mt [B, n_in, R, n_out·S·C], w_scale [B, n_in, 1, n_out, 1], gain [S])`` of
    ``b [B, K, N]`` written into crossbars of ``cfg`` (differential mapping, idle cell
    exact) with the normals of key ``seed``; ``bound``: the calibrated operand range (None:
    each tile's abs-max). None when the kernel cannot take the call.

    ``b`` is read where it lies, through its strides: ``[B, K, N]`` or ``[B1, B2, K, N]``
    (matrices ``B = B1·B2``, in row-major order), such as the keys of attention split into
    heads and transposed, a view of the projection's output, without a copy."""
    device = fused_device(cfg, unit)
    if device is None or cfg.mapping != "differential" or b.dim() not in (3, 4):
        return None
    if b.device.type != "cpu" or b.dtype not in (torch.float32, torch.float64):
        return None
    lib = _library(b.dtype)
    if lib is None or b.requires_grad and torch.is_grad_enabled():
        return None
    written_run, Args = lib
    L1, s0, s1 = lead_strides(b)
    *_, K, N = b.shape
    Bn = b.numel() // max(K * N, 1)
    R, C = min(cfg.tile_rows, K), min(cfg.tile_cols, N)
    n_in, n_out = -(-K // R), -(-N // C)
    if cfg.weight_bits is None:
        S, q_max, base = 1, 0, 2
        gain = torch.ones(1, dtype=b.dtype)
    else:
        S, q_max, base = cfg.n_slices, 2 ** (cfg.weight_bits - 1) - 1, 2**cfg.bits_per_cell
        gain = torch.tensor([(base - 1) * base**k / q_max for k in range(S)], dtype=b.dtype)
    if S > 64 or Bn * K * N == 0:
        return None
    out = torch.empty((Bn, n_in, R, n_out * S * C), dtype=b.dtype)
    scale = torch.empty((Bn, n_in, 1, n_out, 1), dtype=b.dtype)
    dyn = cfg.dynamic
    span = cfg.g_max_us - cfg.g_min_us
    clip = unit == "crossbar" and dyn.clipformer.enabled
    s = dyn.clipformer.alpha - 1.0 if dyn.clipformer.shift == "alpha_minus_one" else dyn.clipformer.alpha
    ws = dyn.write_noise_gamma * dyn.write_noise_sigma if unit == "crossbar" else 0.0
    # the read just after the write: t = 0
    c0 = cfg.device.read_noise_coeff(0.0, cfg.device.read_noise_scale) if device == "pcm" else 0.0
    args = Args(
        B=Bn, K=K, N=N, R=R, C=C, n_in=n_in, n_out=n_out, S=S,
        L1=L1, s0=s0, s1=s1, sK=b.stride(-2), sN=b.stride(-1),
        seed=seed & ((1 << 64) - 1),
        calibrated=int(bound is not None), clip=int(clip), q_max=q_max, base=base,
        cond_n=0 if cfg.conductance_levels is None else cfg.conductance_levels - 1,
        read_pcm=int(device == "pcm"),
        bound=1.0 if bound is None else bound,
        shift=s * cfg.g_min_us / span, top=(dyn.clipformer.beta * cfg.g_max_us - cfg.g_min_us) / span,
        ws=ws, floor=-cfg.g_min_us / span, span=span, g_min=cfg.g_min_us, g_max=cfg.g_max_us, c0=c0,
        b=b.data_ptr(), out=out.data_ptr(), scale=scale.data_ptr(),
    )  # fmt: skip
    if written_run(ctypes.byref(args), cbuild.threads(out.numel(), _PARALLEL_MIN)) != 0:
        return None  # a work buffer could not be allocated
    return out, scale, gain


def lead_strides(t: torch.Tensor) -> tuple[int, int, int]:
    """``(L1, s0, s1)`` for ``t [L0, L1, rows, cols]`` (strides ``s0``, ``s1`` of its leading
    dimensions) or ``t [B, rows, cols]`` (as ``[1, B, ...]``): matrix ``j`` of the batch
    starts ``(j // L1)·s0 + (j % L1)·s1`` elements in, the addressing of the compiled
    kernels that read a batch of matrices through a view."""
    if t.dim() == 3:
        return t.shape[0], 0, t.stride(0)
    return t.shape[1], t.stride(0), t.stride(1)


def _args_struct(real) -> type[ctypes.Structure]:
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p
    fields = [(n, i64) for n in ("B", "K", "N", "R", "C", "n_in", "n_out", "S", "L1", "s0", "s1", "sK", "sN")]
    fields += [("seed", ctypes.c_uint64)]
    fields += [(n, i32) for n in ("calibrated", "clip", "q_max", "base", "cond_n", "read_pcm")]
    fields += [(n, real) for n in ("bound", "shift", "top", "ws", "floor", "span", "g_min", "g_max", "c0")]
    fields += [("b", ptr), ("out", ptr), ("scale", ptr)]
    return type("WrittenArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library(dtype: torch.dtype):
    """``(written_run, argument struct)`` from the generator's library (None without one)."""
    if not noise.available(dtype):
        return None
    lib, _ = noise._library(dtype)
    Args = _args_struct(ctypes.c_float if dtype == torch.float32 else ctypes.c_double)
    fn = lib.written_run
    fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn, Args


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled pass runs for ``dtype`` on this machine."""
    return dtype in (torch.float32, torch.float64) and _library(dtype) is not None
