"""Keeping freed memory in the process, so that a training step does not fault its pages in again.

glibc serves an allocation above its mmap threshold with fresh pages from the kernel and
hands them back at ``free``. The threshold adapts to what the process frees, but only up to
32 MiB: a tensor larger than that is mapped anew every time it is allocated, and the kernel
faults in and zeroes each of its pages on first touch. A spiking ResNet-19 step (T = 4,
B = 16) holds many such tensors (``[64, 128, 32, 32]`` float32 is 33.5 MiB): 420 000 to
770 000 minor page faults per step, 0.5–1.5 s of a 2.3 s step on a 2-core AMD EPYC
(``getrusage``, BENCHMARKS.md).

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``) to 1 GiB, so
blocks up to that size are reused from the heap and the heap is not trimmed: the faults go,
and the process keeps its peak memory until it exits, as jemalloc, tcmalloc and PyTorch's
CUDA caching allocator do. The ``spikecim`` command calls it at start, for the process it
owns, and so do the worker processes spikecim starts (``analog.workers``, ``dse --workers``);
importing spikecim never changes the allocator. It does nothing where the C library is
not glibc, where the user has tuned the allocator (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES`` or a preloaded allocator), or with
``SPIKECIM_KEEP_FREED_MEMORY=0``.
"""

from __future__ import annotations

import ctypes
import functools
import os

__all__ = [
    "KEEP_BYTES",
    "available_bytes",
    "keep_freed_memory",
    "release_freed_memory",
    "reset_resident_peak",
    "resident_bytes",
]

KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", "LD_PRELOAD")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to :data:`KEEP_BYTES`; True if they were set."""
    if os.environ.get("SPIKECIM_KEEP_FREED_MEMORY", "1") == "0" or any(map(os.environ.get, _USER_SETTINGS)):
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES)
    )


def release_freed_memory() -> bool:
    """Hand the heap's free memory back to the kernel (glibc's ``malloc_trim(0)``: the free
    top of the heap and every free page inside it); True where the C library is glibc. For
    a process that keeps freed memory and moves on to work of other sizes: kept blocks that
    no later allocation fits only add up. In the training benchmark the three libraries'
    steps, interleaved at ResNet-19's B = 64, left a 17.5 GiB heap of which 15.9 GiB were free
    in 2 427 blocks (glibc's ``mallinfo2``), and the blocks of the models before added to
    it; the benchmark releases them after each model and batch."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def available_bytes() -> int | None:
    """Memory the kernel could give the process without swapping (``MemAvailable`` of
    ``/proc/meminfo``, Linux), or None where that is not known."""
    return _proc_kib("/proc/meminfo", "MemAvailable")


def resident_bytes(peak: bool = False) -> int | None:
    """The process's resident memory now (``VmRSS``), or its highest since the last
    :func:`reset_resident_peak` or since it started (``VmHWM``); None off Linux."""
    return _proc_kib("/proc/self/status", "VmHWM" if peak else "VmRSS")


def reset_resident_peak() -> bool:
    """Start :func:`resident_bytes`'s peak again from the resident memory now (writing 5 to
    ``/proc/self/clear_refs``, Linux 4.0 and later); True where that was done. The kernel's
    maximum resident size of the process (``getrusage``, and what ``/usr/bin/time`` reports
    at its exit) then starts again too."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _proc_kib(path: str, field: str) -> int | None:
    """Bytes of the ``field: N kB`` line of a /proc file, or None."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@functools.cache
def _glibc():
    """The process's C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols the process has loaded, the C library's among them
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc
