"""The report's charts draw the numbers they are given (values written out by hand here)."""

from spikecim.report import charts


def _trace(fig, name):
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def test_accuracy_seeds_draws_every_seed_and_the_mean_in_percent():
    fig = charts.accuracy_seeds(
        {"snn": {"digital": 0.99, "mean": 0.8, "std": 0.01, "seeds": [0.8, 0.81, 0.79]}}, "analog"
    )
    assert list(_trace(fig, "each seed").y) == [80.0, 81.0, 79.0]
    assert list(_trace(fig, "analog mean ± std").y) == [80.0]
    assert list(_trace(fig, "digital").y) == [99.0]
    assert list(_trace(fig, "each seed").text) == ["SNN seed 0", "SNN seed 1", "SNN seed 2"]


def test_accuracy_seeds_draws_a_perplexity_as_it_is():
    fig = charts.accuracy_seeds(
        {"lm": {"mean": 5.5, "std": 0.1, "seeds": [5.4, 5.6]}}, "lm", metric="perplexity"
    )
    assert list(_trace(fig, "each seed").y) == [5.4, 5.6]
