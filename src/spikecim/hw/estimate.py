"""``estimate(workload, arch) -> CostReport``: the one entry point of the cost side."""

from __future__ import annotations

import math
from pathlib import Path

from spikecim.errors import SpikecimError
from spikecim.hw.arch import Architecture, load_architecture
from spikecim.hw.cost import CostReport, LayerCost
from spikecim.hw.digital_unit import DigitalUnitParams, digital_op_cost, load_digital_unit
from spikecim.hw.estimators import get_estimator
from spikecim.hw.estimators._common import dense_ops

__all__ = ["estimate"]


def estimate(workload, arch: Architecture | str | Path, dense: bool = False) -> CostReport:
    """Cost ``workload`` on ``arch`` (an :class:`Architecture`, a table name or a YAML path).

    ``dense=True`` ignores the traced activity (every input non-zero at every step): the
    upper bound. Estimators that are dense by construction (``spikesim``) ignore it.
    A workload with an early-exit test (DT-SNN) gets one more row, ``exit-test``: the unit
    named by the table's ``exit_unit`` (:mod:`spikecim.hw.exit_unit`). Its ``digital``
    entries (softmax, LayerNorm, GELU) get one row each on the table's ``digital_unit``
    (:mod:`spikecim.hw.digital_unit`). The products of two activations (dynamic operands)
    are costed by this table, or by the table its ``dynamic_products`` names (e.g. SRAM
    compute-in-memory), or on the digital unit (``dynamic_products: digital``).
    """
    arch = load_architecture(arch)
    est = get_estimator(arch.estimator)
    p = arch.p
    # read, like the exit unit, only when something runs on it
    on_unit = workload.digital or arch.dynamic_products == "digital"
    unit = load_digital_unit(arch.digital_unit) if on_unit else None
    elsewhere = arch.dynamic_products is not None
    costed = [
        layer
        for layer in workload.layers
        if est.costs_layer(layer, workload, p) and not (elsewhere and layer.dynamic)
    ]
    latencies = est.latencies_ns(costed, workload, p, dense)
    areas = est.layer_areas_um2(costed, workload, p)
    by_name = {id(layer): (lat, area) for layer, lat, area in zip(costed, latencies, areas)}
    dyn_rows, dyn_extras, dyn_notes = (
        _dynamic_rows(workload, arch.dynamic_products, unit, dense) if elsewhere else ({}, {}, [])
    )
    rows = []
    for layer in workload.layers:
        if id(layer) in dyn_rows:
            rows.append(dyn_rows[id(layer)])
            continue
        if id(layer) not in by_name:
            rows.append(LayerCost(name=layer.name, kind=layer.kind, skipped=True))
            continue
        lat, area = by_name[id(layer)]
        rows.append(_costed(est, layer, workload, p, dense, lat, area))
    latency_modelled = any(r.latency_ns > 0 for r in rows)
    for entry in workload.digital:
        e, lat = digital_op_cost(entry, workload, unit)
        rows.append(
            LayerCost(
                name=entry.name,
                kind=entry.kind,
                energy_pj={"digital_unit": e},
                latency_ns=lat if latency_modelled else 0.0,
            )
        )
    notes = est.notes(workload, p, dense) + dyn_notes
    state_rows, state_note = _state_rows(workload, p)
    rows += state_rows
    if state_note:
        notes.append(state_note)
    if workload.digital:
        notes.append(f"digital unit ({arch.digital_unit}): softmax, LayerNorm and GELU, one row each")
    if workload.exit_test is not None:
        rows.append(_exit_row(workload, arch, latency_modelled=any(r.latency_ns > 0 for r in rows)))
        notes.append(
            f"exit unit ({arch.exit_unit}): the {workload.exit_test.rule} test over "
            f"{workload.exit_test.classes} classes after every step a sample runs but the last"
        )
    report = CostReport(
        estimator=est.name,
        architecture=arch.name,
        workload=workload.model,
        spiking=workload.spiking,
        timesteps=workload.timesteps,
        mode="dense" if dense else "event",
        layers=rows,
        shared_area_um2=est.shared_area_um2(costed, workload, p),
        extras={**est.extras(costed, workload, p), **dyn_extras},
        notes=notes,
    )
    for what, value in (
        ("energy", report.energy_pj),
        ("latency", report.latency_ns),
        ("area", report.area_um2),
        ("energy-delay product", report.edp_pj_ns or 0.0),
        ("energy-delay-area product", report.edap_pj_ns_mm2 or 0.0),
    ):
        if not math.isfinite(value):
            raise SpikecimError(
                f"hw: on architecture '{arch.name}' the {what} of {workload.model} comes out as {value}; "
                "a parameter lies outside what the model can cost (a clock of 1e-300 MHz, say)"
            )
    return report


