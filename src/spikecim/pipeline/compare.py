"""One table of the efficiency methods a run compares, built from the stages' typed results.

:func:`compare_methods` is a pure function of the results of ``evaluate`` (accuracy, the
average timesteps of an early-exit variant), ``analog`` (accuracy on the simulated crossbar,
mean ± std over programming seeds), ``trace`` (parameters, memory footprint of weights and
membranes, and the footprint's ratio to the baseline's, the share of zero weights) and ``hardware`` (energy, latency, area, EDP per architecture). Every cost is
also given as its ratio to the baseline variant's on the same architecture, so the naive
operation-count estimate and the hardware models sit side by side ("estimated versus
real"). A stage that did not run leaves its columns empty. Pydantic only (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spikecim.pipeline.results import (
    AnalogResult,
    EvaluateResult,
    HardwareResult,
    MethodCost,
    MethodRow,
    MethodsResult,
    TraceResult,
)

__all__ = ["COSTS", "compare_methods", "method_label", "ratio_to"]

# The costs compared per architecture: (field of ArchCost / MethodCost, field of its ratio).
COSTS = (
    ("energy_pj", "energy_ratio"),
    ("latency_ns", "latency_ratio"),
    ("area_um2", "area_ratio"),
    ("edp_pj_ns", "edp_ratio"),
)


def method_label(name: str, options: Mapping[str, object]) -> str:
    """``mint(bits=4)``; a method without options is its name."""
    if not options:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in options.items())})"


def compare_methods(
    methods: Mapping[str, Sequence[str]],
    timesteps: Mapping[str, int],
    baseline: str,
    evaluate: EvaluateResult | None = None,
    analog: AnalogResult | None = None,
    trace: TraceResult | None = None,
    hardware: HardwareResult | None = None,
) -> MethodsResult:
    """The comparison of the variants ``methods`` names (variant -> method labels, in the
    run's order); ``timesteps`` holds each variant's T, used unless its evaluation exited
    early (``average_steps``)."""
    ev = evaluate.variants if evaluate is not None else {}
    tr = trace.variants if trace is not None else {}
    # the table's analog column is an accuracy: a language model's crossbar perplexity stays
    # in the analog stage's own table
    an = analog.variants if analog is not None and analog.enabled and analog.metric == "accuracy" else {}
    hw = hardware.variants if hardware is not None and hardware.enabled else {}
    base_hw = hw.get(baseline, {})
    base_footprint = tr[baseline].footprint_bytes if baseline in tr else None
    rows = {}
    for variant, labels in methods.items():
        e, t = ev.get(variant), tr.get(variant)
        steps = getattr(e, "average_steps", None) if e is not None else None
        seeds = an[variant].analog if variant in an else None
        costs = {}
        for arch, c in hw.get(variant, {}).items():
            b = base_hw.get(arch)
            cost = {key: getattr(c, key) for key, _ in COSTS}
            for key, ratio in COSTS:
                cost[ratio] = ratio_to(cost[key], getattr(b, key) if b is not None else None)
            costs[arch] = MethodCost(**cost)
        rows[variant] = MethodRow(
            methods=list(labels),
            timesteps=float(steps) if steps is not None else float(timesteps[variant]),
            early_exit=steps is not None,
            accuracy=e.accuracy if e is not None else None,
            analog_mean=seeds.mean if seeds is not None else None,
            analog_std=seeds.std if seeds is not None else None,
            params=t.params if t is not None else None,
            footprint_bytes=t.footprint_bytes if t is not None else None,
            footprint_reduction_vs_fp32=t.footprint_reduction_vs_fp32 if t is not None else None,
            footprint_ratio=ratio_to(t.footprint_bytes, base_footprint) if t is not None else None,
            weight_sparsity=t.weight_sparsity if t is not None else None,
            hardware=costs,
        )
    archs = list(hardware.archs) if hardware is not None and hardware.enabled else []
    for per_arch in hw.values():
        archs += [a for a in per_arch if a not in archs]
    return MethodsResult(
        baseline=baseline,
        archs=archs,
        n_seeds=analog.n_seeds if an else None,
        variants=rows,
    )


def ratio_to(value: float | None, base: float | None) -> float | None:
    """``value / base``; None when either is missing or the base is 0."""
    return value / base if value is not None and base else None
