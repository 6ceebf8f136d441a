"""Reports of a run: one self-contained ``report.html`` (and ``report.md``) with tables and plots.

``write_report(run_dir)`` reads ``metrics.json``, ``config.yaml`` and the traced workloads in
a run folder and renders every registered section. A package adds its part of the report
with :func:`register_section`; see ``docs/report.md``.

The names below are imported on first use, so ``spikecim.report.fmt`` and
``spikecim.report.stage_config`` stay light to import.
"""

from spikecim._lazy import lazy_exports

_EXPORTS = {
    "html_to_markdown": "render",
    "write_markdown": "render",
    "write_report": "render",
    "Section": "sections",
    "embed_chart": "sections",
    "embed_png": "sections",
    "html_table": "sections",
    "list_sections": "sections",
    "register_section": "sections",
}
__all__ = list(_EXPORTS)  # the names above, imported on first use

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
