"""The report sections of the core stages: training, evaluation, the traced workload, run time.

Each takes its stage's typed result (:mod:`spikecim.pipeline.results`; plus each variant's
``workload*.json``, named in ``config.yaml``, for the workload) and returns ``""`` when that
stage did not run.
Every variant of the run gets its row or column, in the config's order.
Numbers are formatted with :mod:`spikecim.report.fmt`.
"""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.results import EvaluateResult, TraceResult, TrainResult
from spikecim.readers import read_mapping
from spikecim.report import charts, plots
from spikecim.report.fmt import MISSING, count, pct, rate
from spikecim.report.sections import embed_chart, html_table, register_section
from spikecim.variants import workload_filename

__all__ = [
    "evaluation_section",
    "timing_section",
    "training_section",
    "workload_section",
]


_TOTALS = (
    ("dense_macs", "dense MACs / sample", count),
    ("effective_acs", "effective ACs / sample", count),
    ("effective_acs_on_nonzero_weights", "effective ACs on non-zero weights / sample", count),
    ("activation_sparsity", "activation sparsity", pct),
    ("weight_sparsity", "zero weights (programmed)", pct),
    ("params", "parameters", count),
    ("weight_bytes", "weight memory (bytes)", count),
    ("membrane_bytes", "membrane memory (bytes)", count),
    ("footprint_bytes", "memory footprint (bytes)", count),
    ("footprint_reduction_vs_fp32", "footprint saved vs 32-bit", pct),
    ("neurons", "neurons", count),
)


@register_section("training", "Training", order=10, stage="train")
def training_section(result: TrainResult | None, run_dir: Path) -> str:
    """Final test accuracy, epochs and time per variant; accuracy and loss curves."""
    train = result.variants if result is not None else {}
    if not train:
        return ""
    rows = []
    for variant, m in train.items():
        history = m.history
        best = max((h.test_acc for h in history if h.test_acc is not None), default=None)
        seconds = sum(h.seconds or 0.0 for h in history) if history else None
        rows.append(
            [
                variant.upper(),
                len(history) if m.epochs is None else m.epochs,
                pct(m.test_acc),
                pct(best),
                MISSING if seconds is None else f"{seconds:.1f}",
            ]
        )
    out = html_table(
        ["model", "epochs", "final test accuracy", "best test accuracy", "training time (s)"], rows
    )
    histories = {v: [h.model_dump() for h in m.history] for v, m in train.items() if m.history}
    if histories:
        png = plots.training_curves(histories, run_dir / "plots" / "training.png")
        out += embed_chart(
            charts.training_curves(histories), png, "accuracy and loss per epoch", name="training"
        )
    return out


@register_section("evaluation", "Evaluation", order=20, stage="evaluate")
def evaluation_section(result: EvaluateResult | None, run_dir: Path) -> str:
    """Test accuracy per variant and the mean activity of every layer."""
    evaluate = result.variants if result is not None else {}
    if not evaluate:
        return ""
    headers = ["model", "test accuracy", "samples"]
    rows = [
        [v.upper(), pct(m.accuracy), MISSING if m.samples is None else m.samples] for v, m in evaluate.items()
    ]
    steps = {v: getattr(m, "average_steps", None) for v, m in evaluate.items()}
    if any(s is not None for s in steps.values()):  # early exit (DT-SNN)
        headers.append("average timesteps")
        for row, s in zip(rows, steps.values(), strict=True):
            row.append(MISSING if s is None else f"{s:.2f}")
    out = html_table(headers, rows)
    rates = {v: m.spike_rates for v, m in evaluate.items() if m.spike_rates}
    if rates:
        layers: list[str] = []
        for per_layer in rates.values():
            layers += [name for name in per_layer if name not in layers]
        out += "<h3>Activity per layer</h3>"
        out += "<p>Mean spikes per neuron per step (spiking variants); fraction of non-zero ReLU outputs (ANN).</p>"
        out += html_table(
            ["layer", *(v.upper() for v in rates)],
            [[name, *(rate(r.get(name)) for r in rates.values())] for name in layers],
        )
        png = plots.spike_rates(rates, run_dir / "plots" / "spike_rates.png")
        chart = charts.grouped_bars(
            {v.upper(): r for v, r in rates.items()},
            "Spike rate per layer (ANN: non-zero fraction)",
            "activity (spikes / neuron / step)",
            "spikes / neuron / step",
        )
        out += embed_chart(chart, png, "spike rate per layer", name="spike-rates")
    return out


