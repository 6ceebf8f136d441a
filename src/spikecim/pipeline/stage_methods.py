"""The ``methods`` stage of ``spikecim run`` and its report section: one table and one plot
comparing the run's variants and the methods each lists.

The stage reads the results of the stages that ran before it (evaluate, analog, trace,
hardware) and builds :func:`~spikecim.pipeline.compare.compare_methods` of them; it writes
``plots/methods.png`` (accuracy against energy relative to the baseline on each
architecture, and the memory footprint with the average timesteps). A run none of whose
variants lists a method gets an empty result and no section.
"""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.compare import compare_methods, method_label
from spikecim.pipeline.results import MethodsResult
from spikecim.pipeline.stages import RunContext
from spikecim.report.fmt import MISSING, count, energy, energy_unit, pct, pct_spread, ratio
from spikecim.report.sections import embed_chart, html_table, register_section

__all__ = ["methods_chart", "methods_section", "methods_stage", "plot_methods"]


def methods_stage(ctx: RunContext) -> MethodsResult:
    """Compare the variants' methods: accuracy, timesteps, footprint and cost per architecture."""
    cfg = ctx.config
    if not any(v.methods for v in cfg.variants):
        return MethodsResult()
    result = compare_methods(
        {v.name: [method_label(m.name, m.options) for m in v.methods] for v in cfg.variants},
        {v.name: cfg.timesteps_for(v) for v in cfg.variants},
        cfg.baseline,
        evaluate=ctx.metrics.get("evaluate"),
        analog=ctx.metrics.get("analog"),
        trace=ctx.metrics.get("trace"),
        hardware=ctx.metrics.get("hardware"),
    )
    if any(r.accuracy is not None or r.footprint_bytes is not None for r in result.variants.values()):
        png = plot_methods(result, ctx.plots_dir / "methods.png")
        result.plots = [str(png.relative_to(ctx.run_dir))]
    return result


