"""Number formats shared by every report section, so one figure reads the same everywhere.

- ``pct(0.97331)`` -> ``"97.33%"`` (a fraction in [0, 1] shown as a percentage, 2 decimals)
- ``count(12345.4)`` -> ``"12,345"`` (operation, parameter and byte counts, rounded)
- ``rate(0.08123)`` -> ``"0.0812"`` (spikes per neuron per step, 4 decimals)
- a missing value (``None``) -> ``"—"``
"""

from __future__ import annotations

__all__ = ["MISSING", "count", "pct", "rate"]

MISSING = "—"


def pct(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{fraction * 100:.2f}%"


def count(value: float | None) -> str:
    return MISSING if value is None else f"{value:,.0f}"


def rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"
