"""What the benchmarks (``spikecim bench``) share: timing callables interleaved round by
round, a torch thread count for one run, a stderr silenced around peers that print from C++,
the device a suite runs on (and waiting for it before a clock is read), and the peak of
torch's allocations."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import torch

from spikecim.errors import SpikecimError

__all__ = [
    "bench_device",
    "device_name",
    "interleaved_times",
    "peak_bytes",
    "peak_mib",
    "quiet_stderr",
    "range_text",
    "round_ratios",
    "synchronize",
    "torch_threads",
]


def interleaved_times(
    fns: list[Callable[[], object]],
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    device: torch.device | None = None,
    warmup: int = 1,
) -> list[list[float]]:
    """Seconds of each callable per round: ``warmup`` rounds of one untimed call each, then
    ``repeats`` rounds of one call each, so a change of load on a shared machine hits all of
    them alike. Timed round r starts with callable r mod n and goes on in the list's order
    (a b c, b c a, c a b, ...), so each callable follows each of the others equally often
    instead of always meeting the same one's leftovers in the caches and the allocator
    (``times[i]`` stays callable i's, in the order of the rounds). ``clock``: wall time by
    default; ``time.thread_time`` for the calling thread's CPU time. ``device``: a GPU the
    callables queue work on, waited for before each clock read."""
    times: list[list[float]] = [[] for _ in fns]
    for round_ in range(warmup + repeats):
        first = max(0, round_ - warmup) % max(1, len(fns))
        for i in [*range(first, len(fns)), *range(first)]:
            if device is not None:
                synchronize(device)
            t = clock()
            fns[i]()
            if device is not None:
                synchronize(device)
            if round_ >= warmup:
                times[i].append(clock() - t)
    return times


def round_ratios(theirs: list[float], ours: list[float]) -> tuple[float, float]:
    """The least and the most of ``theirs[r] / ours[r]`` over the rounds r of two callables
    timed in the same rounds (:func:`interleaved_times`): each round's pair ran seconds or
    minutes apart at most, so the range shows how far the ratio moves within one run."""
    ratios = [t / o for t, o in zip(theirs, ours, strict=True)]
    return min(ratios), max(ratios)


def range_text(pair: tuple[float, float] | None, missing: str, unit: str = "") -> str:
    """``least–most`` to two decimals (a table cell of :func:`round_ratios`), or ``missing``."""
    return missing if pair is None else f"{pair[0]:.2f}–{pair[1]:.2f}{unit}"


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after
    (None: leave it)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (lines written from C++, e.g. the profiler back-end's)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def bench_device(device: str) -> torch.device:
    """The device a benchmark runs on: ``cpu``, or ``cuda``/``cuda:N`` where torch sees that
    GPU; a one-line error naming ``--device`` otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SpikecimError(f"--device: unknown '{device}', allowed: cpu, cuda, cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise SpikecimError(f"--device: '{device}' is not supported, allowed: cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise SpikecimError(f"--device: '{device}': torch sees no CUDA GPU on this machine; use cpu")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise SpikecimError(f"--device: '{device}': this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:N (the card's name)`` for the tables."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously: a clock read
    without this times the launch, not the work); nothing to do on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(step: Callable[[], None], device: torch.device | None = None) -> float | None:
    """Peak of torch's allocations during ``step`` in MiB, what existed before excluded.
    On a CUDA ``device``: torch's caching allocator's peak (``max_memory_allocated``) less
    what was allocated before. On the CPU: from the torch profiler's memory events (None
    where this torch's profiler API differs).

    Each allocation event carries the allocator's running total (``total_allocated``),
    computed in the order the allocations happened: the peak is the largest total less the
    total before the step, whatever order the events' timestamps give (two events a
    microsecond apart can swap in the profiler's clock conversion, and a running sum in
    timestamp order would then miss a peak)."""
    if device is not None and device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    try:
        with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        totals = _allocation_totals(prof.profiler.kineto_results)
    except (AttributeError, RuntimeError):
        return None
    return None if totals is None else peak_bytes(totals) / 2**20


def peak_bytes(events: list[tuple[int, int, int]]) -> int:
    """The peak above the total before the first event, of allocation events ``(time ns,
    size, the allocator's running total after it)`` (frees: negative sizes). Only the first
    event's time is used: the totals themselves carry the true order."""
    if not events:
        return 0
    first = min(events)
    return max(0, max(total for _, _, total in events) - (first[2] - first[1]))


def _allocation_totals(results) -> list[tuple[int, int, int]] | None:
    """``(time ns, size, running total)`` of every CPU allocation and free in the profiler's
    event tree (frees have negative sizes); None where the tree or its fields are missing."""
    try:
        from torch._C._profiler import _EventType

        roots = results.experimental_event_tree()
    except (ImportError, AttributeError, RuntimeError):
        return None
    found, stack = [], list(roots)
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            extra = node.extra_fields
            if extra.device.type == "cpu":
                found.append((node.start_time_ns, int(extra.alloc_size), int(extra.total_allocated)))
        stack.extend(node.children)
    return found
