"""timing.interleaved_times: one warm-up call each, then the callables round by round."""

import itertools

from spikecim.timing import interleaved_times


def test_callables_alternate_after_one_warm_up_each_and_each_call_is_timed_alone():
    calls = []
    ticks = itertools.count()  # a clock that advances by one at every reading

    def call(name, extra_ticks):
        def fn():
            calls.append(name)
            for _ in range(extra_ticks):  # readings of the clock inside the call
                next(ticks)

        return fn

    times = interleaved_times([call("a", 2), call("b", 5)], repeats=3, clock=lambda: next(ticks))
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert times == [[3, 3, 3], [6, 6, 6]]  # start and end readings one apart, plus the call's own


def test_warmup_rounds_call_every_callable_untimed_before_the_timed_rounds():
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    times = interleaved_times(fns, repeats=2, clock=itertools.count().__next__, warmup=3)
    assert len(calls) == 2 * (3 + 2)  # every callable once per round, warm-up rounds included
    assert times == [[1, 1], [1, 1]]  # two timed rounds each, a call reading no clock
