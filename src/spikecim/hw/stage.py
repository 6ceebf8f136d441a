"""The ``hardware`` stage of ``spikecim run`` and its report section.

Costs every traced variant (the SNN and its ANN twin) on every architecture of
``config.hardware.archs`` (by default ``naive``, ``imc`` and ``systolic`` side by side:
the "estimated versus hardware" table), writes each :class:`CostReport` to
``hardware/<variant>_<arch>.json`` and the plots to ``plots/hw_*.png``.

Metrics (``metrics.json["hardware"]``):
- ``snn[arch]``, ``ann[arch]``: :meth:`CostReport.summary` (totals, EDP, EDAP, TOPS/W,
  TOPS/mm², energy by component and by layer, area by component)
- ``snn_over_ann[arch]``: SNN / ANN ratios of ``energy_pj``, ``latency_ns`` and ``edp_pj_ns``
- ``mode`` (event or dense), ``archs``
- ``files``: ``reports[variant][arch]`` and ``plots``, paths relative to the run folder
"""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.stages import register_stage
from spikecim.report.fmt import energy, energy_unit, pct
from spikecim.report.sections import embed_png, register_section

__all__ = ["hardware_stage"]


def _label(arch: str) -> str:
    return Path(arch).stem


@register_stage("hardware", requires=("trace",), description="energy, latency and area on hardware models")
def hardware_stage(ctx) -> dict:
    """Energy, latency and area of the SNN and its ANN twin on each architecture."""
    from spikecim.hw.estimate import estimate
    from spikecim.hw.plots import plot_components, plot_layers

    cfg = ctx.config.hardware
    if not cfg.enabled:
        return {"enabled": False}
    out_dir = ctx.run_dir / "hardware"
    results: dict = {}
    reports: dict = {}
    paths: dict = {}
    for variant in cfg.variants:
        wl = ctx.workloads.get(variant)
        if wl is None:
            continue
        for arch in cfg.archs:
            r = estimate(wl, arch, dense=cfg.dense)
            label = _label(arch)
            reports[(variant, label)] = r
            results.setdefault(variant, {})[label] = r.summary()
            p = r.save(out_dir / f"{variant}_{label}.json")
            paths.setdefault(variant, {})[label] = str(p.relative_to(ctx.run_dir))
    ratios = {}
    if "snn" in results and "ann" in results:
        for label in results["snn"]:
            s, a = results["snn"][label], results["ann"].get(label)
            if a is None:
                continue
            ratios[label] = {
                k: (s[k] / a[k] if s[k] is not None and a[k] else None)
                for k in ("energy_pj", "latency_ns", "edp_pj_ns")
            }
    plots = []
    if cfg.plots and reports:
        labelled = {f"{v}/{label}": r for (v, label), r in reports.items()}
        plots.append(plot_components(labelled, ctx.plots_dir / "hw_components.png"))
        hw_only = {k: r for k, r in labelled.items() if r.latency_ns > 0} or labelled
        plots.append(plot_layers(hw_only, ctx.plots_dir / "hw_layers.png"))
    return {
        **results,
        "snn_over_ann": ratios,
        "mode": "dense" if cfg.dense else "event",
        "archs": [_label(a) for a in cfg.archs],
        "files": {"reports": paths, "plots": [str(Path(p).relative_to(ctx.run_dir)) for p in plots]},
    }


def _top(by_component: dict) -> str:
    """The component with the largest energy and its share, e.g. ``adc 41 %``."""
    total = sum(by_component.values())
    if not total:
        return ""
    name, value = max(by_component.items(), key=lambda kv: kv[1])
    return f"{name} {pct(value / total)}"


def _num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


@register_section("hardware", "Hardware cost: estimated versus hardware", order=60)
def hardware_section(metrics: dict, run_dir: Path) -> str:
    m = metrics.get("hardware")
    variants = [v for v in ("snn", "ann") if m and isinstance(m.get(v), dict)]
    if not variants:
        return ""
    unit = energy_unit(r["energy_pj"] for v in variants for r in m[v].values())[0]
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td>{html.escape(arch)}</td><td>{html.escape(str(r['estimator']))}</td>"
        f"<td>{energy(r['energy_pj'], unit)}</td><td>{_num(r['latency_ns'] / 1e3 if r['latency_ns'] else None)}</td>"
        f"<td>{_num(r['area_um2'] / 1e6 if r['area_um2'] else None)}</td><td>{_num(r['tops_per_w'])}</td>"
        f"<td>{html.escape(_top(r['energy_by_component_pj']))}</td></tr>"
        for v in variants
        for arch, r in m[v].items()
    )
    parts = [
        (
            f"<p>Mode: {html.escape(str(m['mode']))}. The naive row is the operation-count estimate papers report; the other rows "
            "are hardware models that add memory traffic, membrane updates, neuron modules and periphery.</p>"
        ),
        (
            "<table><tr><th>variant</th><th>architecture</th><th>estimator</th>"
            f"<th>energy ({unit})</th>"
            f"<th>latency (µs)</th><th>area (mm²)</th><th>TOPS/W</th><th>largest energy share</th></tr>{rows}</table>"
        ),
    ]
    if m.get("snn_over_ann"):
        ratio_rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{_num(v['energy_pj'])}</td>"
            f"<td>{_num(v['latency_ns'])}</td><td>{_num(v['edp_pj_ns'])}</td></tr>"
            for a, v in m["snn_over_ann"].items()
        )
        parts.append(
            "<h3>SNN / ANN</h3><table><tr><th>architecture</th><th>energy</th><th>latency</th>"
            f"<th>EDP</th></tr>{ratio_rows}</table>"
        )
    for p in m.get("files", {}).get("plots", []):
        path = Path(run_dir) / p
        if path.exists():
            parts.append(embed_png(path, alt=path.stem))
    return "\n".join(parts)
