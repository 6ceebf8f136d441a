"""Interactive report charts (plotly): each function takes plain data and returns a
``plotly.graph_objects.Figure`` to embed with :func:`~spikecim.report.sections.embed_chart`.

They mirror the PNGs of :mod:`spikecim.report.plots` (which stay for ``report.md`` and
papers) and read no files. Every axis names its unit; every hover shows the value with it.
Breakdowns are shares of a 100 % stacked bar with the total written above it, never bars
stacked on a log axis (where the bottom component looks dominant whatever its share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from spikecim.report.fmt import metric_axis, ratio

__all__ = [
    "accuracy_seeds",
    "accuracy_vs_energy",
    "base_figure",
    "component_shares",
    "grouped_bars",
    "heatmap",
    "layer_energy",
    "lines",
    "palette",
    "ratio_bars",
    "sweep",
    "training_curves",
]

# matplotlib's tab10 then the light halves of tab20: 20 distinguishable colours.
_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
)
_HEIGHT = 380


def base_figure(**layout):
    """An empty figure in the reports' style (no template, one height); ``layout`` overrides."""
    import plotly.graph_objects as go

    base = {
        "template": "none",
        "height": _HEIGHT,
        "margin": {"l": 70, "r": 20, "t": 60, "b": 60},
        "legend": {"orientation": "v"},
        "hovermode": "closest",
    }
    return go.Figure(layout={**base, **layout})


def palette(i: int) -> str:
    """The ``i``-th of the reports' 20 colours (cycling)."""
    return _COLORS[i % len(_COLORS)]


def training_curves(histories: Mapping[str, Sequence[Mapping]]):
    """Accuracy (train dashed, test solid, %) and loss per epoch, one colour per variant; with
    a spike-rate penalty or pruning in the records, a panel each for the rate it penalised
    and the weights pruned (%, :data:`spikecim.report.plots.EXTRA_PANELS`)."""
    from plotly.subplots import make_subplots

    from spikecim.report.plots import extra_panels

    extra = extra_panels(histories)
    titles = ("accuracy (%)", "training loss") + tuple(f"{title} (%)" for _, title, _, _ in extra)
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    curves = [  # (key, scale, name, dash, hover, column)
        ("train_acc", 100, "train", "dash", "%{y:.2f} %", 1),
        ("test_acc", 100, "test", "solid", "%{y:.2f} %", 1),
        ("loss", 1, "loss", "solid", "loss %{y:.4f}", 2),
    ]
    curves += [(key, 100, curve, "solid", "%{y:.2f} %", 3 + j) for j, (key, _, _, curve) in enumerate(extra)]
    for i, (variant, history) in enumerate(histories.items()):
        for key, scale, label, dash, hover, col in curves:
            pts = [(h["epoch"], h[key] * scale) for h in history if h.get(key) is not None]
            if pts:
                fig.add_scatter(
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    mode="lines+markers",
                    name=f"{variant.upper()} {label}",
                    line={"color": palette(i), "dash": dash},
                    hovertemplate=f"epoch %{{x}}: {hover}<extra>%{{fullData.name}}</extra>",
                    row=1,
                    col=col,
                )
    fig.update_layout(template="none", height=_HEIGHT, title="Accuracy and loss per epoch")
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="loss (cross-entropy, nats)", row=1, col=2)
    for j, (_, _, axis, _) in enumerate(extra):
        fig.update_yaxes(title_text=axis, row=1, col=3 + j)
    return fig


def grouped_bars(
    series: Mapping[str, Mapping[str, float]],
    title: str,
    y_title: str,
    unit: str,
    log: bool = False,
    x_title: str = "layer",
):
    """One bar group per layer (or other ``x_title`` category, first-seen order), one bar per
    series; ``y_title`` names the unit, ``unit`` is what the hover writes after a value."""
    layers: list[str] = []
    for per_layer in series.values():
        layers += [name for name in per_layer if name not in layers]
    fig = base_figure(title=title, barmode="group")
    for i, (label, per_layer) in enumerate(series.items()):
        names = [n for n in layers if n in per_layer]
        fig.add_bar(
            x=names,
            y=[per_layer[n] for n in names],
            name=label,
            marker_color=palette(i),
            hovertemplate=f"%{{x}}: %{{y:.4~g}} {unit}<extra>%{{fullData.name}}</extra>",
        )
    fig.update_xaxes(title_text=x_title, type="category")
    fig.update_yaxes(title_text=y_title + (" (log scale)" if log else ""), type="log" if log else "linear")
    return fig


