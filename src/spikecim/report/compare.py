"""Several runs side by side: ``spikecim compare RUN_DIR...`` and the index of a ``runs/`` folder.

:func:`write_compare_page` puts every variant of every run in one table (accuracy, analog
accuracy, operations, energy and latency on each hardware model, energy ratio to the run's
baseline) and one set of charts (accuracy against energy on each hardware model, energy per
layer), and links each run's ``report.html``. :func:`write_index_page` does the same for every
run folder under a root (a folder holding ``metrics.json``) and links every design-space
study there (a folder holding ``dse.json``, see :mod:`spikecim.report.study`). A run folder
or a study whose files cannot be read is listed with the reason instead.

Everything is read from the run folders' ``metrics.json`` and ``config.yaml``; the page is
self-contained like a run's report (:mod:`spikecim.report.page`).
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from spikecim.dse import layout
from spikecim.errors import SpikecimError
from spikecim.readers import read_document, read_mapping, read_metrics
from spikecim.report.fmt import MISSING, count, energy, energy_unit, pct, pct_spread, ratio
from spikecim.report.page import page_html, replaceable, section_html, toc
from spikecim.report.sections import embed_chart, html_table
from spikecim.variants import ratio_key

__all__ = ["RunSummary", "find_runs", "load_run_summary", "write_compare_page", "write_index_page"]


@dataclass
class RunSummary:
    """What the comparison shows of one run folder (typed results by stage name)."""

    name: str
    path: Path
    config: dict
    results: dict = field(default_factory=dict)

    @property
    def variants(self) -> list[str]:
        names: list[str] = []
        for stage in ("evaluate", "train", "trace", "hardware"):
            r = self.results.get(stage)
            per = getattr(r, "variants", None) or {}
            names += [v for v in per if v not in names]
        return names

    def accuracy(self, variant: str) -> float | None:
        """The evaluation's test accuracy (the training's final one when evaluate did not run)."""
        ev = self.results.get("evaluate")
        if ev is not None and variant in ev.variants:
            return ev.variants[variant].accuracy
        tr = self.results.get("train")
        if tr is not None and variant in tr.variants:
            return tr.variants[variant].test_acc
        return None

    def hardware(self, variant: str) -> dict:
        hw = self.results.get("hardware")
        if hw is None or not hw.enabled:
            return {}
        return hw.variants.get(variant, {})


def load_run_summary(run_dir: str | Path) -> RunSummary:
    """The results of a run folder; a folder without ``metrics.json`` is an error."""
    from spikecim.pipeline.stages import read_results

    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise SpikecimError(f"compare: {run_dir} is not a run folder (no metrics.json)")
    metrics = read_metrics(path, "compare")
    config = (
        read_mapping(run_dir / "config.yaml", "compare", "of settings")
        if (run_dir / "config.yaml").is_file()
        else {}
    )
    name = str(config.get("name") or run_dir.name)
    return RunSummary(name=name, path=run_dir, config=config, results=read_results(metrics, source=str(path)))


def find_runs(root: str | Path) -> tuple[list[Path], list[Path]]:
    """Run folders (holding ``metrics.json``) and study folders (holding ``dse.json``) under
    ``root``, each sorted by path. The networks a study trained for its designs
    (``<study>/cache/<key>/``, :mod:`spikecim.dse.evaluate`) belong to the study, not to the
    runs: they are left out (:func:`spikecim.dse.layout.in_cache`)."""
    root = Path(root)
    if not root.is_dir():
        raise SpikecimError(f"compare: {root} is not a folder")
    studies = sorted(p.parent for p in root.rglob(layout.RESULTS))
    runs = sorted(p.parent for p in root.rglob("metrics.json") if not layout.in_cache(p.parent))
    return runs, studies


def write_compare_page(
    run_dirs: Sequence[str | Path], out_dir: str | Path, filename: str = "compare.html"
) -> Path:
    """``out_dir/filename``: every run's variants in one table and one set of charts."""
    if not run_dirs:
        raise SpikecimError("compare: give at least one run folder")
    out_dir = Path(out_dir)
    runs = _distinct([load_run_summary(d) for d in run_dirs], out_dir)
    path = _page_path(out_dir / filename)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = _body(runs, [], out_dir)
    path.write_text(
        page_html("spikecim: runs compared", "Runs compared", body, meta=_meta(runs)), encoding="utf-8"
    )
    return path


