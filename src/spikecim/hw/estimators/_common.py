"""Shapes and activity read off a LayerWorkload, shared by the estimators."""

from __future__ import annotations

import math

__all__ = ["activity", "crossbar_grid", "dense_ops", "fan_in", "n_mvm", "p_any_active"]


def activity(layer, t: int, dense: bool) -> float:
    """Fraction of non-zero inputs at step ``t`` (1 in dense mode)."""
    if dense:
        return 1.0
    return min(1.0, layer.in_nonzero_per_step[t] / layer.in_size)


def n_mvm(layer) -> int:
    """Matrix-vector products per step: one per output position (1 for a linear layer)."""
    return layer.out_hw[0] * layer.out_hw[1] if layer.kind != "linear" else 1


def fan_in(layer) -> int:
    """Inputs feeding one output: the rows a layer unrolls onto (in_ch/groups · k_h · k_w)."""
    return (layer.in_ch // layer.groups) * layer.kernel[0] * layer.kernel[1]


def dense_ops(layer) -> float:
    """Dense-equivalent operations of the layer over all steps: 2 per MAC."""
    return 2.0 * layer.macs * layer.timesteps


def crossbar_grid(rows_needed: int, cols_needed: int, xbar_rows: int, xbar_cols: int) -> tuple[int, int]:
    """(row blocks, column blocks) of crossbars that hold a rows_needed × cols_needed matrix."""
    return math.ceil(rows_needed / xbar_rows), math.ceil(cols_needed / xbar_cols)


def p_any_active(a: float, rows: int) -> float:
    """Probability that at least one of ``rows`` inputs is non-zero, inputs independent
    with activity ``a``: 1 − (1 − a)^rows (a crossbar read is skipped otherwise)."""
    if a >= 1.0:
        return 1.0
    return 1.0 - (1.0 - a) ** rows
