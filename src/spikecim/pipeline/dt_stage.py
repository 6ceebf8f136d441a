"""The ``dt-sweep`` stage of ``spikecim run``: what dynamic timesteps (DT-SNN) save.

For every variant built with the ``dt-snn`` method (:class:`~spikecim.nn.DynamicTimesteps`),
the trained network is run

- statically: all T steps for every sample (the wrapped model alone), and
- with early exit at each threshold θ of a sweep (the variant's own θ included),

and each point gets its test accuracy, average steps, and through
:func:`~spikecim.hw.estimate` on every architecture of ``hardware.archs`` the energy, latency
and EDP of its traced workload (activity over the samples still running, plus the exit unit).
``at_static_accuracy`` is the θ with the lowest EDP whose accuracy is at most 0.5 points
below the static network's, with the fraction of energy, latency and EDP it saves. When the
run has a spiking variant without ``dt-snn`` at the same T (the static SNN trained on its
own), its accuracy and costs are shown beside as ``reference``. Metrics
(``metrics.json["dt-sweep"]``): ``variants[variant]`` as above; the plot is
``plots/dt_snn.png`` (accuracy against EDP relative to the static network, and average
steps against θ). A run without ``dt-snn`` variants records ``{"variants": {}}``.
"""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.results import result_json
from spikecim.report.fmt import pct
from spikecim.report.sections import embed_chart, html_table, register_section

__all__ = ["ACCURACY_SLACK", "SWEEPS", "dt_sweep_stage"]

SWEEPS = {
    "entropy": (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7),
    "confidence": (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999),
}
ACCURACY_SLACK = 0.005  # "the same accuracy": at most 0.5 points below the static network
PLOT = "dt_snn.png"


def dt_sweep_stage(ctx) -> dict:
    from spikecim.nn.dynamic import DynamicTimesteps

    out: dict = {}
    for v in ctx.config.variants:
        model = ctx.models.get(v.name)
        if isinstance(model, DynamicTimesteps):
            out[v.name] = _sweep(ctx, v.name, model)
    plots = []
    if out:
        plots.append(str(_plot(out, ctx.plots_dir / PLOT).relative_to(ctx.run_dir)))
    return {"variants": out, "files": {"plots": plots}}


def _sweep(ctx, variant: str, model) -> dict:
    from spikecim.nn.dynamic import DynamicTimesteps
    from spikecim.pipeline.run import variant_input
    from spikecim.pipeline.stage_hardware import _label

    cfg = ctx.config
    archs = list(cfg.hardware.archs)

    def point(net, threshold: float | None) -> dict:
        inputs = variant_input(cfg, variant, ctx.data)
        ev = _evaluate(net, ctx, inputs)
        wl = _trace(net, ctx, variant)
        return {
            "threshold": threshold,
            "accuracy": ev["accuracy"],
            "average_steps": ev.get("average_steps", float(inputs.timesteps or 1)),
            "running_per_step": wl.running_per_step,
            "hardware": {_label(a): _costs(wl, a, cfg.hardware.dense) for a in archs},
        }

    static = point(model.model, None)
    grid = sorted({*SWEEPS[model.rule], model.threshold})
    points = [point(DynamicTimesteps(model.model, model.rule, t), t) for t in grid]
    arch = _key_arch(static)
    return {
        "rule": model.rule,
        "threshold": model.threshold,
        "timesteps": cfg.timesteps_for(cfg.variant(variant)),
        "arch": arch,
        "static": static,
        "points": points,
        "at_static_accuracy": _best(static, points, arch),
        "reference": _reference(ctx, variant),
    }


def _evaluate(net, ctx, inputs) -> dict:
    from spikecim.train import evaluate

    return evaluate(net, ctx.data.x_test, ctx.data.y_test, inputs, seed=ctx.config.seed)


def _trace(net, ctx, variant: str):
    from spikecim.pipeline.core_stages import trace_inputs
    from spikecim.trace import trace

    return trace(
        net, trace_inputs(ctx, variant), model_name=ctx.config.model.name, dataset=ctx.config.data.name
    )


def _costs(workload, arch: str, dense: bool) -> dict:
    from spikecim.hw.estimate import estimate

    r = estimate(workload, arch, dense=dense)
    return {"energy_pj": r.energy_pj, "latency_ns": r.latency_ns, "edp_pj_ns": r.edp_pj_ns}


def _key_arch(static: dict) -> str:
    """The architecture the best θ is chosen on: ``imc-rram-65nm`` when costed, else the first
    one that models latency (EDP), else the first."""
    hw = static["hardware"]
    if "imc-rram-65nm" in hw:
        return "imc-rram-65nm"
    return next((a for a, c in hw.items() if c["edp_pj_ns"] is not None), next(iter(hw)))


def _figure(c: dict) -> float:
    """EDP where latency is modelled, energy otherwise."""
    return c["edp_pj_ns"] if c["edp_pj_ns"] is not None else c["energy_pj"]


