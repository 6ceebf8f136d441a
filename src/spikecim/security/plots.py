"""Figures of the side-channel analysis: metrics against noise, reconstructions, leakage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from spikecim.report.plots import save_figure

__all__ = ["FILES", "write_all"]

FILES = {  # the figures' file names under the run's plots/, by kind
    "noise": "security_noise.png",
    "grid": "security_grid.png",
    "leakage": "security_leakage.png",
    "countermeasures": "security_countermeasures.png",
}


def write_all(results: dict, grids: dict, originals: torch.Tensor, plots_dir: Path) -> None:
    """Write every figure of :data:`FILES` under ``plots_dir``."""
    noise_curves(results, plots_dir / FILES["noise"])
    reconstruction_grid(grids, originals, plots_dir / FILES["grid"])
    leakage_maps(results, plots_dir / FILES["leakage"])
    countermeasure_bars(results, plots_dir / FILES["countermeasures"])


def noise_curves(results: dict, path: Path) -> Path:
    """SSIM, PSNR and the victim's accuracy on the reconstructions against probe noise."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    keys = (
        ("ssim", "SSIM"),
        ("psnr", "PSNR (dB)"),
        ("victim_accuracy", "victim accuracy on reconstructions"),
    )
    for ax, (key, label) in zip(axes, keys, strict=True):
        for variant, entry in results["variants"].items():
            rows = entry["noise"]
            x = [100 * r["noise"] for r in rows]
            for tag, style in (("inverse", "-o"), ("gan", "--s")):
                if f"{key}_{tag}" in rows[0]:
                    ax.plot(x, [r[f"{key}_{tag}"] for r in rows], style, label=f"{variant} {tag}")
        first = next(iter(results["variants"].values()))["noise"]
        ax.plot(x, [r[f"{key}_mean_image"] for r in first], ":", color="grey", label="mean image")
        ax.set_xlabel("probe noise σ (% of max signal)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def reconstruction_grid(grids: dict, originals: torch.Tensor, path: Path) -> Path:
    """Originals in the top row, then one row per variant and noise level."""
    rows = [("original", originals)] + [
        (f"{variant} σ={100 * level:g}%", images)
        for variant, by_level in grids.items()
        for level, images in by_level.items()
    ]
    n = originals.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 0.95), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(images[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return save_figure(fig, path)


def leakage_maps(results: dict, path: Path) -> Path:
    """Linear-probe R² per layer (rows) and timestep (columns), one panel per variant, the value
    written in each cell (colour scale 0 to 1)."""
    variants = list(results["variants"].items())
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3), squeeze=False)
    for ax, (variant, entry) in zip(axes[0], variants, strict=True):
        layers = list(entry["leakage"])
        grid = np.array([[b["probe_r2"] for b in entry["leakage"][name]] for name in layers])
        ax.imshow(grid, vmin=0, vmax=1, cmap="magma", aspect="auto")
        ax.set_yticks(range(len(layers)), layers)
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xlabel("timestep")
        ax.set_ylabel("layer")
        ax.set_title(f"{variant}: probe R²", fontsize=9)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(
                j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.5 else "black"
            )
    return save_figure(fig, path)


def countermeasure_bars(results: dict, path: Path) -> Path:
    """The attack's SSIM under each countermeasure (bars) and its energy overhead (labels)."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    variants = list(results["variants"].items())
    names = results["countermeasure_names"]
    width = 0.8 / max(len(variants), 1)
    for k, (variant, entry) in enumerate(variants):
        base = entry["noise"][0]["ssim_inverse"]
        vals = [base] + [entry["countermeasures"][n]["metrics"]["ssim_inverse"] for n in names]
        xs = np.arange(len(vals)) + k * width
        ax.bar(xs, vals, width, label=variant)
        for x, n in zip(xs[1:], names, strict=True):
            frac = entry["countermeasures"][n]["overhead_fraction"]["energy"]
            if frac is not None:
                ax.text(x, 0.02, f"+{100 * frac:.1f}% E", rotation=90, fontsize=6, ha="center", va="bottom")
    mean_ssim = variants[0][1]["noise"][0]["ssim_mean_image"]
    ax.axhline(mean_ssim, color="grey", linestyle=":", label="mean image")
    ax.set_xticks(np.arange(len(names) + 1) + width * (len(variants) - 1) / 2, ["none", *names], fontsize=8)
    ax.set_ylabel("SSIM of the reconstruction")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
