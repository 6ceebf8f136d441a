"""Reports of a run: one self-contained ``report.html`` (and ``report.md``) with tables and plots.

``write_report(run_dir)`` reads ``metrics.json``, ``config.yaml`` and the traced workloads in
a run folder and renders every registered section. A package adds its part of the report
with :func:`register_section`; see ``docs/report.md``.
"""

from spikecim.report.render import html_to_markdown, write_markdown, write_report
from spikecim.report.sections import Section, embed_png, html_table, list_sections, register_section

__all__ = [
    "Section",
    "embed_png",
    "html_table",
    "html_to_markdown",
    "list_sections",
    "register_section",
    "write_markdown",
    "write_report",
]
