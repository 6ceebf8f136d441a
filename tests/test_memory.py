"""memory.keep_freed_memory: a large tensor allocated again and again faults in no pages.

The oracle is the kernel's count of minor page faults (getrusage): a fresh 64 MiB block
mapped by glibc costs one fault per page touched; a block reused from the heap, none."""

import json
import subprocess
import sys

import pytest

from spikecim import memory

_PROBE = """
import json, resource, sys
import torch
from spikecim.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
faults = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.empty(16 * 1024 * 1024)  # 64 MiB of float32
    x.fill_(1.0)  # touch every page
    del x
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _probe(mode: str, env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env=env
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(memory._glibc() is None, reason="the C library is not glibc")
def test_a_freed_large_tensor_is_reused_without_page_faults():
    pages = 64 * 1024 * 1024 // 4096
    plain, kept = _probe("plain"), _probe("keep")
    assert not plain["kept"] and kept["kept"]
    # without: every allocation maps fresh memory (4 KiB pages, or 2 MiB ones where the
    # kernel backs the block with huge pages: at least pages / 512 faults)
    assert all(f >= pages // 512 for f in plain["faults"])
    # with: once the heap holds a free block of that size (glibc may first leave a few behind
    # small allocations made in between), every allocation reuses one
    assert all(f < pages // 512 for f in kept["faults"][-10:])


def test_the_users_own_allocator_settings_are_left_alone(monkeypatch):
    for name, value in [
        ("SPIKECIM_KEEP_FREED_MEMORY", "0"),
        ("MALLOC_MMAP_THRESHOLD_", "268435456"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
        ("LD_PRELOAD", "libjemalloc.so.2"),
    ]:
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert memory.keep_freed_memory() is False, name


_RELEASE = """
import json, sys
import torch
from spikecim.memory import keep_freed_memory, release_freed_memory

def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

keep_freed_memory()
start = rss_mib()
blocks = [torch.ones(8 * 1024 * 1024 + i * 4096) for i in range(16)]  # 16 blocks of 32 MiB and more
small = [torch.ones(16) for _ in range(16)]  # allocated after them: the heap's top is not free
del blocks
kept = rss_mib()
released = release_freed_memory()
print(json.dumps({"start": start, "kept": kept, "after": rss_mib(), "released": released}))
"""


@pytest.mark.skipif(memory._glibc() is None, reason="the C library is not glibc")
def test_released_memory_goes_back_to_the_kernel():
    """The kernel's count of resident pages: 512 MiB freed but kept by the heap stay
    resident until release_freed_memory hands them back."""
    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert r["released"]
    assert r["kept"] - r["start"] > 400  # freed, but resident
    assert r["kept"] - r["after"] > 400  # handed back


_RESIDENT = """
import json, os
import torch
from spikecim import memory

def statm_resident():  # the kernel's count of resident pages, read from another file
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

before, rss = statm_resident(), memory.resident_bytes()
x = torch.ones(80 * 1024 * 1024)  # 320 MiB, touched
del x  # above glibc's mmap threshold: handed back to the kernel
peak = memory.resident_bytes(peak=True)
reset = memory.reset_resident_peak()
print(json.dumps({"before": before, "rss": rss, "peak": peak, "reset": reset, "now": memory.resident_bytes(),
                  "peak_after": memory.resident_bytes(peak=True), "available": memory.available_bytes()}))
"""


@pytest.mark.skipif(memory.resident_bytes() is None, reason="resident memory is read from Linux's /proc")
def test_the_resident_peak_holds_a_freed_tensor_and_starts_again_from_the_resident_memory_when_reset():
    out = subprocess.run([sys.executable, "-c", _RESIDENT], capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    assert abs(r["rss"] - r["before"]) < 1 << 20  # the same count as /proc/self/statm's
    assert r["peak"] >= r["before"] + (320 << 20)  # the 320 MiB were resident at once
    assert r["reset"] and r["peak_after"] < r["peak"] - (250 << 20)
    assert r["now"] <= r["peak_after"] + (1 << 20)
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert 0 < r["available"] <= total
