"""``spikecim.timing.peak_mib``, the peak-memory column of every ``spikecim bench`` table,
against hand counts of the bytes a step allocates and frees."""

from __future__ import annotations

import pytest
import torch

from spikecim.timing import peak_bytes, peak_mib

MIB = 1 << 20


def test_peak_of_a_step_that_frees_between_allocations_is_the_largest_live_total():
    kept = []

    def step() -> None:
        a = torch.empty(4 * MIB, dtype=torch.uint8)
        b = torch.empty(1 * MIB, dtype=torch.uint8)  # live: 4 + 1 = 5 MiB, the peak
        del a
        c = torch.empty(2 * MIB, dtype=torch.uint8)  # live: 1 + 2 = 3 MiB
        del b
        kept.append(c)

    assert peak_mib(step) == pytest.approx(5.0)


def test_tensors_that_exist_before_the_step_are_not_counted():
    before = torch.empty(8 * MIB, dtype=torch.uint8)

    def step() -> None:
        x = torch.empty(3 * MIB, dtype=torch.uint8)
        del x

    assert peak_mib(step) == pytest.approx(3.0)
    del before


def test_a_step_that_allocates_nothing_has_no_peak():
    x = torch.ones(16)
    assert peak_mib(lambda: x.fill_(2.0)) == 0.0


def test_the_peak_holds_when_two_events_timestamps_are_swapped():
    # the true order: +4 MiB (total 4), +1 MiB (total 5), -4 MiB (total 1); the profiler's
    # clock conversion stamped the free before the second allocation. A running sum in
    # timestamp order reads 4, 0, 1 (peak 4); the totals give the hand count, 5 MiB
    events = [(100, 4 * MIB, 4 * MIB), (205, 1 * MIB, 5 * MIB), (204, -4 * MIB, 1 * MIB)]
    assert peak_bytes(events) == 5 * MIB
    # a total that existed before the step (7 MiB) is not counted
    assert peak_bytes([(t, n, total + 7 * MIB) for t, n, total in events]) == 5 * MIB
