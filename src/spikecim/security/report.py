"""The report's side-channel section: read from ``RUN_DIR/security/results.json``, written by
``spikecim security RUN_DIR`` (:func:`spikecim.security.analysis.analyse_run`); left out of
the report when the analysis has not been run."""

from __future__ import annotations

import json
from pathlib import Path

from spikecim.report import charts
from spikecim.report.fmt import pct
from spikecim.report.sections import embed_chart, embed_png, html_table, register_section

__all__ = ["security_section"]


@register_section("security", "Power side channel", order=60)
def security_section(metrics, run_dir: Path) -> str:
    path = Path(run_dir) / "security" / "results.json"
    if not path.exists():
        return ""
    results = json.loads(path.read_text())
    plots = Path(run_dir) / "plots"
    cfg = results["config"]
    parts = [
        (
            "<p>An attacker who measures only the accelerator's supply energy per crossbar read "
            f"({cfg['trace']['sampling']} sampling, {cfg['trace']['encoding']} inputs) reconstructs the "
            "victim's inputs with a learned inverse trained on their own data (and its GAN refinement); "
            "the mean image is the baseline. Threat model: docs/security.md.</p>"
        ),
        "<h3>Reconstruction against probe noise</h3>",
    ]
    rows = []
    for variant, entry in results["variants"].items():
        for r in entry["noise"]:
            rows.append(
                [
                    variant,
                    pct(r["noise"]),
                    f"{r['ssim_inverse']:.3f}",
                    f"{r['ssim_gan']:.3f}" if "ssim_gan" in r else "—",
                    f"{r['psnr_inverse']:.2f}",
                    f"{r['psnr_gan']:.2f}" if "psnr_gan" in r else "—",
                    pct(r.get("victim_accuracy_inverse")),
                    f"{r['ssim_mean_image']:.3f}",
                ]
            )
    headers = [
        "variant",
        "noise σ",
        "SSIM",
        "SSIM (GAN)",
        "PSNR dB",
        "PSNR dB (GAN)",
        "victim acc.",
        "SSIM mean image",
    ]
    parts.append(html_table(headers, rows))
    parts.append(
        embed_chart(
            _noise_chart(results), _png(plots, results, "noise"), "SSIM against noise", "security-noise"
        )
    )
    if (plots / results["plots"]["grid"]).exists():
        parts.append(embed_png(plots / results["plots"]["grid"], "reconstructions next to the originals"))
    parts.append(
        f"<h3>Countermeasures (probe noise {pct(cfg['countermeasure_noise'])}; overhead on the imc model)</h3>"
    )
    rows = []
    for variant, entry in results["variants"].items():
        for name, c in entry["countermeasures"].items():
            frac = c["overhead_fraction"]
            leak = max(b["probe_r2"] for b in c["leakage_first_layer"])
            rows.append(
                [
                    variant,
                    name,
                    f"{c['metrics']['ssim_inverse']:.3f}",
                    pct(c["metrics"].get("victim_accuracy_inverse")),
                    f"{leak:.3f}",
                    pct(frac["energy"]),
                    pct(frac["latency"]),
                    pct(frac["area"]),
                ]
            )
    headers = [
        "variant",
        "countermeasure",
        "SSIM",
        "victim acc.",
        "probe R² (layer 1)",
        "+energy",
        "+latency",
        "+area",
    ]
    parts.append(html_table(headers, rows))
    png = _png(plots, results, "countermeasures")
    parts.append(
        embed_chart(_countermeasure_chart(results), png, "countermeasures", "security-countermeasures")
    )
    parts.append("<h3>Leakage without an attacker (linear probe R² per layer and timestep)</h3>")
    png = _png(plots, results, "leakage")  # one PNG holds every variant: linked once
    for variant, entry in results["variants"].items():
        if not entry.get("leakage"):
            continue
        parts.append(
            embed_chart(_leakage_chart(variant, entry), png, "leakage map", f"security-leakage-{variant}")
        )
        png = None
    return "\n".join(parts)


def _png(plots: Path, results: dict, key: str) -> Path | None:
    """The static rendering ``report.md`` links in place of a chart, when it was written."""
    path = plots / results["plots"][key]
    return path if path.exists() else None


def _noise_chart(results: dict):
    """SSIM of the reconstructions against probe noise, per variant and attack, beside the
    mean image's."""
    curves = {}
    for variant, entry in results["variants"].items():
        rows = entry["noise"]
        x = [100 * r["noise"] for r in rows]
        for tag in ("inverse", "gan"):
            if f"ssim_{tag}" in rows[0]:
                y = [r[f"ssim_{tag}"] for r in rows]
                curves[f"{variant} {tag}"] = {"x": x, "y": y, "group": variant, "dash": tag == "gan"}
    first = next(iter(results["variants"].values()))["noise"]
    x = [100 * r["noise"] for r in first]
    curves["mean image"] = {"x": x, "y": [r["ssim_mean_image"] for r in first], "dash": True}
    return charts.lines(
        curves, "Reconstruction SSIM against probe noise", "probe noise σ (% of max signal)", "SSIM"
    )


def _countermeasure_chart(results: dict):
    """The attack's SSIM with no countermeasure and under each one, per variant."""
    series = {}
    for variant, entry in results["variants"].items():
        ssim = {"none": entry["noise"][0]["ssim_inverse"]}
        for name in results.get("countermeasure_names", entry["countermeasures"]):
            ssim[name] = entry["countermeasures"][name]["metrics"]["ssim_inverse"]
        series[variant] = ssim
    title = "Reconstruction SSIM under each countermeasure (lower: less leakage)"
    return charts.grouped_bars(series, title, "SSIM", "", x_title="countermeasure")


def _leakage_chart(variant: str, entry: dict):
    """Linear-probe R² per layer (rows) and timestep (columns)."""
    layers = list(entry["leakage"])
    z = [[b["probe_r2"] for b in entry["leakage"][name]] for name in layers]
    steps = [str(t) for t in range(max(len(r) for r in z))]
    title = f"{variant}: linear-probe R² of the input from each layer's trace"
    return charts.heatmap(z, steps, [f"layer {n}" for n in layers], title, "R²", "timestep", (0.0, 1.0))
