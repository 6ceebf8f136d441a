"""Number formats shared by the console summary, ``report.md`` and ``report.html``, so one
figure reads the same everywhere.

- ``pct(0.97331)`` -> ``"97.33%"`` (a fraction in [0, 1] shown as a percentage, 2 decimals)
- ``pct_spread(0.9, 0.012, 3)`` -> ``"90.00% ± 1.20% (3 seeds)"``; with one seed the spread
  is not shown: ``pct_spread(0.9, 0.0, 1)`` -> ``"90.00% (1 seed)"``
- ``count(12345.4)`` -> ``"12,345"`` (operation, parameter and byte counts, rounded)
- ``rate(0.08123)`` -> ``"0.0812"`` (spikes per neuron per step, 4 decimals)
- ``energy_unit([3.2e6, 5e4])`` -> ``("µJ", 1e6)``: the one unit of a table of energies,
  chosen from its largest value; ``energy(3.2e6, "µJ")`` -> ``"3.2"``
- a missing value (``None``) -> ``"—"``
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["MISSING", "count", "energy", "energy_unit", "pct", "pct_spread", "rate"]

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


def count(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


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
