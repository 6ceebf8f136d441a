"""The fused LIF on the CPU: ``lif_cpu.c`` compiled on first use, called through ctypes.

The C file runs the whole time loop of :func:`spikecim.nn.functional.lif` forward, and the
reverse-time surrogate-gradient loop backward, over chunks of neurons on
``torch.get_num_threads()`` threads: OpenMP threads when the compiler builds it with
``-fopenmp`` (the libgomp torch has loaded is the one used, so its threads, already awake
from the layer before, take the chunks), else threads started for the call. It is compiled once per machine by
:func:`spikecim.nn.kernels.cbuild.build` (the system C compiler, a verified cache); the
build takes a few seconds once. When no compiler works, :func:`available` is False and
:func:`spikecim.nn.kernels.select` runs the reference loop (with a warning).

The autograd function (what is saved for the backward pass) is shared with the GPU kernel
in :mod:`spikecim.nn.kernels.fused`; this module only launches the compiled loops.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from spikecim.nn.kernels import cbuild, fused

__all__ = ["SURROGATE_IDS", "available", "lif_cpu", "lif_cpu_spikes", "supports"]

SURROGATE_IDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2, "triangular": 3, "straight_through": 4}
_SOURCE = Path(__file__).with_name("lif_cpu.c")

_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
# float64 is for checking, not speed: one plain build (no AVX2 copy) halves its build time.
# Below this many neuron-steps one thread does it all. On torch's OpenMP threads (awake from
# the layer before) a second thread pays already at two chunks (the Linear+LIF layer of
# `spikecim bench --suite lif` on 2 cores, B = 2 and 16); threads started per call (no
# OpenMP) cost more.
_PARALLEL_MIN = 1 << 16


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled CPU kernel can run for ``dtype`` on this machine."""
    return dtype in _REALS and _library(dtype) is not None


def supports(x: torch.Tensor, params, mem0) -> bool:
    """Whether this call is one the CPU kernel implements (else the reference runs)."""
    return fused.supports(x, params, mem0, "cpu", _REALS, SURROGATE_IDS) and available(x.dtype)


def lif_cpu(x: torch.Tensor, params, mem0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` of the LIF over ``x[T, B, ...]`` (same contract as the reference)."""
    return fused.fused_lif(_CPU, x, params, mem0)


def lif_cpu_spikes(
    x: torch.Tensor, params, mem0: torch.Tensor | None = None, inplace: bool = False
) -> torch.Tensor:
    """The spikes of :func:`lif_cpu` alone (no membrane sequence is written where backward does
    not read it); ``inplace``: written over ``x`` (contiguous), which is returned."""
    return fused.fused_spikes(_CPU, x, params, mem0, inplace)


class _CPULauncher:
    """Runs ``lif_forward`` / ``lif_backward`` of the compiled library on CPU tensors."""

    takes_scalars = True  # beta, theta may come as one value for every neuron (no [M] copy)
    saves_v_minus_theta = True  # same-step subtract keeps V - theta, not U and spike bytes
    membrane_optional = True  # mem may be None: the loop then writes no membrane sequence
    writes_in_place = True  # spk may be x, and gx the kept sequence (each element read before written)

    def forward(self, x, beta, th, m0, spk, mem, vsave, sbits, params) -> None:
        lib, Args = _library(x.dtype)
        T, M = x.shape[0], x[0].numel()
        a = Args(
            **_neurons(T, M, params, beta, th, m0),
            x=_ptr(x),
            spk=_ptr(spk),
            mem=_ptr(mem),
            vsave=_ptr(vsave),
            sbits=_ptr(sbits),
        )
        lib.lif_forward(ctypes.byref(a), _threads(T * M))

    def backward(self, gs, gm, saved, sbits, beta, th, m0, gx, gbeta, gth, gm0, params) -> None:
        lib, Args = _library(saved.dtype)
        T, M = saved.shape[0], saved[0].numel()
        a = Args(
            **_neurons(T, M, params, beta, th, m0),
            gs=_ptr(gs),
            gm=_ptr(gm),
            gs_scalar=_is_scalar(gs),
            gm_scalar=_is_scalar(gm),
            saved=_ptr(saved),
            sbits_in=_ptr(sbits),
            gx=_ptr(gx),
            gbeta=_ptr(gbeta),
            gth=_ptr(gth),
            gm0=_ptr(gm0),
            sg=SURROGATE_IDS[params.surrogate.name],
            detach=int(params.detach_reset),
            sgp=params.surrogate.param,
        )
        lib.lif_backward(ctypes.byref(a), _threads(T * M))


_CPU = _CPULauncher()


def _neurons(T: int, M: int, params, beta, th, m0) -> dict:
    """The argument fields both loops share: sizes, reset mode, β, θ and the initial membrane."""
    return {
        "T": T,
        "M": M,
        "delayed": int(params.reset_delay),
        "subtract": int(params.reset == "subtract"),
        "beta_scalar": int(beta.numel() == 1),
        "th_scalar": int(th.numel() == 1),
        "beta": _ptr(beta),
        "th": _ptr(th),
        "m0": _ptr(m0),
    }


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def _is_scalar(t: torch.Tensor | None) -> int:
    return int(t is not None and not t.is_contiguous())


def _threads(work: int) -> int:
    return cbuild.threads(work, _PARALLEL_MIN)


def _args_struct(real) -> type[ctypes.Structure]:
    ptr, long, int_ = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    fields = [("T", long), ("M", long), ("delayed", int_), ("subtract", int_)]
    fields += [("beta_scalar", int_), ("th_scalar", int_)]
    fields += [(n, ptr) for n in ("beta", "th", "m0", "x", "spk", "mem", "vsave", "sbits")]
    fields += [(n, ptr) for n in ("gs", "gm")] + [("gs_scalar", int_), ("gm_scalar", int_)]
    fields += [(n, ptr) for n in ("saved", "sbits_in", "gx", "gbeta", "gth", "gm0")]
    fields += [("sg", int_), ("detach", int_), ("sgp", real)]
    return type("LIFArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library(dtype: torch.dtype):
    """``(ctypes library, argument struct)`` for ``dtype``, building it once; None on failure."""
    real_c, real = _REALS[dtype]
    what = "fused CPU LIF kernel"
    lib = cbuild.load(
        _SOURCE, f"lif_cpu_{real_c}", cbuild.flag_sets(real_c), what, "using the reference loop"
    )
    if lib is None:
        return None
    Args = _args_struct(real)
    for name in ("lif_forward", "lif_backward"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
        fn.restype = None
    return lib, Args
