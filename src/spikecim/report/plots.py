"""Report figures: each function takes plain data, saves one PNG and returns its path.

They use matplotlib's non-interactive Agg backend and never read metrics files themselves,
so they can be called from notebooks with any numbers.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["EXTRA_PANELS", "extra_panels", "layer_ops", "save_figure", "spike_rates", "training_curves"]

_DPI = 100


# per-epoch figures a history may hold, each in a panel of its own: (key, title, axis label, curve)
EXTRA_PANELS = (
    ("train_spike_rate", "training spike rate", "spikes per neuron and step (%)", "spike rate"),  # spike_reg
    ("weight_sparsity", "weights pruned", "pruned weights (%)", "pruned"),  # the prune method
)


def extra_panels(histories: Mapping[str, Sequence[Mapping]]) -> list[tuple[str, str, str, str]]:
    """The :data:`EXTRA_PANELS` some record of ``histories`` holds."""
    return [p for p in EXTRA_PANELS if any(h.get(p[0]) is not None for hs in histories.values() for h in hs)]


def training_curves(histories: Mapping[str, Sequence[Mapping]], path: str | Path) -> Path:
    """Accuracy (train and test) and loss per epoch, one line per variant and split.

    ``histories`` maps a variant (``"snn"``, ``"ann"``) to its per-epoch records
    ``{"epoch", "loss", "train_acc", "test_acc"}``; a missing field is skipped. Records with
    ``train_spike_rate`` (a spike-rate penalty) or ``weight_sparsity`` (pruning) add a
    panel each (:data:`EXTRA_PANELS`), in percent.
    """
    extra = extra_panels(histories)
    fig, axes = plt.subplots(1, 2 + len(extra), figsize=(4.5 * (2 + len(extra)), 3.4))
    ax_acc, ax_loss = axes[0], axes[1]
    for i, (variant, history) in enumerate(histories.items()):
        label, color = variant.upper(), f"C{i}"
        for key, style in (("train_acc", "--"), ("test_acc", "-")):
            pts = [(h["epoch"], h[key] * 100) for h in history if h.get(key) is not None]
            if pts:
                ax_acc.plot(
                    *zip(*pts), style, color=color, marker="o", ms=3, label=f"{label} {key.split('_')[0]}"
                )
        pts = [(h["epoch"], h["loss"]) for h in history if h.get("loss") is not None]
        if pts:
            ax_loss.plot(*zip(*pts), color=color, marker="o", ms=3, label=label)
        for ax, (key, *_) in zip(axes[2:], extra, strict=True):
            pts = [(h["epoch"], h[key] * 100) for h in history if h.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), color=color, marker="o", ms=3, label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (dashed: train, solid: test)")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="training loss")
    for ax, (_, title, axis, _) in zip(axes[2:], extra, strict=True):
        ax.set(xlabel="epoch", ylabel=axis, title=title)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


def spike_rates(rates: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Grouped bars of the mean activity per layer, one bar colour per variant.

    ``rates`` maps a variant (``"snn"``, ``"ann"``) to ``{layer name: rate}``.
    """
    fig, ax = _grouped_bars({v.upper(): r for v, r in rates.items()}, log=False)
    ax.set(
        xlabel="layer",
        ylabel="activity / neuron / step",
        title="spike rate per layer (ANN: non-zero fraction)",
    )
    return save_figure(fig, path)


def layer_ops(series: Mapping[str, Mapping[str, float]], path: str | Path) -> Path:
    """Per layer: dense MACs against the accumulates the measured activity triggers (log scale).

    ``series`` maps a bar label (``"SNN dense MACs"``, ``"SNN effective ACs"``, ...) to
    ``{layer name: operations per sample over all steps}``.
    """
    fig, ax = _grouped_bars(series, log=True)
    ax.set(xlabel="layer", ylabel="operations / sample (all steps)", title="operations per layer")
    return save_figure(fig, path)


def _grouped_bars(series: Mapping[str, Mapping[str, float]], log: bool):
    """One bar group per layer (first-seen order), one bar per series."""
    layers: list[str] = []
    for per_layer in series.values():
        layers += [name for name in per_layer if name not in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(layers) + 4.0), 3.4))
    width = 0.8 / max(1, len(series))
    for i, (label, per_layer) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        xs = [j + offset for j, name in enumerate(layers) if name in per_layer]
        ax.bar(xs, [per_layer[name] for name in layers if name in per_layer], width, label=label)
    ax.set_xticks(range(len(layers)), layers)
    if log and any(v > 0 for per_layer in series.values() for v in per_layer.values()):
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig, ax


def save_figure(fig: Figure, path: str | Path, dpi: int = _DPI) -> Path:
    """Lay out ``fig``, write it as a PNG (parent folders made, no software stamp, so the
    same figure gives the same bytes), close it and return the path. Every spikecim plot
    is written through here, and so through :func:`spikecim.pipeline.folder.write_file`
    (in a run folder: never over a user's file, and recorded in its manifest)."""
    from spikecim.pipeline import folder

    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, dpi=dpi, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return folder.write_file(Path(path), png.getvalue())