def accuracy_seeds(variants: Mapping[str, Mapping], title: str, metric: str = "accuracy"):
    """Per variant: the digital accuracy, the mean ± std over seeds and every seed's accuracy.

    ``variants[name] = {"digital": fraction | None, "mean": fraction, "std": fraction,
    "seeds": [fraction, ...]}``; the seeds are drawn beside the mean so their spread shows.
    ``metric`` other than accuracy (a language model's perplexity) is drawn as it is, not in %.
    """
    k, u, y_title = metric_axis(metric)
    names = list(variants)
    fig = base_figure(title=title)
    digital = [
        (i - 0.2, variants[v]["digital"] * k, v)
        for i, v in enumerate(names)
        if variants[v].get("digital") is not None
    ]
    if digital:
        fig.add_scatter(
            x=[d[0] for d in digital],
            y=[d[1] for d in digital],
            mode="markers",
            name="digital",
            marker={"symbol": "diamond", "size": 10, "color": "#7f7f7f"},
            text=[d[2].upper() for d in digital],
            hovertemplate=f"%{{text}} digital: %{{y:.4~g}}{u}<extra></extra>",
        )
    means = [
        (i, variants[v]["mean"] * k, (variants[v].get("std") or 0.0) * k, v)
        for i, v in enumerate(names)
        if variants[v].get("mean") is not None
    ]
    if means:
        fig.add_scatter(
            x=[m[0] for m in means],
            y=[m[1] for m in means],
            mode="markers",
            name="analog mean ± std",
            error_y={"type": "data", "array": [m[2] for m in means], "visible": True},
            marker={"size": 12, "color": palette(0)},
            text=[m[3].upper() for m in means],
            customdata=[m[2] for m in means],
            hovertemplate=f"%{{text}} analog: %{{y:.4~g}}{u} ± %{{customdata:.2~g}}{u}<extra></extra>",
        )
    seeds = [
        (i + 0.2 + 0.04 * (j - (len(variants[v]["seeds"]) - 1) / 2), a * k, f"{v.upper()} seed {j}")
        for i, v in enumerate(names)
        for j, a in enumerate(variants[v].get("seeds") or [])
    ]
    if seeds:
        fig.add_scatter(
            x=[s[0] for s in seeds],
            y=[s[1] for s in seeds],
            mode="markers",
            name="each seed",
            marker={"size": 7, "color": palette(1), "symbol": "circle-open"},
            text=[s[2] for s in seeds],
            hovertemplate=f"%{{text}}: %{{y:.4~g}}{u}<extra></extra>",
        )
    fig.update_xaxes(
        tickvals=list(range(len(names))),
        ticktext=[n.upper() for n in names],
        title_text="variant",
        range=[-0.6, len(names) - 0.4],
    )
    fig.update_yaxes(title_text=y_title)
    return fig


def sweep(
    curves: Mapping[str, Mapping], title: str, x_title: str, log_x: bool = False, metric: str = "accuracy"
):
    """Accuracy (mean ± std over seeds, %) along a sweep, one line per variant, with its
    digital accuracy as a dashed line. ``curves[name] = {"x", "mean", "std", "digital"}``;
    ``metric`` as in :func:`accuracy_seeds`."""
    k, u, y_title = metric_axis(metric)
    fig = base_figure(title=title)
    for i, (name, c) in enumerate(curves.items()):
        fig.add_scatter(
            x=list(c["x"]),
            y=[m * k for m in c["mean"]],
            mode="lines+markers",
            name=f"{name.upper()} analog",
            error_y={"type": "data", "array": [s * k for s in c["std"]], "visible": True},
            line={"color": palette(i)},
            customdata=[s * k for s in c["std"]],
            hovertemplate=f"{x_title} %{{x}}: %{{y:.4~g}}{u} ± %{{customdata:.2~g}}{u}<extra>%{{fullData.name}}</extra>",
        )
        if c.get("digital") is not None and len(c["x"]):
            fig.add_scatter(
                x=[min(c["x"]), max(c["x"])],
                y=[c["digital"] * k] * 2,
                mode="lines",
                name=f"{name.upper()} digital",
                line={"color": palette(i), "dash": "dash", "width": 1},
                hovertemplate=f"digital: %{{y:.4~g}}{u}<extra>%{{fullData.name}}</extra>",
            )
    fig.update_xaxes(
        title_text=x_title + (" (log scale)" if log_x else ""), type="log" if log_x else "linear"
    )
    fig.update_yaxes(title_text=y_title)
    return fig