def write_index_page(root: str | Path, out_dir: str | Path | None = None) -> Path:
    """``index.html`` (in ``out_dir``, by default ``root``) over every run and study under ``root``."""
    root = Path(root)
    runs_dirs, studies = find_runs(root)
    if not runs_dirs and not studies:
        raise SpikecimError(f"compare: no run folder (metrics.json) or study (dse.json) under {root}")
    out_dir = Path(out_dir) if out_dir is not None else root
    readable, readable_studies, unreadable = [], [], []
    for d in runs_dirs:
        try:
            readable.append(load_run_summary(d))
        except SpikecimError as e:  # one broken run folder does not hide the others
            unreadable.append((d, str(e)))
    for s in studies:
        try:
            _check_results(s / layout.RESULTS)
            readable_studies.append(s)
        except SpikecimError as e:  # a dse.json cut short or damaged: said, not linked as a study
            unreadable.append((s, str(e)))
    runs = _distinct(readable, out_dir)
    path = _page_path(out_dir / "index.html")
    out_dir.mkdir(parents=True, exist_ok=True)
    body = _body(runs, readable_studies, out_dir, unreadable)
    title = f"spikecim runs: {root.resolve().name}"
    path.write_text(page_html(title, title, body, meta=_meta(runs)), encoding="utf-8")
    return path


def _check_results(path: Path) -> None:
    """A study's ``dse.json`` can be read: a JSON mapping (its page checks the fields); an
    empty file, a file cut short or another document is one line naming it."""
    data = read_document(path, "study")
    if data is None:
        raise SpikecimError(f"study: {path} is empty")
    if not isinstance(data, dict):
        raise SpikecimError(f"study: {path} must hold a mapping of study results")


def _distinct(runs: list[RunSummary], out_dir: Path) -> list[RunSummary]:
    """Each run folder once, named so that no two runs read alike: a name several runs share
    (ignoring case: ``Digits`` and ``digits`` read alike) gets each run's folder, relative to
    the page, beside it, e.g. ``digits (a/digits)`` and ``digits (b/digits)``."""
    by_folder: dict[Path, RunSummary] = {}
    for r in runs:
        by_folder.setdefault(r.path.resolve(), r)
    shared = Counter(r.name.casefold() for r in by_folder.values())
    return [
        replace(r, name=f"{r.name} ({_link(r.path, out_dir)})") if shared[r.name.casefold()] > 1 else r
        for r in by_folder.values()
    ]


def _page_path(path: Path) -> Path:
    """``path`` where a page may be written: a new file, or a page spikecim wrote (replaced).
    Any other file there is the user's and is never overwritten."""
    if path.parent.exists() and not path.parent.is_dir():
        raise SpikecimError(f"compare: --out {path.parent} is a file; give a folder")
    return replaceable(path, "compare", hint="choose another --out")


# ---- the page --------------------------------------------------------------------------------
def _meta(runs: list[RunSummary]) -> str:
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}"


def _link(target: Path, out_dir: Path) -> str:
    return Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()


def _body(
    runs: list[RunSummary], studies: list[Path], out_dir: Path, unreadable: Sequence[tuple[Path, str]] = ()
) -> list[str]:
    sections = [("runs", "Runs", _runs_table(runs, out_dir))]
    if unreadable:
        rows = [[_link(d, out_dir), reason] for d, reason in unreadable]
        table = html_table(["run or study folder", "why it is left out"], rows)
        sections.append(("unreadable", "Run and study folders that could not be read", table))
    if runs:
        sections.append(("variants", "Variants side by side", _variants_table(runs)))
        charts = _charts(runs)
        if charts:
            sections.append(("charts", "Accuracy, energy and per-layer cost", charts))
    if studies:
        sections.append(("studies", "Design-space studies", _studies_table(studies, out_dir)))
    return [toc([(a, t) for a, t, _ in sections])] + [section_html(a, t, f) for a, t, f in sections]


def _runs_table(runs: list[RunSummary], out_dir: Path) -> str:
    rows = []
    for r in runs:
        report = r.path / "report.html"
        link = (
            f'<a href="{html.escape(_link(report, out_dir))}">{html.escape(r.name)}</a>'
            if report.is_file()
            else html.escape(r.name)
        )
        model = (r.config.get("model") or {}).get("name", MISSING)
        data = (r.config.get("data") or {}).get("name", MISSING)
        epochs = (r.config.get("train") or {}).get("epochs", MISSING)
        rows.append(
            f"<tr><td>{link}</td><td>{html.escape(str(model))}</td><td>{html.escape(str(data))}</td>"
            f"<td>{html.escape(str(epochs))}</td><td>{html.escape(', '.join(r.variants))}</td>"
            f"<td>{html.escape(', '.join(r.results))}</td></tr>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("run (its report)", "model", "data set", "epochs", "variants", "stages")
    )
    return f'<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _archs(runs: list[RunSummary]) -> list[str]:
    archs: list[str] = []
    for r in runs:
        for v in r.variants:
            archs += [a for a in r.hardware(v) if a not in archs]
    return archs


