"""The report's side-channel section: read from ``RUN_DIR/security/results.json``, written by
``spikecim security RUN_DIR`` (:func:`spikecim.security.analysis.analyse_run`); left out of
the report when the analysis has not been run."""

from __future__ import annotations

import json
from pathlib import Path

from spikecim.report.fmt import pct
from spikecim.report.sections import embed_png, html_table, register_section

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
    for key, alt in (("noise", "metrics against noise"), ("grid", "reconstructions next to the originals")):
        if (plots / results["plots"][key]).exists():
            parts.append(embed_png(plots / results["plots"][key], alt))
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
    if (plots / results["plots"]["countermeasures"]).exists():
        parts.append(embed_png(plots / results["plots"]["countermeasures"], "countermeasures"))
    parts.append("<h3>Leakage without an attacker (linear probe R² per layer and timestep)</h3>")
    if (plots / results["plots"]["leakage"]).exists():
        parts.append(embed_png(plots / results["plots"]["leakage"], "leakage map"))
    return "\n".join(parts)