def component_shares(bars: Mapping[str, Mapping[str, float]], unit: tuple[str, float], title: str):
    """One 100 % stacked bar per ``bars`` key (e.g. ``"imc-rram-65nm / SNN"``): each component's
    share of that bar's energy (%), the absolute energy in the hover and the total above the bar.

    ``bars[label] = {component: energy in pJ}``; ``unit = (name, pJ per unit)`` from
    :func:`spikecim.report.fmt.energy_unit`.
    """
    labels = list(bars)
    comps: list[str] = []
    for per in bars.values():
        comps += [c for c in per if c not in comps]
    totals = {k: sum(v.values()) for k, v in bars.items()}
    fig = base_figure(title=title, barmode="stack", height=_HEIGHT + 80)
    for i, comp in enumerate(comps):
        xs = [k for k in labels if comp in bars[k] and totals[k] > 0]
        fig.add_bar(
            x=xs,
            y=[bars[k][comp] / totals[k] * 100 for k in xs],
            name=comp,
            marker_color=palette(i),
            customdata=[bars[k][comp] / unit[1] for k in xs],
            hovertemplate=f"{comp}: %{{y:.3~g}} % (%{{customdata:.4~g}} {unit[0]})<extra>%{{x}}</extra>",
        )
    fig.update_layout(
        annotations=[
            {
                "x": k,
                "y": 100,
                "text": f"{totals[k] / unit[1]:.4g} {unit[0]}",
                "showarrow": False,
                "yanchor": "bottom",
                "font": {"size": 11},
            }
            for k in labels
            if totals[k] > 0
        ]
    )
    fig.update_xaxes(
        type="category", title_text="architecture / variant (total energy per inference above the bar)"
    )
    fig.update_yaxes(title_text="share of energy per inference (%)", range=[0, 108])
    return fig


def layer_energy(
    per_arch: Mapping[str, Mapping[str, Mapping[str, float]]], unit: tuple[str, float], title: str
):
    """Energy per layer on a linear axis, one panel per architecture (each its own scale),
    one bar colour per variant. ``per_arch[arch][label] = {layer: energy in pJ}``, the label
    as the legend shows it."""
    from plotly.subplots import make_subplots

    archs = list(per_arch)
    fig = make_subplots(rows=1, cols=max(1, len(archs)), subplot_titles=archs)
    variants: list[str] = []
    for per_variant in per_arch.values():
        variants += [v for v in per_variant if v not in variants]
    for col, arch in enumerate(archs, start=1):
        for i, v in enumerate(variants):
            layers = per_arch[arch].get(v)
            if not layers:
                continue
            fig.add_bar(
                x=list(layers),
                y=[e / unit[1] for e in layers.values()],
                name=v,
                marker_color=palette(i),
                legendgroup=v,
                showlegend=col == 1,
                hovertemplate=f"layer %{{x}}: %{{y:.4~g}} {unit[0]}<extra>{v} on {arch}</extra>",
                row=1,
                col=col,
            )
    fig.update_layout(template="none", height=_HEIGHT, barmode="group", title=title)
    fig.update_xaxes(type="category", title_text="layer")
    fig.update_yaxes(title_text=f"energy per inference ({unit[0]})")
    return fig


def ratio_bars(ratios: Mapping[str, Mapping[str, Mapping[str, float | None]]], baseline: str, title: str):
    """Variant-to-baseline ratios (energy, latency, EDP) per architecture, with the line at 1
    (equal to the baseline). ``ratios[variant][arch] = {"energy": r, "latency": r, "EDP": r}``."""
    fig = base_figure(title=title, barmode="group")
    metrics: list[str] = []
    for per_arch in ratios.values():
        for r in per_arch.values():
            metrics += [m for m in r if m not in metrics]
    i = 0
    for variant, per_arch in ratios.items():
        for metric in metrics:
            xs = [a for a, r in per_arch.items() if r.get(metric) is not None]
            if not xs:
                continue
            fig.add_bar(
                x=xs,
                y=[per_arch[a][metric] for a in xs],
                name=f"{variant.upper()} {metric}",
                marker_color=palette(i),
                text=[ratio(per_arch[a][metric]) for a in xs],
                textposition="outside",
                hovertemplate=f"%{{x}}: {metric} %{{text}} the {baseline.upper()}'s<extra>%{{fullData.name}}</extra>",
            )
            i += 1
    fig.add_hline(
        y=1.0, line_dash="dot", annotation_text=f"= {baseline.upper()}", annotation_position="top left"
    )
    fig.update_xaxes(type="category", title_text="architecture")
    fig.update_yaxes(title_text=f"ratio to {baseline.upper()} (×, 1 = equal)")
    return fig