def _variants_table(runs: list[RunSummary]) -> str:
    archs = _archs(runs)
    unit = energy_unit(c.energy_pj for r in runs for v in r.variants for c in r.hardware(v).values())[0]
    headers = [
        "run",
        "variant",
        "test accuracy",
        "analog accuracy",
        "dense MACs / sample",
        "effective ACs / sample",
    ]
    headers += [f"energy on {a} ({unit})" for a in archs]
    headers += [f"latency on {a} (µs)" for a in archs]
    headers += [f"energy ratio to baseline on {a}" for a in archs]
    rows = []
    for r in runs:
        analog = r.results.get("analog")
        trace = r.results.get("trace")
        hw = r.results.get("hardware")
        for v in r.variants:
            seeds = (
                analog.variants[v].analog
                if analog is not None and analog.enabled and v in analog.variants
                else None
            )
            t = trace.variants.get(v) if trace is not None else None
            cost = r.hardware(v)
            ratios = (
                hw.ratios.get(ratio_key(v, hw.baseline), {})
                if hw is not None and hw.enabled and hw.baseline
                else {}
            )
            row = [
                r.name,
                v,
                pct(r.accuracy(v)),
                pct_spread(seeds.mean, seeds.std, analog.n_seeds) if seeds is not None else MISSING,
                count(t.dense_macs) if t is not None else MISSING,
                count(t.effective_acs) if t is not None else MISSING,
            ]
            row += [energy(cost[a].energy_pj, unit) if a in cost else MISSING for a in archs]
            row += [_us(cost[a].latency_ns) if a in cost else MISSING for a in archs]
            if hw is not None and v == hw.baseline:
                row += ["1 (baseline)" if a in cost else MISSING for a in archs]
            else:
                row += [ratio(ratios[a].energy_pj) if a in ratios else MISSING for a in archs]
            rows.append(row)
    return html_table(headers, rows).replace("<table>", '<table id="variants">', 1)


def _charts(runs: list[RunSummary]) -> str:
    from spikecim.report import charts

    unit = energy_unit(c.energy_pj for r in runs for v in r.variants for c in r.hardware(v).values())
    points = [
        {"arch": a, "label": v.upper(), "accuracy": r.accuracy(v), "energy_pj": c.energy_pj, "group": r.name}
        for r in runs
        for v in r.variants
        for a, c in r.hardware(v).items()
        if r.accuracy(v) is not None and c.energy_pj is not None
    ]
    out = ""
    if points:
        fig = charts.accuracy_vs_energy(
            points, unit, "Test accuracy against energy per inference, per hardware model"
        )
        out += embed_chart(fig, None, "accuracy against energy", name="compare-accuracy-energy")
    per_arch: dict = {}
    for r in runs:
        for v in r.variants:
            for a, c in r.hardware(v).items():
                if c.energy_by_layer_pj and (c.latency_ns or 0) > 0:
                    per_arch.setdefault(a, {})[f"{r.name} / {v.upper()}"] = c.energy_by_layer_pj
    if per_arch:
        layer_unit = energy_unit(
            e for per in per_arch.values() for layers in per.values() for e in layers.values()
        )
        fig = charts.layer_energy(per_arch, layer_unit, "Energy per layer on each hardware model (linear)")
        out += embed_chart(fig, None, "energy per layer", name="compare-layers")
    return out


def _studies_table(studies: list[Path], out_dir: Path) -> str:
    rows = []
    for s in studies:
        page = s / "study.html"
        name = html.escape(s.name)
        link = f'<a href="{html.escape(_link(page, out_dir))}">{name}</a>' if page.is_file() else name
        rows.append(f"<tr><td>{link}</td><td>{html.escape(_link(s / 'dse.json', out_dir))}</td></tr>")
    return f"<table><thead><tr><th>study (its page)</th><th>results</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _us(latency_ns: float | None) -> str:
    return MISSING if not latency_ns else f"{latency_ns / 1e3:.4g}"
