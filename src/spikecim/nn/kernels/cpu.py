"""The fused LIF on the CPU: ``lif_cpu.c`` compiled on first use, called through ctypes.

The C file runs the whole time loop of :func:`spikecim.nn.functional.lif` forward, and the
reverse-time surrogate-gradient loop backward, over chunks of neurons on
``torch.get_num_threads()`` threads. It is compiled once per machine with the system C
compiler (``$CC``, else ``cc``/``gcc``) into a cache folder (``$SPIKECIM_CACHE_DIR``, else
``~/.cache/spikecim/kernels``), keyed by a hash of the source and the flags; the build
takes about a second and needs neither torch headers nor ninja. When no compiler works,
:func:`available` is False and :func:`spikecim.nn.kernels.select` runs the reference loop.

Memory: the backward pass keeps the membrane output (which the caller holds anyway) and,
for the same-step subtract reset, the spikes as one byte each; for the same-step zero
reset, where the membrane after a spike is 0, it keeps the pre-reset membrane V instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

__all__ = ["available", "supports", "lif_cpu", "SURROGATE_IDS"]

SURROGATE_IDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2, "triangular": 3, "straight_through": 4}
_SOURCE = Path(__file__).with_name("lif_cpu.c")
_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-pthread"]
_REALS = {torch.float32: ("float", ctypes.c_float), torch.float64: ("double", ctypes.c_double)}
# Below this many neuron-steps one thread is faster than starting more.
_PARALLEL_MIN = 1 << 16


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled CPU kernel can run for ``dtype`` on this machine."""
    return dtype in _REALS and _library(dtype) is not None


def supports(x: torch.Tensor, params, mem0) -> bool:
    """Whether this call is one the CPU kernel implements (else the reference runs)."""
    if x.device.type != "cpu" or x.dtype not in _REALS or x.dim() < 1 or x.shape[0] == 0:
        return False
    if params.surrogate.name not in SURROGATE_IDS:
        return False
    for value in (params.beta, params.threshold):
        if isinstance(value, torch.Tensor):
            if value.device != x.device or not value.is_floating_point():
                return False
            # A non-scalar tensor of another dtype would promote the reference's result.
            if value.dim() > 0 and value.dtype != x.dtype:
                return False
    if mem0 is not None and (mem0.shape != x.shape[1:] or mem0.dtype != x.dtype or mem0.device != x.device):
        return False
    return available(x.dtype)