def accuracy_vs_energy(points: Sequence[Mapping], unit: tuple[str, float], title: str):
    """Accuracy (%) against energy per inference, one panel per architecture, one marker per
    point. ``points``: ``{"arch", "label", "accuracy" (fraction), "energy_pj", "group"}``;
    ``group`` (e.g. the run) picks the colour."""
    from plotly.subplots import make_subplots

    archs: list[str] = []
    groups: list[str] = []
    for p in points:
        archs += [p["arch"]] if p["arch"] not in archs else []
        groups += [p["group"]] if p["group"] not in groups else []
    fig = make_subplots(rows=1, cols=max(1, len(archs)), subplot_titles=archs)
    for col, arch in enumerate(archs, start=1):
        for i, g in enumerate(groups):
            pts = [p for p in points if p["arch"] == arch and p["group"] == g]
            if not pts:
                continue
            fig.add_scatter(
                x=[p["energy_pj"] / unit[1] for p in pts],
                y=[p["accuracy"] * 100 for p in pts],
                mode="markers+text",
                text=[p["label"] for p in pts],
                textposition="top center",
                name=g,
                legendgroup=g,
                showlegend=col == 1,
                marker={"size": 10, "color": palette(i)},
                hovertemplate=f"%{{text}}: %{{y:.2f}} %, %{{x:.4~g}} {unit[0]}<extra>{g} on {arch}</extra>",
                row=1,
                col=col,
            )
    fig.update_layout(template="none", height=_HEIGHT + 40, title=title)
    fig.update_xaxes(title_text=f"energy per inference ({unit[0]})")
    fig.update_yaxes(title_text="test accuracy (%)", row=1, col=1)
    return fig


def lines(
    curves: Mapping[str, Mapping],
    title: str,
    x_title: str,
    y_title: str,
    unit: str = "",
):
    """One line per curve, ``curves[name] = {"x", "y"}`` with an optional ``"dash": True``
    (a reference, e.g. a baseline) and ``"group"`` (curves of one group share a colour);
    ``unit`` is what the hover writes after a value."""
    fig = base_figure(title=title)
    colours: dict[str, str] = {}
    for name, c in curves.items():
        group = c.get("group", name)
        colour = colours.setdefault(group, palette(len(colours)))
        fig.add_scatter(
            x=list(c["x"]),
            y=list(c["y"]),
            mode="lines+markers",
            name=name,
            line={"color": colour, "dash": "dash" if c.get("dash") else "solid"},
            hovertemplate=f"{x_title} %{{x}}: %{{y:.4~g}} {unit}<extra>%{{fullData.name}}</extra>",
        )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def heatmap(
    z: Sequence[Sequence[float | None]],
    x: Sequence[str],
    y: Sequence[str],
    title: str,
    z_title: str,
    x_title: str = "",
    z_range: tuple[float, float] | None = None,
):
    """A grid of values ``z[row][column]``, rows ``y`` top to bottom, columns ``x``; None
    cells stay blank. ``z_range`` fixes the colour scale (e.g. 0 to 1 for R²)."""
    fig = base_figure(title=title)
    fig.add_heatmap(
        z=[list(r) for r in z],
        x=list(x),
        y=list(y),
        colorscale="Viridis",
        zmin=None if z_range is None else z_range[0],
        zmax=None if z_range is None else z_range[1],
        colorbar={"title": {"text": z_title}},
        hovertemplate=f"%{{y}}, {x_title} %{{x}}: {z_title} %{{z:.3f}}<extra></extra>",
    )
    fig.update_xaxes(type="category", title_text=x_title)
    fig.update_yaxes(type="category", autorange="reversed")
    return fig
