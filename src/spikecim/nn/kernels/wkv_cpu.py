"""RWKV-4's WKV on the CPU: ``wkv_cpu.c`` compiled on first use, called through ctypes.

The C file runs the token loop of :func:`spikecim.nn.recurrence.wkv` forward, and its
gradients for ``w``, ``u``, ``k``, ``v`` backward (a forward sweep recomputing the carry, then
a reverse sweep), over chunks of (batch, channel) pairs on ``torch.get_num_threads()``
threads, in float32 and float64. It is compiled once per machine by
:func:`spikecim.nn.kernels.cbuild.build`; when no compiler works, :func:`available` is
False (with one warning) and :func:`~spikecim.nn.recurrence.wkv` runs the reference loop.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from spikecim.nn.kernels import cbuild

__all__ = ["available", "supports", "wkv_cpu"]

_SOURCE = Path(__file__).with_name("wkv_cpu.c")
_REALS = {torch.float32: "float", torch.float64: "double"}
# float64 is for checking, not speed: one plain build (no AVX2 copy), libm's exp.
_EXTRA = {"float": [], "double": ["-DNO_CLONES"]}
# Below this many token-channel steps one thread is faster than starting more (a few exp per step).
_PARALLEL_MIN = 1 << 16


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled WKV kernel can run for ``dtype`` on this machine."""
    return dtype in _REALS and _library(dtype) is not None


def supports(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether this call is one the kernel implements: CPU tensors of one float dtype,
    ``k, v [L, B, D]`` and ``w, u [D]`` (anything else runs the reference loop)."""
    ts = (w, u, k, v)
    if any(t.device.type != "cpu" or t.dtype != k.dtype for t in ts) or k.dim() != 3 or k.shape != v.shape:
        return False
    d = k.shape[-1]
    return w.shape == (d,) and u.shape == (d,) and k.numel() > 0 and available(k.dtype)


def wkv_cpu(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """WKV of ``k, v [L, B, D]`` (same contract as the reference loop), differentiable."""
    return _WKV.apply(w, u, k, v)


class _WKV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, u, k, v):
        w, u, k, v = (t.contiguous() for t in (w, u, k, v))
        y = torch.empty_like(k)
        lib, Args = _library(k.dtype)
        lib.wkv_forward(
            ctypes.byref(Args(**_sizes(k), w=_ptr(w), u=_ptr(u), k=_ptr(k), v=_ptr(v), y=_ptr(y))),
            _threads(k),
        )
        ctx.save_for_backward(w, u, k, v)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        w, u, k, v = ctx.saved_tensors
        gy = gy.contiguous()
        gk, gv = torch.empty_like(k), torch.empty_like(v)
        gw, gu = k.new_empty(k.shape[1:]), k.new_empty(k.shape[1:])
        work = k.new_empty((3, *k.shape))  # y, 1/s, q of every step, written by the forward sweep
        lib, Args = _library(k.dtype)
        tensors = (w, u, k, v, gy, gw, gu, gk, gv, *work)
        ptrs = {n: _ptr(t) for n, t in zip(_BACKWARD_FIELDS, tensors, strict=True)}
        lib.wkv_backward(ctypes.byref(Args(**_sizes(k), **ptrs)), _threads(k))
        return gw.sum(0), gu.sum(0), gk, gv


_BACKWARD_FIELDS = ("w", "u", "k", "v", "gy", "gw", "gu", "gk", "gv", "ys", "zs", "qs")


def _sizes(k: torch.Tensor) -> dict:
    return {"L": k.shape[0], "M": k[0].numel(), "D": k.shape[-1]}


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _threads(k: torch.Tensor) -> int:
    return 1 if k.numel() < _PARALLEL_MIN else max(1, torch.get_num_threads())


def _args_struct() -> type[ctypes.Structure]:
    ptr, long = ctypes.c_void_p, ctypes.c_int64
    names = ("w", "u", "k", "v", "y", "gy", "gw", "gu", "gk", "gv", "ys", "zs", "qs")
    fields = [("L", long), ("M", long), ("D", long)] + [(n, ptr) for n in names]
    return type("WKVArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library(dtype: torch.dtype):
    """``(ctypes library, argument struct)`` for ``dtype``, building it once; None on failure."""
    real_c = _REALS[dtype]
    try:
        path = cbuild.build(
            _SOURCE, f"wkv_cpu_{real_c}", [*cbuild.FLAGS, f"-DREAL={real_c}", *_EXTRA[real_c]]
        )
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as e:
        detail = str(e)
        if isinstance(e, subprocess.CalledProcessError):
            detail = f"{e.cmd[0]} exited with status {e.returncode}"
            if e.stderr and e.stderr.strip():
                detail += ": " + e.stderr.decode(errors="replace").strip().splitlines()[-1]
        warnings.warn(
            f"spikecim: the WKV CPU kernel could not be built ({detail}); using the reference loop",
            stacklevel=2,
        )
        return None
    Args = _args_struct()
    for name in ("wkv_forward", "wkv_backward"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
        fn.restype = None
    return lib, Args
