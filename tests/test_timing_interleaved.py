"""timing.interleaved_times: warm-up calls, then the callables round by round, each round
starting one callable further on."""

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
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b"]  # warm-up, then rounds starting at a, b, a
    assert times == [[3, 3, 3], [6, 6, 6]]  # start and end readings one apart, plus the call's own


def test_warmup_rounds_call_every_callable_untimed_before_the_timed_rounds():
    calls = []
    fns = [lambda: calls.append("a"), lambda: calls.append("b")]
    times = interleaved_times(fns, repeats=2, clock=itertools.count().__next__, warmup=3)
    assert len(calls) == 2 * (3 + 2)  # every callable once per round, warm-up rounds included
    assert times == [[1, 1], [1, 1]]  # two timed rounds each, a call reading no clock


def test_each_callable_takes_each_place_in_the_round_equally_often():
    calls = []

    def call(name):
        return lambda: calls.append(name)

    interleaved_times([call("a"), call("b"), call("c")], repeats=6, clock=lambda: 0.0, warmup=0)
    rounds = [calls[i : i + 3] for i in range(0, 18, 3)]
    assert rounds == [list("abc"), list("bca"), list("cab")] * 2
    for name in "abc":  # first, second and third twice each over the six rounds
        assert sorted(r.index(name) for r in rounds) == [0, 0, 1, 1, 2, 2]


def test_rotated_rounds_keep_each_callables_times_in_its_own_list():
    ticks = itertools.count()  # a clock that advances by one at every reading

    def call(extra_ticks):
        def fn():
            for _ in range(extra_ticks):
                next(ticks)

        return fn

    times = interleaved_times([call(0), call(1), call(4)], repeats=4, clock=lambda: next(ticks))
    assert times == [[1] * 4, [2] * 4, [5] * 4]  # its own readings plus the two of its timing
