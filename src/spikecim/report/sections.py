"""Report sections: each stage contributes its part of ``report.html`` by registering one.

A section shows one stage's result: ``register_section(name, title, order, stage="analog")``
on ``fn(result, run_dir: Path) -> str``, where ``result`` is that stage's typed result (see
:mod:`spikecim.pipeline.results`) or None when the stage did not run. A section without a
stage gets every result: ``fn(metrics, run_dir)`` with ``metrics`` the typed results by stage
name and the run loop's ``timing_s``. ``fn`` returns an HTML fragment (it may write PNGs
under ``run_dir / "plots"`` and embed them with :func:`embed_png`, or embed an interactive
plotly figure with :func:`embed_chart`). Sections are rendered in
``order``; a section that returns ``""`` is left out.

Fragments should use plain tags (``h3``, ``p``, ``table`` via :func:`html_table`, ``img``
via :func:`embed_png`, charts via :func:`embed_chart`, ``pre``, ``ul``): the Markdown report
is derived from them (a chart appears there as its PNG, when it has one).

Orders used by spikecim itself: training 10, evaluation 20, workload 30, analog 40,
hardware 50, run time 90.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Section", "embed_chart", "embed_png", "html_table", "list_sections", "register_section"]

SectionFn = Callable[[Any, Path], str]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    order: int
    fn: SectionFn
    stage: str | None = None  # the stage whose result ``fn`` takes; None: all results


_SECTIONS: dict[str, Section] = {}


def register_section(
    name: str, title: str, order: int = 50, stage: str | None = None
) -> Callable[[SectionFn], SectionFn]:
    """Register ``fn(result, run_dir) -> html`` as the section ``name`` showing ``stage``'s
    result (``fn(metrics, run_dir)`` without a stage); re-registering replaces."""

    def deco(fn: SectionFn) -> SectionFn:
        _SECTIONS[name] = Section(name, title, order, fn, stage)
        return fn

    return deco


def list_sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: s.order)


def embed_png(path: str | Path, alt: str = "") -> str:
    """An ``<img>`` tag with the PNG inlined as base64 (the report stays one file).

    ``data-file`` keeps the file's place relative to the run folder (``plots/<name>``), which
    the Markdown report links to instead of inlining.
    """
    path = Path(path)
    data = base64.b64encode(path.read_bytes()).decode()
    rel = f"{path.parent.name}/{path.name}" if path.parent.name == "plots" else path.name
    return (
        f'<img alt="{html.escape(alt)}" data-file="{html.escape(rel)}" src="data:image/png;base64,{data}"/>'
    )


def embed_chart(fig: Any, png_path: str | Path | None = None, alt: str = "", name: str = "") -> str:
    """An interactive chart: the plotly figure's JSON inlined in the page, drawn by the one copy
    of plotly.js the page embeds (hover, zoom, legend toggles; nothing fetched).

    ``fig`` is a ``plotly.graph_objects.Figure`` or its dict (``{"data", "layout"}``).
    ``png_path``, a static rendering of the same data (matplotlib), is what ``report.md``
    links; without it the chart is left out of the Markdown. ``name`` (``data-chart``) lets
    tests and scripts find the chart.
    """
    spec = fig.to_plotly_json() if hasattr(fig, "to_plotly_json") else fig
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(spec, cls=PlotlyJSONEncoder, separators=(",", ":"))
    # As JSON escapes, "<", ">" and "&" read the same to the script but no "</script>" or tag
    # from a user's string (a run or layer name) can appear in the page's HTML.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    attrs = f' data-alt="{html.escape(alt)}"'
    if name:
        attrs += f' data-chart="{html.escape(name)}"'
    if png_path is not None:
        path = Path(png_path)
        rel = f"{path.parent.name}/{path.name}" if path.parent.name == "plots" else path.name
        attrs += f' data-file="{html.escape(rel)}"'
    return (
        f'<figure class="chart"{attrs}><div class="chart-plot" role="img" aria-label="{html.escape(alt)}"></div>'
        f'<script type="application/json" class="chart-spec">{text}</script></figure>'
    )


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A ``<table>`` with one header row; cells are converted with ``str`` and escaped.

    Format numbers before passing them (see :mod:`spikecim.report.fmt`).
    """
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
