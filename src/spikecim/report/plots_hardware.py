"""Plots of CostReports (matplotlib, Agg): stacked component bars and per-layer energy."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_components", "plot_layers"]


_DPI = 110


def _plt():
    """pyplot with the Agg backend, imported on first plot (importing the module stays light)."""
    from spikecim.report.plots import plt

    return plt


def plot_components(
    reports: dict, path: str | Path, title: str = "Energy per inference by component"
) -> Path:
    """One stacked bar per report (``{label: CostReport}``), energy in µJ split by component."""
    plt = _plt()
    labels = list(reports)
    comps: list[str] = []
    for r in reports.values():
        comps += [c for c in r.energy_by_component_pj if c not in comps]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(labels) + 3), 4))
    bottom = [0.0] * len(labels)
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(comps):
        vals = [reports[k].energy_by_component_pj.get(c, 0.0) / 1e6 for k in labels]
        ax.bar(labels, vals, bottom=bottom, label=c, color=cmap(i % 20))
        bottom = [b + v for b, v in zip(bottom, vals)]
    positive = [b for b in bottom if b > 0]
    log = bool(positive) and max(positive) / min(positive) > 20
    ax.set_yscale("log" if log else "linear")
    ax.set_ylabel("energy (µJ, log scale)" if log else "energy (µJ)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    from spikecim.report.plots import save_figure

    return save_figure(fig, path, dpi=_DPI)


def plot_layers(reports: dict, path: str | Path, title: str = "Energy per layer") -> Path:
    """Per-layer energy (µJ, log scale), one line per report."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, r in reports.items():
        ax.plot(
            [layer.name for layer in r.layers],
            [max(layer.total_energy_pj, 1e-3) / 1e6 for layer in r.layers],
            marker="o",
            label=label,
        )
    ax.set_yscale("log")
    ax.set_ylabel("energy (µJ)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=7)
    from spikecim.report.plots import save_figure

    return save_figure(fig, path, dpi=_DPI)
