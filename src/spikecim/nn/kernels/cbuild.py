"""Build a C source file of spikecim into a shared library once per machine, safely.

spikecim's CPU kernels are plain C files called through ctypes. :func:`build` compiles one
with the system C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into a cache folder
(``$SPIKECIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/spikecim`` or ``~/.cache/spikecim``, in
``kernels/``), keyed by a hash of the source, the headers beside it (``parallel.h``), the
compiler, the flags and the platform; the build needs neither torch headers nor ninja.

Beside every ``.so`` lies a ``.json`` record of the build key and the file's size and
SHA-256. A library whose record is missing or does not match (a truncated or overwritten
file) is never loaded: dlopen of a file cut short kills the process with a bus error. It is
rebuilt into a temporary name and renamed over the damaged one, under a file lock so two
processes building the same library wait for each other.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from spikecim.cache import cache_root, write_atomic
from spikecim.errors import SpikecimError

__all__ = [
    "FLAGS",
    "ISAS",
    "build",
    "compiler",
    "flag_sets",
    "isa",
    "load",
    "load_real",
    "threads",
    "watched",
]

# -ffp-contract=off: no fused multiply-add, so results equal a torch reference bit for bit;
# no -march=native, so a cache folder shared by different machines stays valid.
FLAGS = [
    "-O2",
    "-ftree-vectorize",
    "-fvect-cost-model=dynamic",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fPIC",
    "-shared",
    "-pthread",
]


def flag_sets(real: str | None = None) -> list[list[str]]:
    """The flag sets a kernel's loader gives :func:`load`: :data:`FLAGS` with the element type
    of ``real`` ("float", or "double" with ``-DREAL_IS_DOUBLE -DNO_CLONES``: float64 is for
    checking, it needs no vector clones; None: a kernel without one), first with
    ``-fopenmp`` (the chunks of ``parallel.h`` then run on torch's OpenMP threads), then
    without (a compiler without OpenMP, e.g. Apple's clang: threads started per call)."""
    flags = list(FLAGS)
    if real is not None:
        flags.append(f"-DREAL={real}")
    if real == "double":
        flags += ["-DREAL_IS_DOUBLE", "-DNO_CLONES"]
    return [[*flags, "-fopenmp"], flags]


def compiler() -> str:
    """The C compiler to use: ``$CC``, else the first of cc, gcc, clang on the PATH."""
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise OSError("no C compiler found (set CC)")


# The vector instruction sets the convolution kernels choose between at run time, by the level
# their C code names them: 2 AVX2 with FMA (256-bit vectors), 3 AVX-512 F, BW and VL.
ISAS = {"avx2": 2, "avx512": 3}


def isa(widest: int) -> int:
    """The instruction set a kernel that has loops for the levels of :data:`ISAS` runs:
    ``widest`` (what this CPU supports, as the kernel's C code reports it), or less where
    ``$SPIKECIM_ISA`` names a narrower one (``avx2`` runs the AVX2 loops on a CPU with
    AVX-512, as a CPU without it would; the two give the same bits). Read at every call."""
    name = os.environ.get("SPIKECIM_ISA", "").strip().lower()
    if not name:
        return widest
    if name not in ISAS:
        raise SpikecimError(f"SPIKECIM_ISA: {name!r} is not an instruction set; allowed: {', '.join(ISAS)}")
    return min(widest, ISAS[name])


def threads(work: int, parallel_min: int) -> int:
    """Threads for a kernel call over ``work`` items: one below ``parallel_min`` (waking more
    costs more than the pass, each kernel measures its own threshold), else torch's count."""
    return 1 if work < parallel_min else max(1, torch.get_num_threads())


def transformed() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``vmap``, ...) is running: its tensors
    wrap others and have no storage of their own, so only torch's ops take them."""
    return torch._C._are_functorch_transforms_active()


def watched() -> bool:
    """Whether a tool is watching or rewriting torch's ops (a torch function or dispatch mode:
    op counters such as SpikingJelly's or ``FlopCounterMode``; ``torch.compile``; the JIT
    tracer; CPU autocast, which runs some ops in a lower precision; ``torch.func``'s
    transforms, ``vmap`` and ``grad``): a kernel that stands in for a torch op then lets the
    op run, which the tool knows."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return (
        torch._C._is_torch_function_mode_enabled()
        or _get_current_dispatch_mode() is not None
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or torch.is_autocast_enabled("cpu")
        or transformed()
    )


def load(source: Path, name: str, flag_sets: list[list[str]], what: str, instead: str) -> ctypes.CDLL | None:
    """The library of ``source`` built with the first of ``flag_sets`` that builds and loads,
    or None with one warning ("the {what} could not be built (why); {instead}") when none
    does: every kernel has a torch path to fall back on."""
    error: Exception | None = None
    for flags in flag_sets:
        try:
            return ctypes.CDLL(str(build(source, name, flags)))
        except (OSError, subprocess.SubprocessError) as e:
            error = e
    detail = str(error)
    if isinstance(error, subprocess.CalledProcessError):
        detail = f"{error.cmd[0]} exited with status {error.returncode}"
        if error.stderr and error.stderr.strip():
            detail += ": " + error.stderr.decode(errors="replace").strip().splitlines()[-1]
    warnings.warn(f"spikecim: the {what} could not be built ({detail}); {instead}", stacklevel=3)
    return None


def load_real(
    source: Path, real: str, what: str, instead: str, functions: dict[str, type]
) -> ctypes.CDLL | None:
    """:func:`load` of a kernel built per element type (``real`` "float" or "double", the
    library ``<source stem>_<real>``) whose ``functions`` each take a pointer to their
    argument struct and a thread count and return nothing; None when it cannot be built."""
    lib = load(source, f"{source.stem}_{real}", flag_sets(real), what, instead)
    if lib is not None:
        for fn, args in functions.items():
            getattr(lib, fn).argtypes = [ctypes.POINTER(args), ctypes.c_int]
            getattr(lib, fn).restype = None
    return lib


def build(source: Path, name: str, flags: list[str]) -> Path:
    """The path of a verified library built from ``source`` with ``flags``, built when needed.

    ``name`` is the library's file stem in the cache (the build key is appended). Raises
    OSError or subprocess.SubprocessError when no library can be built.
    """
    cc = compiler()
    headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # what it may #include
    key = hashlib.sha256(
        "\0".join([source.read_text(), *headers, cc, *flags, platform.machine(), platform.system()]).encode()
    ).hexdigest()
    out = _cache_dir() / f"{name}_{key[:16]}.so"
    if _verified(out, key):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        _lock(lock)  # another process building the same library: wait for it, then reuse it
        if _verified(out, key):
            return out
        if _record_path(out).exists():  # a library written before records existed is rebuilt quietly
            warnings.warn(f"spikecim: cached kernel {out} is damaged; rebuilding it", stacklevel=4)
        # Build beside the target and rename: no process ever loads a half-written file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            cmd = [cc, *flags, str(source), "-o", tmp, "-lm"]
            subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            record = json.dumps({"key": key, **_fingerprint(Path(tmp))})
            write_atomic(_record_path(out), record)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    if not _verified(out, key):
        raise OSError(f"the rebuilt {out.name} does not match its record")
    return out


def _cache_dir() -> Path:
    return cache_root() / "kernels"


def _record_path(lib: Path) -> Path:
    return lib.with_suffix(".json")


def _fingerprint(path: Path) -> dict:
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _verified(lib: Path, key: str) -> bool:
    """Whether ``lib`` exists and is byte for byte the library its record describes."""
    try:
        record = json.loads(_record_path(lib).read_text())
        if not isinstance(record, dict) or record.get("key") != key:
            return False
        if lib.stat().st_size != record.get("size"):
            return False
        return _fingerprint(lib) == {"size": record["size"], "sha256": record.get("sha256")}
    except (OSError, ValueError):
        return False


def _lock(fh) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: two processes may both build; the rename keeps it safe
        return
    fcntl.flock(fh, fcntl.LOCK_EX)
