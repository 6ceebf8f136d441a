"""Shapes and activity read off a LayerWorkload, shared by the estimators."""

from __future__ import annotations

import math

__all__ = [
    "BITS_PER_KB",
    "activity",
    "crossbar_grid",
    "dense_ops",
    "fan_in",
    "membrane_bits",
    "n_mvm",
    "p_any_active",
    "stored_membrane",
    "stored_states",
    "stores_membrane",
]

BITS_PER_KB = 8 * 1024  # a unit (kibibyte), not a technology constant


def activity(layer, t: int, dense: bool) -> float:
    """Fraction of non-zero inputs at step ``t`` (1 in dense mode)."""
    if dense:
        return 1.0
    return min(1.0, layer.in_nonzero_per_step[t] / layer.in_size)


def n_mvm(layer) -> int:
    """Matrix-vector products per step and group: output positions (tokens for a linear layer)."""
    return layer.n_mvm


def fan_in(layer) -> int:
    """Inputs feeding one output: the rows a layer unrolls onto (in_ch/groups · k_h · k_w)."""
    return layer.rows


def membrane_bits(layer, max_bits: int) -> int:
    """Bits of one stored membrane: the recorded width, at most the hardware's ``max_bits``."""
    return min(layer.membrane_bits, max_bits)


def stored_membrane(layer) -> int:
    """Neurons of the membrane stored for the layer: ``out_size``, or ``out_size/G`` when G
    channel groups share one membrane (the Workload's ``membrane_size``)."""
    return layer.stored_membrane


def stored_states(layer) -> int:
    """State values stored for the layer's neurons: :func:`stored_membrane` times the
    state variables of one neuron (the Workload's ``neuron_states``: 2 for the synaptic
    neuron's current and membrane)."""
    return layer.stored_states


def stores_membrane(layer, workload) -> bool:
    """False for an operator whose neurons share a membrane already stored for an earlier one."""
    i = next((i for i, x in enumerate(workload.layers) if x is layer), None)
    return i is None or not workload.shares_membrane(i)


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
