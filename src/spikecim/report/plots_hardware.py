"""Plots of CostReports (matplotlib, Agg): 100 % stacked energy shares by component and energy per layer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["component_figure", "plot_components", "plot_layers"]


_DPI = 110


def _plt():
    """pyplot with the Agg backend, imported on first plot (importing the module stays light)."""
    from spikecim.report.plots import plt

    return plt


def plot_components(
    reports: dict, path: str | Path, title: str = "Energy per inference by component"
) -> Path:
    """One 100 % stacked bar per report (``{label: CostReport}``): each component's share of
    that report's energy, with the total energy written above the bar.

    Shares, not energies on a log axis: stacked on a log axis the bottom component looks
    dominant whatever its share.
    """
    from spikecim.report.plots import save_figure

    return save_figure(component_figure(reports, title), path, dpi=_DPI)


def component_figure(reports: dict, title: str = "Energy per inference by component"):
    """The figure :func:`plot_components` saves (one bar patch per report and component)."""
    from spikecim.report.fmt import energy_unit

    plt = _plt()
    labels = list(reports)
    comps: list[str] = []
    for r in reports.values():
        comps += [c for c in r.energy_by_component_pj if c not in comps]
    totals = [sum(reports[k].energy_by_component_pj.values()) for k in labels]
    unit, per_unit = energy_unit(totals)
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(labels) + 3), 4.2))
    bottom = [0.0] * len(labels)
    cmap = plt.get_cmap("tab20")
    for i, c in enumerate(comps):
        vals = [
            reports[k].energy_by_component_pj.get(c, 0.0) / t * 100 if t > 0 else 0.0
            for k, t in zip(labels, totals, strict=True)
        ]
        ax.bar(labels, vals, bottom=bottom, label=c, color=cmap(i % 20))
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    for x, t in enumerate(totals):
        ax.text(x, 101, f"{t / per_unit:.4g} {unit}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, 110)
    ax.set_ylabel("share of energy per inference (%)")
    ax.set_title(f"{title} (total above each bar)", fontsize=10)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7, ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def plot_layers(reports: dict, path: str | Path, title: str = "Energy per layer") -> Path:
    """Per-layer energy on a linear axis, one panel per architecture (each its own scale), one
    bar colour per variant. ``reports`` maps ``"variant/arch"`` to a CostReport."""
    from spikecim.report.fmt import energy_unit

    plt = _plt()
    panels: dict[str, dict[str, object]] = {}
    for label, r in reports.items():
        variant, _, arch = label.partition("/")
        panels.setdefault(arch or label, {})[variant] = r
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1, 3.8), squeeze=False)
    for ax, (arch, per_variant) in zip(axes[0], panels.items(), strict=True):
        unit, per_unit = energy_unit(
            layer.total_energy_pj for r in per_variant.values() for layer in r.layers
        )
        width = 0.8 / max(1, len(per_variant))
        for i, (variant, r) in enumerate(per_variant.items()):
            xs = [j + (i - (len(per_variant) - 1) / 2) * width for j in range(len(r.layers))]
            ax.bar(
                xs,
                [layer.total_energy_pj / per_unit for layer in r.layers],
                width,
                label=variant.upper(),
                color=f"C{i}",
            )
            ax.set_xticks(range(len(r.layers)), [layer.name for layer in r.layers], rotation=45)
        ax.set_title(arch, fontsize=9)
        ax.set_xlabel("layer")
        ax.set_ylabel(f"energy per inference ({unit})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (linear, one scale per architecture)", fontsize=10)
    from spikecim.report.plots import save_figure

    return save_figure(fig, path, dpi=_DPI)