def _best(static: dict, points: list[dict], arch: str) -> dict | None:
    """The θ with the lowest EDP on ``arch`` within ACCURACY_SLACK of the static accuracy, and
    the fractions of energy, latency and EDP it saves on every architecture."""
    ok = [p for p in points if p["accuracy"] >= static["accuracy"] - ACCURACY_SLACK - 1e-12]
    if not ok:
        return None
    best = min(ok, key=lambda p: _figure(p["hardware"][arch]))
    saved = {}
    for a, c in best["hardware"].items():
        s = static["hardware"][a]
        saved[a] = {
            k: (1.0 - c[k] / s[k] if c[k] is not None and s[k] else None)
            for k in ("energy_pj", "latency_ns", "edp_pj_ns")
        }
    return {
        "threshold": best["threshold"],
        "accuracy": best["accuracy"],
        "average_steps": best["average_steps"],
        "saved": saved,
    }


def _reference(ctx, variant: str) -> dict | None:
    """The first spiking variant without ``dt-snn`` at the same T, with its evaluate and
    hardware results (None when the run has none or they did not run)."""
    cfg = ctx.config
    t = cfg.timesteps_for(cfg.variant(variant))
    for v in cfg.variants:
        if v.spiking and cfg.timesteps_for(v) == t and all(m.name != "dt-snn" for m in v.methods):
            ev = (result_json(ctx.metrics.get("evaluate")) or {}).get(v.name)
            hw = ((result_json(ctx.metrics.get("hardware")) or {}).get("variants") or {}).get(v.name)
            if not ev:
                return None
            return {
                "variant": v.name,
                "accuracy": ev["accuracy"],
                "hardware": {
                    a: {k: r.get(k) for k in ("energy_pj", "latency_ns", "edp_pj_ns")}
                    for a, r in (hw or {}).items()
                },
            }
    return None


def _plot(results: dict, path: Path) -> Path:
    """Accuracy against EDP (relative to the static network) and average steps against θ."""
    from spikecim.report.plots import plt, save_figure

    fig, (ax_edp, ax_steps) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (variant, r) in enumerate(results.items()):
        color, arch = f"C{i}", r["arch"]
        base = _figure(r["static"]["hardware"][arch])
        xs = [_figure(p["hardware"][arch]) / base for p in r["points"]]
        ys = [p["accuracy"] * 100 for p in r["points"]]
        ax_edp.plot(xs, ys, "-o", color=color, ms=4, label=f"{variant} ({r['rule']} θ sweep)")
        for p, x, y in zip(r["points"], xs, ys):
            ax_edp.annotate(
                f"{p['threshold']:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        ax_edp.plot(
            [1.0],
            [r["static"]["accuracy"] * 100],
            "*",
            color=color,
            ms=12,
            label=f"{variant} static, T = {r['timesteps']}",
        )
        ref = r.get("reference")
        if ref and arch in ref["hardware"] and ref["hardware"][arch].get("energy_pj"):
            ax_edp.plot(
                [_figure(ref["hardware"][arch]) / base],
                [ref["accuracy"] * 100],
                "s",
                color="k",
                ms=6,
                label=f"{ref['variant']} (static SNN trained alone)",
            )
        thresholds = [p["threshold"] for p in r["points"]]
        ax_steps.plot(
            thresholds, [p["average_steps"] for p in r["points"]], "-o", color=color, ms=4, label=variant
        )
        ax_edp.set_xlabel(
            f"{'EDP' if r['static']['hardware'][arch]['edp_pj_ns'] else 'energy'} on {arch} / static"
        )
    ax_edp.set(ylabel="test accuracy (%)", title="accuracy against cost (labels: θ)")
    ax_steps.set(xlabel="threshold θ", ylabel="average timesteps", title="average timesteps")
    for ax in (ax_edp, ax_steps):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


