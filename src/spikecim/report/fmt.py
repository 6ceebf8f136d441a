"""Number formats shared by the console summary, ``report.md`` and ``report.html``, so one
figure reads the same everywhere.

- ``pct(0.97331)`` -> ``"97.33%"`` (a fraction in [0, 1] shown as a percentage, 2 decimals)
- ``pct_spread(0.9, 0.012, 3)`` -> ``"90.00% ± 1.20% (3 seeds)"``; with one seed the spread
  is not shown: ``pct_spread(0.9, 0.0, 1)`` -> ``"90.00% (1 seed)"``
- ``count(12345.4)`` -> ``"12,345"`` (operation, parameter and byte counts, rounded)
- ``rate(0.08123)`` -> ``"0.0812"`` (spikes per neuron per step, 4 decimals)
- ``ratio(1.00862)`` -> ``"1.009×"`` (a cost relative to a baseline's, 4 significant digits)
- ``energy_unit([3.2e6, 5e4])`` -> ``("µJ", 1e6)``: the one unit of a table of energies,
  chosen from its largest value; ``energy(3.2e6, "µJ")`` -> ``"3.2"``
- a missing value (``None``) -> ``"—"``
- a task metric (:func:`metric_text`, :func:`metric_spread`): accuracy as a percentage,
  perplexity, bits per byte and cross-entropy with 4 significant digits
  (``metric_spread("perplexity", 3.912, 0.041, 3)`` -> ``"3.912 ± 0.041 (3 seeds)"``);
  :func:`metric_label` names one with its direction (``"perplexity (lower is better)"``)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "LOWER_IS_BETTER",
    "MISSING",
    "count",
    "energy",
    "energy_unit",
    "metric_axis",
    "metric_label",
    "metric_spread",
    "metric_text",
    "pct",
    "pct_spread",
    "rate",
    "ratio",
]

MISSING = "—"
# (unit, picojoules per unit), smallest first.
_ENERGY_UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))


def pct(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.2f}%"


def pct_spread(mean: float | None, std: float | None, n_seeds: int | None) -> str:
    """Mean over seeds, its standard deviation only when there are two or more, and the count."""
    if mean is None:
        return MISSING
    seeds = "" if n_seeds is None else f" ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
    if std is None or (n_seeds is not None and n_seeds < 2):
        return f"{pct(mean)}{seeds}"
    return f"{pct(mean)} ± {pct(std)}{seeds}"


#: task metrics where a smaller value is the better model (the language model's)
LOWER_IS_BETTER = frozenset({"perplexity", "bits_per_char", "cross_entropy"})
_METRIC_NAMES = {"bits_per_char": "bits per byte", "cross_entropy": "cross-entropy (nats)"}


def metric_text(name: str, value: float | None) -> str:
    """A task metric: accuracy as a percentage, others (perplexity, bits per byte,
    cross-entropy) with 4 significant digits."""
    if value is None:
        return MISSING
    return pct(value) if name == "accuracy" else f"{value:.4g}"


def metric_spread(name: str, mean: float | None, std: float | None, n_seeds: int | None) -> str:
    """:func:`pct_spread` for any task metric (:func:`metric_text` of the mean and the std)."""
    if name == "accuracy" or mean is None:
        return pct_spread(mean, std, n_seeds)
    seeds = "" if n_seeds is None else f" ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
    if std is None or (n_seeds is not None and n_seeds < 2):
        return f"{metric_text(name, mean)}{seeds}"
    return f"{metric_text(name, mean)} ± {std:.2g}{seeds}"


def metric_label(name: str, direction: bool = True) -> str:
    """The metric's name as tables show it, with its direction unless ``direction`` is False."""
    label = _METRIC_NAMES.get(name, name)
    if not direction:
        return label
    return f"{label} ({'lower' if name in LOWER_IS_BETTER else 'higher'} is better)"


def metric_axis(name: str) -> tuple[float, str, str]:
    """``(scale, unit, axis title)`` of a plot of the metric: accuracy in percent, others as they are."""
    if name == "accuracy":
        return 100.0, " %", "test accuracy (%)"
    return (
        1.0,
        "",
        f"validation {_METRIC_NAMES.get(name, name)}, {'lower' if name in LOWER_IS_BETTER else 'higher'} is better",
    )


def count(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


def ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4g}×"


def energy_unit(values_pj: Iterable[float | None]) -> tuple[str, float]:
    """``(unit, pJ per unit)`` for a table of energies: the largest unit its largest value reaches."""
    finite = [abs(v) for v in values_pj if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0)
    unit = _ENERGY_UNITS[0]
    for candidate in _ENERGY_UNITS:
        if top >= candidate[1]:
            unit = candidate
    return unit


def energy(value_pj: float | None, unit: str) -> str:
    """``value_pj`` in ``unit`` (from :func:`energy_unit`), 4 significant digits."""
    if value_pj is None:
        return MISSING
    return f"{value_pj / dict(_ENERGY_UNITS)[unit]:.4g}"
