"""The ``hardware`` stage of ``spikecim run`` and its report section.

Costs every traced variant of the run (``config.hardware.variants``, by default all) on
every architecture of ``config.hardware.archs`` (by default ``naive``, ``imc`` and
``systolic`` side by side: the "estimated versus hardware" table), writes each
:class:`CostReport` to ``hardware/<variant>_<arch>.json`` and the plots to ``plots/hw_*.png``.

Result (:class:`~spikecim.pipeline.results.HardwareResult`, ``metrics.json["hardware"]``):
- ``variants[variant][arch]``: :meth:`CostReport.summary` (totals, EDP, EDAP, TOPS/W,
  TOPS/mm², energy by component and by layer, area by component)
- ``ratios["<variant>_over_<baseline>"][arch]``: ratios of ``energy_pj``, ``latency_ns`` and
  ``edp_pj_ns`` of every other variant to the run's ``baseline`` variant
- ``baseline``, ``mode`` (event or dense), ``archs``
- ``files``: ``reports[variant][arch]`` and ``plots``, paths relative to the run folder
"""

from __future__ import annotations

import html
from pathlib import Path

from spikecim.pipeline.results import HardwareResult
from spikecim.pipeline.stages import RunContext
from spikecim.report.fmt import energy, pct, ratio
from spikecim.report.sections import embed_chart, html_table, register_section
from spikecim.variants import ratio_key

__all__ = ["hardware_parts_section", "hardware_section", "hardware_stage"]


def _label(arch: str) -> str:
    return Path(arch).stem


def hardware_stage(ctx: RunContext) -> HardwareResult:
    """Energy, latency and area of the SNN and its ANN twin on each architecture."""
    from spikecim.hw.estimate import estimate
    from spikecim.report.plots_hardware import plot_components, plot_layers

    cfg = ctx.config.hardware
    if not cfg.enabled:
        return HardwareResult(enabled=False)
    out_dir = ctx.run_dir / "hardware"
    results: dict = {}
    reports: dict = {}
    paths: dict = {}
    for variant in cfg.variants or [v.name for v in ctx.config.variants]:
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
    baseline = ctx.config.baseline
    ratios = {}
    for variant, per_arch in results.items():
        if variant == baseline or baseline not in results:
            continue
        ratios[ratio_key(variant, baseline)] = {
            label: {
                k: (s[k] / b[k] if s[k] is not None and b[k] else None)
                for k in ("energy_pj", "latency_ns", "edp_pj_ns")
            }
            for label, s in per_arch.items()
            if (b := results[baseline].get(label)) is not None
        }
    plots = []
    if cfg.plots and reports:
        labelled = {f"{v}/{label}": r for (v, label), r in reports.items()}
        plots.append(plot_components(labelled, ctx.plots_dir / "hw_components.png"))
        hw_only = {k: r for k, r in labelled.items() if r.latency_ns > 0} or labelled
        plots.append(plot_layers(hw_only, ctx.plots_dir / "hw_layers.png"))
    return HardwareResult.model_validate(
        {
            "enabled": True,
            "baseline": baseline,
            "variants": results,
            "ratios": ratios,
            "mode": "dense" if cfg.dense else "event",
            "archs": [_label(a) for a in cfg.archs],
            "files": {"reports": paths, "plots": [str(Path(p).relative_to(ctx.run_dir)) for p in plots]},
        }
    )


def _num(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}"


@register_section("hardware", "Hardware cost: estimated versus hardware", order=60, stage="hardware")
def hardware_section(m: HardwareResult | None, run_dir: Path) -> str:
    if m is None or not m.enabled or not m.variants:
        return ""
    unit = m.energy_unit()[0]
    rows = "".join(
        f"<tr><td>{html.escape(v)}</td><td>{html.escape(arch)}</td><td>{html.escape(str(r.estimator))}</td>"
        f"<td>{energy(r.energy_pj, unit)}</td><td>{_num(r.latency_ns / 1e3 if r.latency_ns else None)}</td>"
        f"<td>{_num(r.area_um2 / 1e6 if r.area_um2 else None)}</td><td>{_num(r.tops_per_w)}</td>"
        f"<td>{html.escape(r.largest_share())}</td></tr>"
        for v, per_arch in m.variants.items()
        for arch, r in per_arch.items()
    )
    parts = [
        (
            f"<p>Mode: {html.escape(str(m.mode))}. The naive row is the operation-count estimate papers report; the other rows "
            "are hardware models that add memory traffic, membrane updates, neuron modules and periphery.</p>"
        ),
        (
            "<table><tr><th>variant</th><th>architecture</th><th>estimator</th>"
            f"<th>energy ({unit})</th>"
            f"<th>latency (µs)</th><th>area (mm²)</th><th>TOPS/W</th><th>largest energy share</th></tr>{rows}</table>"
        ),
    ]
    if m.ratios:
        ratio_rows = "".join(
            f"<tr><td>{html.escape(key.split('_over_')[0])}</td><td>{html.escape(a)}</td><td>{ratio(v.energy_pj)}</td>"
            f"<td>{ratio(v.latency_ns)}</td><td>{ratio(v.edp_pj_ns)}</td></tr>"
            for key, per_arch in m.ratios.items()
            for a, v in per_arch.items()
        )
        parts.append(
            f"<h3>Ratios to the baseline {html.escape(str(m.baseline))}</h3><table><tr><th>variant</th>"
            f"<th>architecture</th><th>energy</th><th>latency</th><th>EDP</th></tr>{ratio_rows}</table>"
        )
    parts += _charts(m, Path(run_dir))
    return "\n".join(parts)


