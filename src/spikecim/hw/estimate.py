"""``estimate(workload, arch) -> CostReport``: the one entry point of the cost side."""

from __future__ import annotations

from pathlib import Path

from spikecim.hw.arch import Architecture, load_architecture
from spikecim.hw.cost import CostReport, LayerCost
from spikecim.hw.estimators import get_estimator
from spikecim.hw.estimators._common import dense_ops

__all__ = ["estimate"]


def estimate(workload, arch: Architecture | str | Path, dense: bool = False) -> CostReport:
    """Cost ``workload`` on ``arch`` (an :class:`Architecture`, a table name or a YAML path).

    ``dense=True`` ignores the traced activity (every input non-zero at every step): the
    upper bound. Estimators that are dense by construction (``spikesim``) ignore it.
    A workload with an early-exit test (DT-SNN) gets one more row, ``exit-test``: the unit
    named by the table's ``exit_unit`` (:mod:`spikecim.hw.exit_unit`).
    """
    arch = load_architecture(arch)
    est = get_estimator(arch.estimator)
    p = arch.p
    costed = [layer for layer in workload.layers if est.costs_layer(layer, workload, p)]
    latencies = est.latencies_ns(costed, workload, p, dense)
    areas = est.layer_areas_um2(costed, workload, p)
    by_name = {id(layer): (lat, area) for layer, lat, area in zip(costed, latencies, areas)}
    rows = []
    for layer in workload.layers:
        if id(layer) not in by_name:
            rows.append(LayerCost(name=layer.name, kind=layer.kind, skipped=True))
            continue
        lat, area = by_name[id(layer)]
        rows.append(
            LayerCost(
                name=layer.name,
                kind=layer.kind,
                energy_pj=est.layer_energy_pj(layer, workload, p, dense),
                latency_ns=lat,
                area_um2=area,
                ops=dense_ops(layer),
            )
        )
    notes = est.notes(workload, p, dense)
    if workload.exit_test is not None:
        rows.append(_exit_row(workload, arch, latency_modelled=any(r.latency_ns > 0 for r in rows)))
        notes.append(
            f"exit unit ({arch.exit_unit}): the {workload.exit_test.rule} test over "
            f"{workload.exit_test.classes} classes after every step a sample runs but the last"
        )
    return CostReport(
        estimator=est.name,
        architecture=arch.name,
        workload=workload.model,
        spiking=workload.spiking,
        timesteps=workload.timesteps,
        mode="dense" if dense else "event",
        layers=rows,
        shared_area_um2=est.shared_area_um2(costed, workload, p),
        extras=est.extras(costed, workload, p),
        notes=notes,
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