def sram_pj_per_bit(p) -> float | None:
    """The table's SRAM energy per bit accessed: ``e_sram_bit_pj``, or ``e_sram_pj`` per
    ``word_bits``-bit word; None when the table has no SRAM constant."""
    if getattr(p, "e_sram_bit_pj", None) is not None:
        return float(p.e_sram_bit_pj)
    if getattr(p, "e_sram_pj", None) is not None and getattr(p, "word_bits", None):
        return float(p.e_sram_pj) / p.word_bits
    return None


def _state_rows(workload, p) -> tuple[list[LayerCost], str | None]:
    """One row per recurrent state of the workload (MLGRU ``h``, WKV ``a, b, p``): its values
    read and written once per step run, ``2 · elements · bits · Σ_t running(t)`` bits of SRAM
    traffic at the table's energy per bit (:func:`sram_pj_per_bit`)."""
    if not workload.recurrent_state:
        return [], None
    per_bit = sram_pj_per_bit(p)
    if per_bit is None:
        return [], "recurrent state traffic (MLGRU/WKV) not costed: this table has no SRAM energy"
    rows = []
    for s in workload.recurrent_state:
        steps = float(sum(workload.running(t) for t in range(s.timesteps)))
        bits = 2 * s.elements * s.bits * steps  # read + written every step
        rows.append(LayerCost(name=s.name, kind=f"{s.kind} state", energy_pj={"state_sram": bits * per_bit}))
    return rows, "recurrent state (MLGRU h, WKV a, b, p): read and written in SRAM once per token"


def _dynamic_rows(
    workload, where: str, unit: DigitalUnitParams | None, dense: bool
) -> tuple[dict[int, LayerCost], dict[str, float], list[str]]:
    """The rows of the products of two activations costed away from the main table: on the
    table ``where`` names (its estimator, its constants; its extras prefixed ``dynamic_``,
    the wear of written cells unprefixed), or on the digital unit (``digital``: a multiply and
    an add per MAC at every step run, ``lanes`` at a time)."""
    dynamic = [layer for layer in workload.layers if layer.dynamic]
    if not dynamic:
        return {}, {}, []
    if where == "digital":
        rows = {}
        for layer in dynamic:
            macs = layer.macs * workload.steps_run(layer)
            cycles = macs * (unit.cycles_mult + unit.cycles_add) / unit.lanes
            rows[id(layer)] = LayerCost(
                name=layer.name,
                kind=layer.kind,
                energy_pj={"digital_unit": macs * (unit.e_mult_pj + unit.e_add_pj)},
                latency_ns=cycles * 1e3 / unit.clock_mhz,
                ops=dense_ops(layer),
            )
        return rows, {}, ["products of two activations on the digital unit (a multiply and an add per MAC)"]
    other = load_architecture(where)
    est = get_estimator(other.estimator)
    q = other.p
    costed = [layer for layer in dynamic if est.costs_layer(layer, workload, q)]
    latencies = est.latencies_ns(costed, workload, q, dense)
    areas = est.layer_areas_um2(costed, workload, q)
    rows = {id(layer): LayerCost(name=layer.name, kind=layer.kind, skipped=True) for layer in dynamic}
    rows.update(
        {
            id(layer): _costed(est, layer, workload, q, dense, lat, area)
            for layer, lat, area in zip(costed, latencies, areas)
        }
    )
    wear = ("writes_per_cell_per_inference", "cell_writes_per_inference", "lifetime_s")
    extras = {(k if k in wear else f"dynamic_{k}"): v for k, v in est.extras(costed, workload, q).items()}
    note = f"products of two activations on {other.name} ({other.description or other.estimator})"
    if len(costed) < len(dynamic):
        note += f"; its estimator {est.name} does not model them: not costed"
    return (rows, extras if costed else {}, [note])


def _costed(est, layer, workload, params, dense: bool, latency_ns: float, area_um2: dict) -> LayerCost:
    """The row of a layer the estimator ``est`` costs, with its latency and area."""
    return LayerCost(
        name=layer.name,
        kind=layer.kind,
        energy_pj=est.layer_energy_pj(layer, workload, params, dense),
        latency_ns=latency_ns,
        area_um2=area_um2,
        ops=dense_ops(layer),
    )


def _exit_row(workload, arch: Architecture, latency_modelled: bool) -> LayerCost:
    """The early-exit unit as a row of the report (:mod:`spikecim.hw.exit_unit`); its latency
    counts only where the estimator models latency."""
    from spikecim.hw.exit_unit import exit_test_cost, load_exit_unit

    energy_pj, latency_ns = exit_test_cost(workload, load_exit_unit(arch.exit_unit))
    return LayerCost(
        name="exit-test",
        kind="exit-test",
        energy_pj={"exit_unit": energy_pj},
        latency_ns=latency_ns if latency_modelled else 0.0,
    )
