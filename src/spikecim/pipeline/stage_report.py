"""The ``report`` stage of ``spikecim run``: writes ``report.html`` and ``report.md``.

The run loop has written ``metrics.json`` before this stage runs; the report is built from
the files in the run folder, so ``spikecim report RUN_DIR`` gives the same page later. Its
files are written all or nothing, as ``spikecim report`` writes them
(:func:`spikecim.pipeline.folder.all_or_nothing`).
"""

from __future__ import annotations

from spikecim.pipeline import folder
from spikecim.pipeline.results import ReportResult
from spikecim.pipeline.stages import RunContext
from spikecim.report.render import _render, _write_html, _write_markdown


def report_stage(ctx: RunContext) -> ReportResult:
    """Write report.html and report.md with tables and plots (nothing when report.enabled is false)."""
    if not getattr(getattr(ctx.config, "report", None), "enabled", True):
        return ReportResult(html=None, markdown=None, plots=[])
    with folder.all_or_nothing("report"):
        rendered = _render(ctx.run_dir)
        html_path = _write_html(ctx.run_dir, rendered)
        md_path = _write_markdown(ctx.run_dir, rendered)
    plots_dir = ctx.run_dir / "plots"
    pngs = sorted(p.name for p in plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    return ReportResult(html=html_path.name, markdown=md_path.name, plots=pngs)