def lif_cpu(x: torch.Tensor, params, mem0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` of the LIF over ``x[T, B, ...]`` (same contract as the reference)."""
    step = x.shape[1:]
    beta = _per_neuron(params.beta, step, x)
    th = _per_neuron(params.threshold, step, x)
    return _LIF.apply(x, beta, th, mem0, params)


def _per_neuron(value, step: torch.Size, x: torch.Tensor) -> torch.Tensor:
    """``value`` as a contiguous ``[*step]`` tensor of x's dtype; autograd sums its gradient back."""
    if not isinstance(value, torch.Tensor):
        return torch.full(step, float(value), dtype=x.dtype, device=x.device)
    return value.to(x.dtype).expand(step).contiguous()


class _LIF(torch.autograd.Function):
    """Forward and backward of the whole sequence in one compiled call each."""

    @staticmethod
    def forward(ctx, x, beta, th, mem0, params):
        ctx.set_materialize_grads(False)
        lib, Args = _library(x.dtype)
        x = x.contiguous()
        T, M = x.shape[0], x[0].numel()
        spk, mem = torch.empty_like(x), torch.empty_like(x)
        m0 = mem0.contiguous() if mem0 is not None else None
        training = any(ctx.needs_input_grad[:4])
        same_step = not params.reset_delay
        subtract = params.reset == "subtract"
        sbits = torch.empty(x.shape, dtype=torch.uint8) if training and same_step and subtract else None
        vsave = torch.empty_like(x) if training and same_step and not subtract else None
        a = Args(
            T=T, M=M, delayed=int(params.reset_delay), subtract=int(subtract),
            beta=_ptr(beta), th=_ptr(th), m0=_ptr(m0), x=_ptr(x),
            spk=_ptr(spk), mem=_ptr(mem), vsave=_ptr(vsave), sbits=_ptr(sbits),
        )
        lib.lif_forward(ctypes.byref(a), _threads(T * M))
        if training:
            saved = vsave if vsave is not None else mem
            ctx.save_for_backward(saved, sbits, beta, th, m0)
            ctx.params = params
        return spk, mem

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_spk, grad_mem):
        saved, sbits, beta, th, m0 = ctx.saved_tensors
        p = ctx.params
        lib, Args = _library(saved.dtype)
        T, M = saved.shape[0], saved[0].numel()
        gs = grad_spk.contiguous() if grad_spk is not None else None
        gm = grad_mem.contiguous() if grad_mem is not None else None
        gx = torch.empty_like(saved)
        _, need_beta, need_th, need_m0, _ = ctx.needs_input_grad
        gbeta = torch.empty_like(beta) if need_beta else None
        gth = torch.empty_like(th) if need_th else None
        gm0 = torch.empty_like(saved[0]) if need_m0 else None
        if gs is None and gm is None:
            return None, None, None, None, None
        a = Args(
            T=T, M=M, delayed=int(p.reset_delay), subtract=int(p.reset == "subtract"),
            beta=_ptr(beta), th=_ptr(th), m0=_ptr(m0),
            gs=_ptr(gs), gm=_ptr(gm), saved=_ptr(saved), sbits_in=_ptr(sbits),
            gx=_ptr(gx), gbeta=_ptr(gbeta), gth=_ptr(gth), gm0=_ptr(gm0),
            sg=SURROGATE_IDS[p.surrogate.name], detach=int(p.detach_reset), sgp=p.surrogate.param,
        )
        lib.lif_backward(ctypes.byref(a), _threads(T * M))
        return gx, gbeta, gth, gm0, None


def _ptr(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def _threads(work: int) -> int:
    return 1 if work < _PARALLEL_MIN else max(1, torch.get_num_threads())


def _args_struct(real) -> type[ctypes.Structure]:
    ptr, long, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
    fields = [("T", long), ("M", long), ("delayed", int_), ("subtract", int_)]
    fields += [(n, ptr) for n in ("beta", "th", "m0", "x", "spk", "mem", "vsave", "sbits")]
    fields += [(n, ptr) for n in ("gs", "gm", "saved", "sbits_in", "gx", "gbeta", "gth", "gm0")]
    fields += [("sg", int_), ("detach", int_), ("sgp", real)]
    return type("LIFArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.lru_cache(maxsize=None)
def _library(dtype: torch.dtype):
    """``(ctypes library, argument struct)`` for ``dtype``, building it once; None on failure."""
    real_c, real = _REALS[dtype]
    try:
        path = _build(real_c)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as e:
        warnings.warn(f"spikecim: the fused CPU LIF kernel could not be built ({e}); using the reference loop")
        return None
    Args = _args_struct(real)
    for name in ("lif_forward", "lif_backward"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
        fn.restype = None
    return lib, Args


def _compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise OSError("no C compiler found (set CC)")


def _build(real_c: str) -> Path:
    cc = _compiler()
    flags = [*_FLAGS, f"-DREAL={real_c}"]
    key = hashlib.sha256(
        "\0".join([_SOURCE.read_text(), cc, *flags, platform.machine(), platform.system()]).encode()
    ).hexdigest()[:16]
    root = Path(os.environ.get("SPIKECIM_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spikecim")
    out = root / "kernels" / f"lif_cpu_{real_c}_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: parallel processes never see a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, str(_SOURCE), "-o", tmp, "-lm"], check=True, capture_output=True, timeout=120)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