@register_section("hardware_parts", "Where a transformer's cost goes", order=61, stage="hardware")
def hardware_parts_section(m: HardwareResult | None, run_dir: Path) -> str:
    """Energy, latency and area by part (projections, dynamic products and their writes,
    softmax/LN/GELU, MLP) of every costed variant with attention, and the wear of written cells."""
    from spikecim.hw.cost import CostReport

    if m is None or not m.enabled:
        return ""
    rows = []
    for variant, per_arch in m.files.reports.items():
        for arch, rel in per_arch.items():
            path = Path(run_dir) / rel
            if not path.exists():
                continue
            report = CostReport.load(path)
            if not any(r.kind in ("matmul", "softmax", "layernorm", "gelu") for r in report.layers):
                continue
            parts = report.by_part()
            totals = {k: sum(v[k] for v in parts.values()) for k in ("energy_pj", "latency_ns", "area_um2")}
            life = report.extras.get("lifetime_s")
            for part, v in parts.items():
                rows.append(
                    (
                        variant,
                        arch,
                        part,
                        *(
                            pct(v[k] / totals[k]) if totals[k] else "0"
                            for k in ("energy_pj", "latency_ns", "area_um2")
                        ),
                        ""
                        if part != "writes"
                        else ("unlimited" if life is None else f"{life / 86400:.3g} days"),
                    )
                )
    if not rows:
        return ""
    return (
        "<p>Shares of each variant's energy, latency and area by part of the transformer; the write "
        "energy of the operands written into crossbars at every inference (K, V) is its own part, its "
        "latency counted with the products. Lifetime: the table's write endurance over the writes per "
        "cell per inference at its inference rate.</p>"
        + html_table(
            ["variant", "architecture", "part", "energy", "latency", "area", "written-cell lifetime"], rows
        )
    )


def _provenance(m: HardwareResult) -> str:
    """Which estimator and table produced each architecture's numbers, and the modes."""
    seen: dict[str, str] = {}
    for per_arch in m.variants.values():
        for arch, r in per_arch.items():
            seen.setdefault(arch, str(r.estimator))
    tables = ", ".join(f"{est} estimator on table {arch}" for arch, est in seen.items())
    return f"{tables}; {m.mode} mode; latency: layers in sequence"


def _charts(m: HardwareResult, run_dir: Path) -> list[str]:
    """The interactive figures: component shares, per-layer energy, ratios to the baseline
    (each with its PNG from ``files.plots`` for report.md, when it was written)."""
    from spikecim.report import charts

    pngs = {Path(p).stem: run_dir / p for p in m.files.plots if (run_dir / p).exists()}
    unit = m.energy_unit()
    source = _provenance(m)
    bars = {
        f"{arch} / {v.upper()}": r.energy_by_component_pj
        for arch in m.archs or [a for per in m.variants.values() for a in per]
        for v, per_arch in m.variants.items()
        if (r := per_arch.get(arch)) is not None and r.energy_by_component_pj
    }
    out = []
    if bars:
        fig = charts.component_shares(
            bars,
            unit,
            f"Energy per inference by component (share of the total)<br><sub>{html.escape(source)}</sub>",
        )
        out.append(
            embed_chart(fig, pngs.get("hw_components"), "energy shares by component", name="hw-components")
        )
    per_arch: dict = {}
    for v, archs in m.variants.items():
        for arch, r in archs.items():
            if (
                r.energy_by_layer_pj and (r.latency_ns or 0) > 0
            ):  # hardware models (the naive estimate has no layers' latency)
                per_arch.setdefault(arch, {})[v.upper()] = r.energy_by_layer_pj
    if per_arch:
        fig = charts.layer_energy(
            per_arch,
            unit,
            f"Energy per layer (linear, one scale per architecture)<br><sub>{html.escape(source)}</sub>",
        )
        out.append(embed_chart(fig, pngs.get("hw_layers"), "energy per layer", name="hw-layers"))
    if m.ratios and m.baseline:
        ratios = {
            key.split("_over_")[0]: {
                a: {"energy": r.energy_pj, "latency": r.latency_ns, "EDP": r.edp_pj_ns}
                for a, r in per.items()
            }
            for key, per in m.ratios.items()
        }
        fig = charts.ratio_bars(
            ratios,
            m.baseline,
            f"Ratios to the baseline {m.baseline.upper()}<br><sub>{html.escape(source)}</sub>",
        )
        out.append(embed_chart(fig, None, f"ratios to {m.baseline}", name="hw-ratios"))
    return out
