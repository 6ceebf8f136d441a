"""The digital unit of a transformer accelerator: softmax, LayerNorm and GELU.

Crossbars compute products; the functions between them run on a digital vector unit (as in
ClipFormer's and TReX's hardware, where softmax, LayerNorm and GELU stay digital and ideal).
Its cost is an operation count per Workload ``digital`` entry (:func:`digital_operations`)
times the energy and cycles per operation of a table (``hw/tables/units/*.yaml``, the
schema of the exit unit, :mod:`spikecim.hw.exit_unit`, plus ``lanes``: operations issued
per cycle); an architecture names its unit with ``digital_unit`` (default
``digital-unit-45nm``).

Operations, for ``rows`` rows of L elements (E = rows·L elements), docs/hardware.md#digital-unit:

=================  ==============================================================================
function           operations
=================  ==============================================================================
softmax            max: rows·(L − 1) compare; x − max: E add; exp: E exp; sum: rows·(L − 1) add;
                   1/sum: rows div; scale: E mult
LayerNorm          mean: rows·(L − 1) add + rows mult; x − μ: E add; variance: E mult +
                   rows·(L − 1) add + rows mult; 1/sqrt(var + ε) = exp(−½·log(·)): rows add,
                   rows log, rows mult, rows exp; normalise: E mult; affine γ, β: E mult + E add
GELU (tanh form)   0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), tanh u = 1 − 2/(e^{2u} + 1):
                   per element 6 mult, 4 add, 1 exp, 1 div
=================  ==============================================================================

Per sample every entry runs Σ_t running_per_step[t] times over its steps; latency is
Σ_ops n·cycles / lanes clock cycles.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from spikecim.errors import SpikecimError
from spikecim.hw.exit_unit import ExitUnitParams, load_unit_table, operations_cost

__all__ = ["DigitalUnitParams", "digital_op_cost", "digital_operations", "load_digital_unit"]

NS_PER_US = 1e3


class DigitalUnitParams(ExitUnitParams):
    """The exit unit's energies and cycles per operation, and the operations issued per cycle."""

    lanes: int = Field(1, ge=1, le=1_000_000, description="operations issued per cycle")


def digital_operations(kind: str, rows: int, row_length: int) -> dict[str, int]:
    """Operations of one call over ``rows`` rows of ``row_length`` elements (module docstring)."""
    L, E = row_length, rows * row_length
    if kind == "softmax":
        return {"compare": rows * (L - 1), "add": E + rows * (L - 1), "exp": E, "div": rows, "mult": E}
    if kind == "layernorm":
        add = rows * (L - 1) + E + rows * (L - 1) + rows + E
        mult = rows + E + rows + rows + E + E
        return {"add": add, "mult": mult, "log": rows, "exp": rows}
    if kind == "gelu":
        return {"mult": 6 * E, "add": 4 * E, "exp": E, "div": E}
    raise SpikecimError(f"digital.kind: unknown function {kind!r}, allowed: softmax, layernorm, gelu")


def digital_op_cost(entry, workload, p: DigitalUnitParams) -> tuple[float, float]:
    """(energy pJ, latency ns) of one Workload ``digital`` entry for one sample."""
    runs = sum(workload.running(t) for t in range(entry.timesteps))
    energy, cycles = operations_cost(digital_operations(entry.kind, entry.rows, entry.row_length), p)
    cycles /= p.lanes
    return runs * energy, runs * cycles * NS_PER_US / p.clock_mhz


def load_digital_unit(name_or_path: str | Path) -> DigitalUnitParams:
    """A digital-unit table by name (``digital-unit-45nm``, in ``hw/tables/units``) or YAML path."""
    return load_unit_table(name_or_path, DigitalUnitParams, "digital unit")
