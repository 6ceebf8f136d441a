"""Gaussian draws of the analog simulator: a counter-based generator and fused noise passes.

Every Gaussian an analog forward draws (read noise, output noise, the write noise of
crossbars written at run time) and the programming noise come from here. On the CPU a C
kernel (``nn/kernels/normal_cpu.c``, built once per machine by
:func:`spikecim.nn.kernels.cbuild.build`) draws them:

- **generator**: Philox4x32-10 (Salmon et al., SC 2011; docs/references.md#philox), key
  ``(seed mod 2^32, seed / 2^32)``, counter ``(b mod 2^32, b / 2^32, 0, 0)`` for block b
  (four 32-bit words w0 … w3), evaluated one block per vector lane (``nn/kernels/philox.h``);
- **transform, float32**: the inverse CDF by table interpolation (as Intel MKL's
  ``VSL_RNG_METHOD_GAUSSIAN_ICDF``; docs/references.md#gaussian-icdf), element 4b + k from
  word k of block b alone: the top bit the sign, u = (2 (w mod 2^31) + 1)·2^−33 in (0, ½),
  ``|z| = −Φ⁻¹(u)`` interpolated in a table over u's float binades and top 7 mantissa bits
  (|error| ≤ 3.3e-6, |z| ≤ 6.34);
- **transform, float64**: Box-Muller with libm, block b gives the normals of elements
  4b … 4b+3, words (w0, w1) the first pair and (w2, w3) the second (u1 = (w0 + 1)/2^32,
  u2 = w1/2^32, R = sqrt(−2 ln u1), z = R cos 2πu2, R sin 2πu2): float32 and float64 draws
  of one key differ;
- **seed**: a fresh 64-bit key per call, drawn from torch's generator (the global one unless
  a ``generator`` is given), so ``torch.manual_seed`` (or an explicit generator) reproduces
  a run exactly as before; **counter** = element index, so the draws do not depend on the
  number of threads (``torch.get_num_threads()``).

Each entry point is one pass over memory: draw, scale, add, clip (and subtract the pair)
together. Elsewhere (a GPU tensor, a dtype other than float32/float64, or no C compiler,
which warns once) the same formulas run as torch operations on ``torch.randn``.
The statistics of the draws are tested in tests/test_analog_noise.py (docs/analog.md#noise).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

import spikecim.nn.kernels as _kernels_pkg
from spikecim.nn.kernels import cbuild

__all__ = [
    "add_normal_",
    "available",
    "differential_read",
    "draw_seed",
    "icdf_raw",
    "noisy_read",
    "normal_like",
    "philox_raw",
    "standard_normal",
    "write_noise",
]

_SOURCE = Path(_kernels_pkg.__file__).with_name("normal_cpu.c")
_REALS = {
    torch.float32: ("float", ctypes.c_float),
    torch.float64: ("double", ctypes.c_double),
}
_OPS = {"normal": 0, "read": 1, "diff_read": 2, "add": 3, "write": 4}
# Below this many elements one thread beats waking more (the pass takes well under 1 ms).
_PARALLEL_MIN = 1 << 17
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled generator runs for ``dtype`` on this machine."""
    return dtype in _REALS and _library(dtype) is not None


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A 64-bit Philox key drawn from ``generator`` (None: torch's global generator)."""
    s = torch.randint(-(2**63), 2**63 - 1, (1,), generator=generator, dtype=torch.int64)
    return int(s) & _MASK64


def standard_normal(
    shape: tuple[int, ...] | torch.Size, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """N(0, 1) draws of the kernel for key ``seed``: element i (row-major) is the i-th normal
    of the stream. The CPU kernel is required (raises RuntimeError without it)."""
    out = torch.empty(tuple(shape), dtype=dtype)
    _run("normal", out, seed)
    return out


def normal_like(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A new tensor of N(0, 1) draws with ``t``'s shape, dtype and device."""
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    if _fast(out):
        _run("normal", out, draw_seed(generator))
        return out
    return _randn(t.shape, t, generator, None)


_ISAS = {"auto": 0, "scalar": 1, "avx2": 2, "avx512": 3}


def philox_raw(
    key: tuple[int, int], counter: tuple[int, int, int, int], blocks: int, isa: str = "auto"
) -> list[tuple[int, ...]]:
    """Raw Philox4x32-10 blocks (for tests): ``blocks`` blocks under ``key`` ``(k0, k1)``, the
    first at ``counter`` ``(c0, c1, c2, c3)``, each next one with ``c0 + 2^32·c1`` one higher,
    computed by the loop ``isa`` names ("auto": the one this CPU runs, "scalar", "avx2",
    "avx512"; RuntimeError where this CPU has no such loop)."""
    lib, _ = _require(torch.float32)
    buf = (ctypes.c_uint32 * (4 * blocks))()
    c0, c1, c2, c3 = (int(c) & _MASK32 for c in counter)
    k0, k1 = (int(k) & _MASK32 for k in key)
    if lib.philox_raw(c0 | c1 << 32, c2, c3, k0, k1, blocks, buf, _ISAS[isa]) != 0:
        raise RuntimeError(f"philox_raw: this CPU has no {isa} loop")
    return [tuple(buf[4 * j : 4 * j + 4]) for j in range(blocks)]


def icdf_raw(words: list[int], isa: str = "auto") -> torch.Tensor:
    """The float32 transform of raw 32-bit ``words`` (for tests): normal k is that of word k,
    computed by the loop ``isa`` names (as :func:`philox_raw`; ``len(words)`` a multiple of 4,
    the words of whole blocks)."""
    if len(words) % 4:
        raise ValueError(f"icdf_raw: words must be whole blocks of 4, got {len(words)}")
    lib, _ = _require(torch.float32)
    buf = (ctypes.c_uint32 * len(words))(*(int(w) & _MASK32 for w in words))
    out = torch.empty(len(words), dtype=torch.float32)
    if lib.icdf_raw(buf, len(words) // 4, ctypes.c_void_p(out.data_ptr()), _ISAS[isa]) != 0:
        raise RuntimeError(f"icdf_raw: this CPU has no {isa} loop")
    return out


def noisy_read(
    g: torch.Tensor,
    std: torch.Tensor,
    out: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``max(g + std·N(0, 1), 0)`` elementwise (``std`` of ``g``'s shape) into ``out`` (default a
    new tensor; it may be ``g``). ``seed``: the key (default drawn from ``generator``)."""
    out = torch.empty_like(g, memory_format=torch.contiguous_format) if out is None else out
    if _fast(out, g, std):
        _run("read", out, _seed(seed, generator), g=g, std=std)
        return out
    noise = _randn(g.shape, g, generator, seed)
    return out.copy_(noise.mul_(std).add_(g).clamp_(min=0.0))


def differential_read(
    g: torch.Tensor,
    std: torch.Tensor,
    out: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """One read of G+/G− pairs ``g[2, ...]`` (σ ``std[2, ...]``):
    ``max(g[0] + std[0]·z0, 0) − max(g[1] + std[1]·z1, 0)`` where ``z`` are the normals of
    ``g``'s elements (the same draws as :func:`noisy_read` on ``g`` with the same key), into
    ``out`` of shape ``g.shape[1:]`` (default a new tensor)."""
    if g.shape[0] != 2:
        raise ValueError(f"differential_read: g must be [2, ...] (G+, G-), got {list(g.shape)}")
    out = g.new_empty(g.shape[1:]) if out is None else out
    if _fast(out, g, std, per_out=2):
        _run("diff_read", out, _seed(seed, generator), g=g, std=std)
        return out
    noisy = noisy_read(g, std, None, generator, seed)
    return torch.sub(noisy[0], noisy[1], out=out)


def add_normal_(
    y: torch.Tensor, alpha: float, generator: torch.Generator | None = None, seed: int | None = None
) -> torch.Tensor:
    """``y += alpha·N(0, 1)`` in place (output noise); returns ``y``."""
    if _fast(y):
        _run("add", y, _seed(seed, generator), alpha=alpha)
        return y
    return y.add_(_randn(y.shape, y, generator, seed), alpha=alpha)


def write_noise(
    u: torch.Tensor,
    scale: float,
    floor: float,
    out: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """``max(u + (sqrt(u)·scale)·N(0, 1), floor)`` elementwise for ``u ≥ 0``, into ``out``
    (default a new tensor; it may be ``u``)."""
    u = u.contiguous()
    out = torch.empty_like(u) if out is None else out
    if _fast(out, u):
        _run("write", out, _seed(seed, generator), g=u, alpha=scale, floor=floor)
        return out
    std = torch.sqrt(u).mul_(scale)
    return out.copy_(_randn(u.shape, u, generator, seed).mul_(std).add_(u).clamp_(min=floor))


# -- the kernel ---------------------------------------------------------------------------


def _fast(out: torch.Tensor, *inputs: torch.Tensor, per_out: int = 1) -> bool:
    """Whether the kernel takes this call: CPU, contiguous, one float dtype, ``per_out``
    input elements per output element, no gradient needed, no ``torch.func`` transform
    running (its tensors have no storage of their own: torch's normals then)."""
    dtype = out.dtype
    if out.device.type != "cpu" or dtype not in _REALS or not out.is_contiguous() or cbuild.transformed():
        return False
    for t in inputs:
        if t.device.type != "cpu" or t.dtype != dtype or not t.is_contiguous():
            return False
        if t.numel() != per_out * out.numel():
            return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in (out, *inputs)):
        return False
    return available(dtype)


def _seed(seed: int | None, generator: torch.Generator | None) -> int:
    return draw_seed(generator) if seed is None else int(seed) & _MASK64


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None, seed: int | None) -> torch.Tensor:
    """torch's normals for the fallback: from ``generator``, or from a generator keyed by
    ``seed`` when one is given."""
    if seed is not None and like.device.type == "cpu":
        generator = torch.Generator().manual_seed(int(seed) & (2**63 - 1))
    if generator is not None and generator.device != like.device:
        return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def _run(op: str, out: torch.Tensor, seed: int, g=None, std=None, alpha: float = 0.0, floor: float = 0.0):
    lib, Args = _require(out.dtype)
    a = Args(
        n=out.numel(),
        seed=seed,
        op=_OPS[op],
        alpha=alpha,
        floor=floor,
        out=out.data_ptr(),
        g=None if g is None else g.data_ptr(),
        std=None if std is None else std.data_ptr(),
    )
    work = out.numel() * (2 if op == "diff_read" else 1)
    lib.noise_run(ctypes.byref(a), cbuild.threads(work, _PARALLEL_MIN))


def _require(dtype: torch.dtype):
    lib = _library(dtype) if dtype in _REALS else None
    if lib is None:
        raise RuntimeError(f"the compiled Gaussian generator is not available for {dtype}")
    return lib


def _args_struct(real) -> type[ctypes.Structure]:
    ptr = ctypes.c_void_p
    fields = [("n", ctypes.c_int64), ("seed", ctypes.c_uint64), ("op", ctypes.c_int32)]
    fields += [("alpha", real), ("floor", real), ("out", ptr), ("g", ptr), ("std", ptr)]
    return type("NoiseArgs", (ctypes.Structure,), {"_fields_": fields})


@functools.cache
def _library(dtype: torch.dtype):
    """``(ctypes library, argument struct)`` for ``dtype``, built once; None (one warning)
    when no library can be built."""
    real_c, real = _REALS[dtype]
    what, instead = "compiled Gaussian generator", "analog noise is drawn with torch.randn"
    lib = cbuild.load(_SOURCE, f"normal_cpu_{real_c}", cbuild.flag_sets(real_c), what, instead)
    if lib is None:
        return None
    Args = _args_struct(real)
    lib.noise_run.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
    lib.noise_run.restype = None
    u32 = ctypes.c_uint32
    lib.philox_raw.argtypes = [
        ctypes.c_uint64,
        u32,
        u32,
        u32,
        u32,
        ctypes.c_int64,
        ctypes.POINTER(u32),
        ctypes.c_int,
    ]
    lib.philox_raw.restype = ctypes.c_int
    lib.icdf_raw.argtypes = [ctypes.POINTER(u32), ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    lib.icdf_raw.restype = ctypes.c_int
    return lib, Args