@register_section("workload", "Workload", order=30, stage="trace")
def workload_section(result: TraceResult | None, run_dir: Path) -> str:
    """Per-layer traced workload of each variant and NeuroBench-style totals."""
    from spikecim.trace.workload import Workload

    totals = result.variants if result is not None else {}
    variants = run_variants(run_dir)
    files = {v.name: run_dir / workload_filename(variants, v.name) for v in variants}
    loaded = {v: Workload.load(f) for v, f in files.items() if f.exists()}
    if not totals and not loaded:
        return ""
    out = ""
    if totals:
        out += html_table(
            ["metric", *(v.upper() for v in totals)],
            [[label, *(fmt(getattr(t, key)) for t in totals.values())] for key, label, fmt in _TOTALS],
        )
    series: dict[str, dict[str, float]] = {}
    for variant, wl in loaded.items():
        name = variant.upper()
        out += f"<h3>{name} layers</h3>"
        out += (
            f"<p>model {html.escape(wl.model)}, T = {wl.timesteps}, activity averaged over "
            f"{wl.samples} samples.</p>"
        )
        out += html_table(
            [
                "layer",
                "kind",
                "in→out",
                "kernel",
                "in_hw→out_hw",
                "params",
                "zero weights",
                "MACs/step",
                "input activity",
                "ACs (all steps)",
            ],
            [_layer_row(layer) for layer in wl.layers],
        )
        series[f"{name} dense MACs"] = {layer.name: float(layer.total_macs) for layer in wl.layers}
        series[f"{name} effective ACs"] = {layer.name: layer.total_acs for layer in wl.layers}
    if series:
        png = plots.layer_ops(series, run_dir / "plots" / "workload_ops.png")
        chart = charts.grouped_bars(
            series, "Operations per layer", "operations / sample, all steps", "operations", log=True
        )
        out += embed_chart(chart, png, "operations per layer", name="workload-ops")
    return out


def _layer_row(layer) -> list[str]:
    spatial = layer.kind != "linear"
    return [
        layer.name,
        layer.kind,
        f"{layer.in_ch}→{layer.out_ch}",
        f"{layer.kernel[0]}×{layer.kernel[1]}" if spatial else MISSING,
        f"{layer.in_hw[0]}×{layer.in_hw[1]}→{layer.out_hw[0]}×{layer.out_hw[1]}" if spatial else MISSING,
        count(layer.params),
        pct(layer.weight_sparsity),
        count(layer.macs),
        pct(layer.in_activity),
        count(layer.total_acs),
    ]


def run_variants(run_dir: Path) -> list:
    """The variants of the run folder's ``config.yaml`` (the default pair without one)."""
    from spikecim.variants import resolve_variants

    path = Path(run_dir) / "config.yaml"
    return resolve_variants(read_mapping(path, "report", "of sections") if path.exists() else None)


@register_section("timing", "Run time", order=90)
def timing_section(metrics: dict, run_dir: Path) -> str:
    """Wall-clock seconds of every stage the run loop timed (``metrics["timing_s"]``)."""
    timing = metrics.get("timing_s")  # the run loop's seconds per stage
    if not isinstance(timing, dict) or not timing:
        return ""
    rows = [[stage, f"{seconds:.1f}"] for stage, seconds in timing.items()]
    rows.append(["total", f"{sum(timing.values()):.1f}"])
    return html_table(["stage", "seconds"], rows)