@register_section("dt-sweep", "Dynamic timesteps (DT-SNN)", order=55, stage="dt-sweep")
def dt_section(result, run_dir: Path) -> str:
    m = result_json(result)
    if not isinstance(m, dict) or not m.get("variants"):
        return ""
    parts = [
        (
            "<p>Each sample stops at the first step whose mean output is certain enough (normalised "
            "entropy below θ, or top probability at least θ); costs count only the samples still "
            "running, plus the exit unit. Static: the same network run for all T steps.</p>"
        )
    ]
    for variant, r in m["variants"].items():
        arch = r["arch"]
        base = r["static"]["hardware"][arch]

        def rel(c: dict, key: str, base=base) -> str:
            return f"{c[key] / base[key]:.3f}" if c.get(key) is not None and base.get(key) else "n/a"

        rows = [["static", f"{r['timesteps']}", pct(r["static"]["accuracy"]), "1.000", "1.000", "1.000"]]
        for p in r["points"]:
            c = p["hardware"][arch]
            rows.append(
                [
                    f"{p['threshold']:g}",
                    f"{p['average_steps']:.2f}",
                    pct(p["accuracy"]),
                    rel(c, "energy_pj"),
                    rel(c, "latency_ns"),
                    rel(c, "edp_pj_ns"),
                ]
            )
        parts.append(
            f"<h3>{html.escape(variant)}: {html.escape(r['rule'])} rule, T = {r['timesteps']}, on {html.escape(arch)}</h3>"
        )
        parts.append(
            html_table(
                ["θ", "average steps", "accuracy", "energy / static", "latency / static", "EDP / static"],
                rows,
            )
        )
        best = r.get("at_static_accuracy")
        if best:
            s = best["saved"][arch]
            parts.append(
                f"<p>At the static accuracy (within {ACCURACY_SLACK * 100:g} points): θ = {best['threshold']:g}, "
                f"{best['average_steps']:.2f} steps on average, accuracy {pct(best['accuracy'])}; saves "
                f"{_saved(s['energy_pj'])} energy, {_saved(s['latency_ns'])} latency, {_saved(s['edp_pj_ns'])} EDP.</p>"
            )
        else:
            parts.append("<p>No θ of the sweep reaches the static accuracy (within 0.5 points).</p>")
        ref = r.get("reference")
        if ref:
            parts.append(
                f"<p>Reference: {html.escape(ref['variant'])} (static SNN trained on its own), accuracy "
                f"{pct(ref['accuracy'])}.</p>"
            )
    pngs = [Path(run_dir) / p for p in m.get("files", {}).get("plots", []) if (Path(run_dir) / p).exists()]
    fig = _chart(m["variants"])
    parts.append(
        embed_chart(
            fig, pngs[0] if pngs else None, "dynamic timesteps: accuracy against EDP", name="dt-sweep"
        )
    )
    return "\n".join(parts)


def _chart(results: dict):
    """The interactive twin of :func:`_plot`: accuracy against the cost relative to the static
    network (hover: θ, steps), the static network a star; average timesteps against θ."""
    from plotly.subplots import make_subplots

    from spikecim.report.charts import palette

    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy against cost", "average timesteps"))
    x_title = "cost / static"
    for i, (variant, r) in enumerate(results.items()):
        arch = r["arch"]
        base = _figure(r["static"]["hardware"][arch])
        kind = "EDP" if r["static"]["hardware"][arch]["edp_pj_ns"] else "energy"
        x_title = f"{kind} on {arch} / static (×)"
        xs = [_figure(p["hardware"][arch]) / base for p in r["points"]]
        fig.add_scatter(
            x=xs,
            y=[p["accuracy"] * 100 for p in r["points"]],
            mode="lines+markers",
            name=f"{variant} ({r['rule']} θ sweep)",
            line={"color": palette(i)},
            text=[f"θ = {p['threshold']:g}, {p['average_steps']:.2f} steps" for p in r["points"]],
            hovertemplate=f"%{{text}}: %{{y:.2f}} %, %{{x:.3f}}× the static {kind}<extra>{variant}</extra>",
            row=1,
            col=1,
        )
        fig.add_scatter(
            x=[1.0],
            y=[r["static"]["accuracy"] * 100],
            mode="markers",
            name=f"{variant} static, T = {r['timesteps']}",
            marker={"symbol": "star", "size": 14, "color": palette(i)},
            hovertemplate=f"static, T = {r['timesteps']}: %{{y:.2f}} %<extra>{variant}</extra>",
            row=1,
            col=1,
        )
        ref = r.get("reference")
        if ref and arch in ref["hardware"] and ref["hardware"][arch].get("energy_pj"):
            fig.add_scatter(
                x=[_figure(ref["hardware"][arch]) / base],
                y=[ref["accuracy"] * 100],
                mode="markers",
                name=f"{ref['variant']} (static SNN trained alone)",
                marker={"symbol": "square", "size": 9, "color": "#333"},
                hovertemplate="%{y:.2f} %, %{x:.3f}×<extra>" + ref["variant"] + "</extra>",
                row=1,
                col=1,
            )
        fig.add_scatter(
            x=[p["threshold"] for p in r["points"]],
            y=[p["average_steps"] for p in r["points"]],
            mode="lines+markers",
            name=f"{variant} steps",
            line={"color": palette(i)},
            showlegend=False,
            hovertemplate="θ = %{x:g}: %{y:.2f} steps<extra>" + variant + "</extra>",
            row=1,
            col=2,
        )
    fig.update_layout(template="none", height=400, title="Dynamic timesteps: accuracy against cost")
    fig.update_xaxes(title_text=x_title, row=1, col=1)
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    fig.update_xaxes(title_text="threshold θ (dimensionless)", row=1, col=2)
    fig.update_yaxes(title_text="average timesteps (steps)", row=1, col=2)
    return fig


def _saved(fraction: float | None) -> str:
    return "n/a" if fraction is None else pct(fraction)
