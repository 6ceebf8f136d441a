"""The metrics a design is judged on: what each measures, its unit, its natural direction,
and whether a structural workload (no training, every activity at zero) bounds it from below.

Hardware metrics come from the :class:`~spikecim.hw.cost.CostReport` of the design's
workload on its architecture; ``footprint_bytes`` and ``params`` from the workload itself
(:meth:`~spikecim.trace.workload.Workload.metrics`); ``accuracy`` from the evaluate stage;
``analog_accuracy`` (mean over the programming seeds) from
:func:`~spikecim.analog.evaluate.evaluate_analog`.

The lower bound ("cheap before dear"): energy grows with the inputs that are non-zero and the
steps that run, latency with the crossbar reads that fire, area not at all, so the cost of the
workload with zero activity (:func:`~spikecim.dse.evaluate.structural_workload`) is a lower
bound of the cost of the trained one. A ``<=`` constraint on a bounded metric that even the
bound violates cannot be met by training: the trial is not trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from spikecim.errors import SpikecimError

__all__ = [
    "METRICS",
    "Metric",
    "check_metric",
    "constraint_values",
    "hardware_metrics",
    "in_base_unit",
    "quantity",
    "violated_by_bound",
]


@dataclass(frozen=True)
class Metric:
    unit: str
    direction: Literal["minimize", "maximize"]
    source: Literal["hardware", "workload", "train", "analog"]
    bounded: bool  # the structural workload's value is a lower bound
    description: str
    fraction: bool = False  # a value in [0, 1] (accuracies: 0.9, not 90)


METRICS: dict[str, Metric] = {
    "energy_pj": Metric("pJ", "minimize", "hardware", True, "energy per inference"),
    "energy_uj": Metric("µJ", "minimize", "hardware", True, "energy per inference"),
    "latency_ns": Metric("ns", "minimize", "hardware", True, "latency per inference, layers in sequence"),
    "latency_us": Metric("µs", "minimize", "hardware", True, "latency per inference, layers in sequence"),
    "latency_ms": Metric("ms", "minimize", "hardware", True, "latency per inference, layers in sequence"),
    "area_um2": Metric("µm²", "minimize", "hardware", True, "chip area"),
    "area_mm2": Metric("mm²", "minimize", "hardware", True, "chip area"),
    "edp_pj_ns": Metric("pJ·ns", "minimize", "hardware", True, "energy-delay product"),
    "edap_pj_ns_mm2": Metric("pJ·ns·mm²", "minimize", "hardware", True, "energy-delay-area product"),
    "tops_per_w": Metric("TOPS/W", "maximize", "hardware", False, "dense-equivalent operations per energy"),
    "tops_per_mm2": Metric("TOPS/mm²", "maximize", "hardware", False, "throughput per area"),
    "footprint_bytes": Metric("B", "minimize", "workload", True, "weights and membranes at their bits"),
    "params": Metric("", "minimize", "workload", True, "weights"),
    "accuracy": Metric("", "maximize", "train", False, "test accuracy, digital", fraction=True),
    "analog_accuracy": Metric(
        "", "maximize", "analog", False, "test accuracy on the crossbar, mean over seeds", fraction=True
    ),
    "analog_accuracy_std": Metric(
        "", "minimize", "analog", False, "std of the analog accuracy over seeds", fraction=True
    ),
}

_SCALE = {
    "energy_uj": ("energy_pj", 1e-6),
    "latency_us": ("latency_ns", 1e-3),
    "latency_ms": ("latency_ns", 1e-6),
    "area_mm2": ("area_um2", 1e-6),
}


def quantity(name: str) -> str:
    """The quantity a metric measures, named by its metric in the base unit
    (``energy_uj`` → ``energy_pj``)."""
    return _SCALE[name][0] if name in _SCALE else name


def in_base_unit(name: str, value: float) -> float:
    """``value`` of metric ``name`` in the unit of :func:`quantity` (2 µJ → 2e6 pJ)."""
    return value / _SCALE[name][1] if name in _SCALE else value


def check_metric(name: str, field: str, hardware_only: bool) -> Metric:
    """The metric ``name``, or a one-line error naming ``field`` and the allowed metrics."""
    allowed = [m for m, d in METRICS.items() if not hardware_only or d.source in ("hardware", "workload")]
    if name not in allowed:
        what = "a hardware-only space offers" if hardware_only and name in METRICS else "allowed"
        raise SpikecimError(f"space: {field}: unknown metric '{name}', {what}: {', '.join(allowed)}")
    return METRICS[name]


def hardware_metrics(report, workload) -> dict[str, float]:
    """The hardware and workload metrics of a cost report and its workload (those the
    estimator does not model, such as latency of ``naive``, are left out)."""
    out: dict[str, float] = {}
    for k in (
        "energy_pj",
        "latency_ns",
        "area_um2",
        "edp_pj_ns",
        "edap_pj_ns_mm2",
        "tops_per_w",
        "tops_per_mm2",
    ):
        v = getattr(report, k)
        if v is not None and (k == "energy_pj" or v > 0):
            out[k] = float(v)
    for k, (src, scale) in _SCALE.items():
        if src in out:
            out[k] = out[src] * scale
    m = workload.metrics()
    out["footprint_bytes"] = float(m["footprint_bytes"])
    out["params"] = float(m["params"])
    return out


def constraint_values(constraints, values: dict[str, float]) -> list[float]:
    """Optuna's constraint values (feasible when every one is <= 0): ``value − bound`` for
    ``<=``, ``bound − value`` for ``>=``; a metric not computed counts as violated (inf is
    not allowed by Optuna, so a large finite number)."""
    out = []
    for c in constraints:
        v = values.get(c.metric)
        if v is None or not math.isfinite(v):
            out.append(1e300)
        else:
            out.append(v - c.bound if c.op == "<=" else c.bound - v)
    return out


def violated_by_bound(constraints, bounds: dict[str, float]) -> str | None:
    """The first ``<=`` constraint on a bounded metric that the lower bound already violates
    (as a line for the record), or None when training may still meet every constraint."""
    for c in constraints:
        if c.op == "<=" and METRICS[c.metric].bounded and c.metric in bounds and bounds[c.metric] > c.bound:
            return f"{c.metric} >= {bounds[c.metric]:.6g} (lower bound, no training) > {c.bound:g}"
    return None