def plot_methods(result: MethodsResult, path: Path) -> Path:
    """Left: accuracy against energy / baseline, one marker per architecture (the naive
    estimate among them); right: memory footprint per variant, its average timesteps on top."""
    from spikecim.report.plots import plt, save_figure

    names = list(result.variants)
    fig, (ax_acc, ax_mem) = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = "osD^v<>P*X"
    for i, arch in enumerate(result.archs):
        pts = [
            (r.hardware[arch].energy_ratio, r.accuracy * 100, v)
            for v, r in result.variants.items()
            if arch in r.hardware and r.hardware[arch].energy_ratio is not None and r.accuracy is not None
        ]
        if not pts:
            continue
        ax_acc.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[i % len(markers)], label=arch)
        for x, y, v in pts:
            ax_acc.annotate(v, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax_acc.set(
        xlabel=f"energy / {result.baseline} (same architecture)",
        ylabel="test accuracy (%)",
        title="accuracy against energy",
    )
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize=7)
    ax_acc.grid(alpha=0.3)
    kb = [(r.footprint_bytes or 0.0) / 1e3 for r in result.variants.values()]
    bars = ax_mem.bar(range(len(names)), kb, color=[f"C{i % 10}" for i in range(len(names))])
    for bar, r in zip(bars, result.variants.values(), strict=True):
        if r.timesteps is not None:
            ax_mem.annotate(
                f"T {r.timesteps:.3g}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
    ax_mem.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax_mem.set(ylabel="weights + membranes (kB)", title="memory footprint (labels: average timesteps)")
    ax_mem.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def _num(v: float | None, scale: float = 1.0) -> str:
    return MISSING if v is None else f"{v / scale:.4g}"


@register_section("methods", "Methods compared", order=65, stage="methods")
def methods_section(result: MethodsResult | None, run_dir: Path) -> str:
    """The variants side by side: accuracy (ideal, analog), timesteps, footprint, parameters,
    then each cost per architecture with its ratio to the baseline."""
    if result is None or not result.variants:
        return ""
    rows = result.variants
    analog = any(r.analog_mean is not None for r in rows.values())
    headers = ["variant", "methods", "accuracy", *(["analog accuracy"] if analog else [])]
    headers += [
        "average timesteps", "parameters", "footprint (bytes)", "×", "footprint saved vs 32-bit", "zero weights",
    ]  # fmt: skip
    table = []
    for v, r in rows.items():
        steps = (
            MISSING if r.timesteps is None else (f"{r.timesteps:.2f}" if r.early_exit else f"{r.timesteps:g}")
        )
        line = [v, " + ".join(r.methods) or MISSING, pct(r.accuracy)]
        if analog:
            line.append(pct_spread(r.analog_mean, r.analog_std, result.n_seeds))
        line += [
            steps,
            count(r.params),
            count(r.footprint_bytes),
            ratio(r.footprint_ratio),
            pct(r.footprint_reduction_vs_fp32),
            pct(r.weight_sparsity),
        ]
        table.append(line)
    parts = [
        (
            "<p>Accuracy on the test set (analog: on the simulated crossbar, mean ± std over programming "
            "seeds); average timesteps with early exit, else the variant's T; footprint: weights and "
            f"membranes at their bits (× {html.escape(str(result.baseline))}).</p>"
        ),
        html_table(headers, table),
    ]
    if result.archs:
        unit = energy_unit(c.energy_pj for r in rows.values() for c in r.hardware.values())[0]
        cost_rows = [
            [
                v,
                arch,
                energy(c.energy_pj, unit),
                ratio(c.energy_ratio),
                _num(c.latency_ns or None, 1e3),
                ratio(c.latency_ratio),
                _num(c.area_um2 or None, 1e6),
                ratio(c.area_ratio),
                _num(c.edp_pj_ns),
                ratio(c.edp_ratio),
            ]
            for arch in result.archs
            for v, r in rows.items()
            if (c := r.hardware.get(arch)) is not None
        ]
        parts.append(
            f"<h3>Cost per architecture (× {html.escape(str(result.baseline))} on the same architecture)</h3>"
            "<p>The naive architecture is the operation-count estimate papers report (energy only); the "
            "others are hardware models. The ratios read estimated against real.</p>"
        )
        parts.append(
            html_table(
                [
                    "variant",
                    "architecture",
                    f"energy ({unit})",
                    "×",
                    "latency (µs)",
                    "×",
                    "area (mm²)",
                    "×",
                    "EDP (pJ·ns)",
                    "×",
                ],
                cost_rows,
            )
        )
    pngs = [Path(run_dir) / p for p in result.plots if (Path(run_dir) / p).exists()]
    if any(r.accuracy is not None or r.footprint_bytes is not None for r in rows.values()):
        parts.append(
            embed_chart(
                methods_chart(result),
                pngs[0] if pngs else None,
                "methods: accuracy against energy, memory footprint",
                name="methods",
            )
        )
    return "\n".join(parts)


def methods_chart(result: MethodsResult):
    """The interactive twin of :func:`plot_methods`: accuracy against energy / baseline (one
    colour per architecture, hover names the variant), memory footprint per variant (kB, its
    average timesteps above the bar)."""
    from plotly.subplots import make_subplots

    from spikecim.report.charts import palette

    base = str(result.baseline)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy against energy", "memory footprint"))
    for i, arch in enumerate(result.archs):
        pts = [
            (r.hardware[arch].energy_ratio, r.accuracy * 100, v)
            for v, r in result.variants.items()
            if arch in r.hardware and r.hardware[arch].energy_ratio is not None and r.accuracy is not None
        ]
        if pts:
            fig.add_scatter(
                x=[p[0] for p in pts],
                y=[p[1] for p in pts],
                text=[p[2] for p in pts],
                mode="markers+text",
                textposition="top center",
                name=arch,
                marker={"size": 10, "color": palette(i)},
                hovertemplate=f"%{{text}}: %{{y:.2f}} %, %{{x:.3g}}× the {base}'s energy<extra>{arch}</extra>",
                row=1,
                col=1,
            )
    names = list(result.variants)
    fig.add_bar(
        x=names,
        y=[(r.footprint_bytes or 0.0) / 1e3 for r in result.variants.values()],
        name="footprint",
        text=[MISSING if r.timesteps is None else f"T {r.timesteps:.3g}" for r in result.variants.values()],
        textposition="outside",
        showlegend=False,
        marker_color=palette(len(result.archs)),
        hovertemplate="%{x}: %{y:.4g} kB (%{text})<extra>weights + membranes</extra>",
        row=1,
        col=2,
    )
    fig.update_layout(template="none", height=400, title="Methods compared")
    fig.update_xaxes(title_text=f"energy / {base} on the same architecture (×)", row=1, col=1)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    fig.update_xaxes(title_text="variant (labels: average timesteps)", type="category", row=1, col=2)
    fig.update_yaxes(title_text="weights + membranes (kB)", row=1, col=2)
    return fig
