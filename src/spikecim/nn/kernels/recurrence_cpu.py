"""The token recurrences of the language models on the CPU: C files compiled on first use,
called through ctypes.

- ``wkv_cpu.c``: RWKV-4's WKV (:func:`spikecim.nn.recurrence.wkv`) forward, and its gradients
  for ``w``, ``u``, ``k``, ``v`` backward (a forward sweep recomputing the carry, then a
  reverse sweep);
- ``mlgru_cpu.c``: the MLGRU scan ``h_t = f_t ⊙ h_{t−1} + i_t``
  (:func:`spikecim.nn.recurrence.mlgru_scan`) forward and backward.

Both run over chunks of (batch, channel) pairs on ``torch.get_num_threads()`` threads, in
float32 and float64. Each is compiled once per machine by
:func:`spikecim.nn.kernels.cbuild.build`; when no compiler works, :func:`available` is False
(with one warning per kernel) and the reference loops of :mod:`spikecim.nn.recurrence` run.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from spikecim.nn.kernels import cbuild

__all__ = ["KERNELS", "available", "mlgru_cpu", "supports_mlgru", "supports_wkv", "wkv_cpu"]

_REALS = {torch.float32: "float", torch.float64: "double"}
# float64 is for checking, not speed: one plain build (no AVX2 copy; WKV uses libm's exp).
# Below this many token-channel steps one thread is faster than starting more.
_PARALLEL_MIN = 1 << 16

_PTR, _LONG = ctypes.c_void_p, ctypes.c_int64
# kernel -> (what it computes, the fields of its argument struct, in the C file's order)
KERNELS = {
    "wkv": (
        "WKV",
        [("L", _LONG), ("M", _LONG), ("D", _LONG)]
        + [(n, _PTR) for n in ("w", "u", "k", "v", "y", "gy", "gw", "gu", "gk", "gv", "ys", "zs", "qs")],
    ),
    "mlgru": (
        "MLGRU scan",
        [("L", _LONG), ("M", _LONG)] + [(n, _PTR) for n in ("i", "f", "h0", "h", "gh", "gi", "gf", "gh0")],
    ),
}


def available(kernel: str, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled ``kernel`` (``"wkv"`` or ``"mlgru"``) can run for ``dtype`` here."""
    return dtype in _REALS and _library(kernel, dtype) is not None


def supports_wkv(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the WKV kernel implements this call: CPU tensors of one float dtype,
    ``k, v [L, B, D]`` and ``w, u [D]`` (anything else runs the reference loop)."""
    if not _same_cpu_dtype(w, u, k, v) or k.dim() != 3 or k.shape != v.shape:
        return False
    d = k.shape[-1]
    return w.shape == (d,) and u.shape == (d,) and k.numel() > 0 and available("wkv", k.dtype)


def supports_mlgru(i: torch.Tensor, f: torch.Tensor, h0: torch.Tensor | None) -> bool:
    """Whether the MLGRU kernel implements this call: CPU tensors of one float dtype,
    ``i, f`` of one shape ``[L, ...]`` and ``h0`` (if given) the shape of one step."""
    ts = (i, f) if h0 is None else (i, f, h0)
    if not _same_cpu_dtype(*ts) or i.dim() < 1 or i.shape != f.shape or i.numel() == 0:
        return False
    return (h0 is None or h0.shape == i.shape[1:]) and available("mlgru", i.dtype)


def wkv_cpu(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """WKV of ``k, v [L, B, D]`` (same contract as the reference loop), differentiable."""
    return _WKV.apply(w, u, k, v)


def mlgru_cpu(
    i: torch.Tensor, f: torch.Tensor, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ``h_t`` and the last (same contract as the reference loop), differentiable."""
    h = _MLGRU.apply(i, f, torch.zeros_like(i[0]) if h0 is None else h0)
    return h, h[-1]


class _WKV(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, u, k, v):
        w, u, k, v = (t.contiguous() for t in (w, u, k, v))
        y = torch.empty_like(k)
        _call("wkv", "forward", k, w=w, u=u, k=k, v=v, y=y, D=k.shape[-1])
        ctx.save_for_backward(w, u, k, v)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        w, u, k, v = ctx.saved_tensors
        gk, gv = torch.empty_like(k), torch.empty_like(v)
        gw, gu = k.new_empty(k.shape[1:]), k.new_empty(k.shape[1:])
        ys, zs, qs = k.new_empty((3, *k.shape))  # y, 1/s, q of every step, from the forward sweep
        inputs = {"w": w, "u": u, "k": k, "v": v, "gy": gy.contiguous()}
        outputs = {"gw": gw, "gu": gu, "gk": gk, "gv": gv, "ys": ys, "zs": zs, "qs": qs}
        _call("wkv", "backward", k, D=k.shape[-1], **inputs, **outputs)
        return gw.sum(0), gu.sum(0), gk, gv


class _MLGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i, f, h0):
        i, f, h0 = (t.contiguous() for t in (i, f, h0))
        h = torch.empty_like(i)
        _call("mlgru", "forward", i, i=i, f=f, h0=h0, h=h)
        ctx.save_for_backward(f, h0, h)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, gh):
        f, h0, h = ctx.saved_tensors
        gi, gf, gh0 = torch.empty_like(h), torch.empty_like(f), torch.empty_like(h0)
        _call("mlgru", "backward", h, f=f, h0=h0, h=h, gh=gh.contiguous(), gi=gi, gf=gf, gh0=gh0)
        return gi, gf, gh0


def _same_cpu_dtype(*ts: torch.Tensor) -> bool:
    return all(t.device.type == "cpu" and t.dtype == ts[0].dtype for t in ts)


def _call(kernel: str, direction: str, x: torch.Tensor, **fields) -> None:
    """Run ``<kernel>_<direction>`` over ``x [L, ...]``: sizes from ``x``, tensors as pointers."""
    lib, Args = _library(kernel, x.dtype)
    args = {n: ctypes.c_void_p(t.data_ptr()) if isinstance(t, torch.Tensor) else t for n, t in fields.items()}
    threads = cbuild.threads(x.numel(), _PARALLEL_MIN)
    getattr(lib, f"{kernel}_{direction}")(ctypes.byref(Args(L=x.shape[0], M=x[0].numel(), **args)), threads)


@functools.cache
def _library(kernel: str, dtype: torch.dtype):
    """``(ctypes library, argument struct)`` of ``kernel`` for ``dtype``, built once; None on failure."""
    title, fields = KERNELS[kernel]
    Args = type(f"{kernel}_args", (ctypes.Structure,), {"_fields_": fields})
    lib = cbuild.load_real(
        Path(__file__).with_name(f"{kernel}_cpu.c"),
        _REALS[dtype],
        f"{title} CPU kernel",
        "using the reference loop",
        {f"{kernel}_{direction}": Args for direction in ("forward", "backward")},
    )
    return None if lib is None else (lib, Args)
