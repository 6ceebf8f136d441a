"""The HTML shell every spikecim page shares: a run's ``report.html``, ``spikecim compare``'s
pages and a design-space study's page.

A page is one self-contained file: inline CSS with a light and a dark theme (following the
system's ``prefers-color-scheme``), and, when the page holds a chart (:func:`embed_chart
<spikecim.report.sections.embed_chart>`), the vendored plotly.js bundle inlined once and a
small script that draws every chart from its inlined JSON. A table whose header is clicked
sorts by that column (numbers by value, units and ``%`` ignored). Nothing is fetched when the
page opens: no font, script, image or style comes from outside the file.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import spikecim

__all__ = ["GENERATOR", "PLOTLY_JS", "page_html", "plotly_js", "replaceable", "section_html", "toc"]

# In the head of every page spikecim writes (``page_html``): how a page is told from the user's.
GENERATOR = b'<meta name="generator" content="spikecim '

# The vendored plotly.js bundle (see vendor/README.md): version and file.
PLOTLY_JS = Path(__file__).parent / "vendor" / "plotly-cartesian.min.js"
PLOTLY_JS_VERSION = "4.1.1"

CSS = """
:root { color-scheme: light dark; --fg: #1d1d1f; --muted: #555; --bg: #ffffff; --line: #cccccc;
        --head: #f2f2f2; --code: #f7f7f7; --accent: #0b63c5; --error: #b00020; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e6e6; --muted: #a8a8a8; --bg: #16171a; --line: #444; --head: #25272b;
          --code: #202226; --accent: #6cb4ff; --error: #ff6b81; }
}
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; color: var(--fg); background: var(--bg); line-height: 1.45; }
a { color: var(--accent); }
h1 { margin-bottom: 0.2em; }
h2 { display: inline; font-size: 1.35em; }
section { margin-top: 1.4em; border-bottom: 1px solid var(--line); padding-bottom: 0.6em; }
summary { cursor: pointer; padding: 0.2em 0; }
.meta { color: var(--muted); margin-top: 0; }
.headline { font-size: 1.05em; border-left: 4px solid var(--accent); padding: 0.3em 0.8em; }
nav.toc ol { columns: 2; margin: 0.4em 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid var(--line); padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: var(--head); cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
img { display: block; max-width: 100%; margin: 0.8em 0; background: #fff; }
figure.chart { margin: 0.8em 0; }
.chart-plot { width: 100%; min-height: 360px; }
pre, code { background: var(--code); }
pre { padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.error { color: var(--error); }
"""

# Draws every chart from its JSON, sorts tables, redraws a chart when its section opens.
_SCRIPT = """
(function () {
  "use strict";
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var fg = dark ? "#e6e6e6" : "#1d1d1f", grid = dark ? "#3a3a3a" : "#e2e2e2";
  function draw(fig) {
    var spec = JSON.parse(fig.querySelector("script.chart-spec").textContent);
    var layout = spec.layout || {};
    layout.paper_bgcolor = "rgba(0,0,0,0)";
    layout.plot_bgcolor = "rgba(0,0,0,0)";
    layout.font = Object.assign({color: fg}, layout.font || {});
    Object.keys(layout).forEach(function (k) {
      if (/^[xy]axis\\d*$/.test(k)) {
        layout[k] = Object.assign({gridcolor: grid, zerolinecolor: grid, linecolor: grid}, layout[k]);
      }
    });
    if (!layout.xaxis) layout.xaxis = {gridcolor: grid};
    if (!layout.yaxis) layout.yaxis = {gridcolor: grid};
    Plotly.newPlot(fig.querySelector(".chart-plot"), spec.data || [], layout,
                   {responsive: true, displaylogo: false});
  }
  function cellValue(row, i) {
    var cell = row.cells[i];
    var text = cell ? cell.textContent.trim() : "";
    var num = parseFloat(text.replace(/[,\\s]/g, "").replace(/^[^0-9+\\-.]+/, ""));
    return isNaN(num) ? {text: text.toLowerCase()} : {num: num};
  }
  function sortable(table) {
    var head = table.rows[0];
    if (!head || !head.cells.length || head.cells[0].tagName !== "TH") return;
    Array.prototype.forEach.call(head.cells, function (th, i) {
      th.title = "sort by this column";
      th.addEventListener("click", function () {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(head.cells, function (c) { c.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(table.rows, 1);
        if (!rows.length) return;
        var body = rows[0].parentNode;
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i), d;
          if (x.num !== undefined && y.num !== undefined) d = x.num - y.num;
          else if (x.num !== undefined) d = -1;
          else if (y.num !== undefined) d = 1;
          else d = x.text < y.text ? -1 : x.text > y.text ? 1 : 0;
          return up ? d : -d;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  document.querySelectorAll("table").forEach(sortable);
  if (window.Plotly) {
    document.querySelectorAll("figure.chart").forEach(draw);
    document.querySelectorAll("details").forEach(function (d) {
      d.addEventListener("toggle", function () {
        if (d.open) d.querySelectorAll(".chart-plot").forEach(function (p) { Plotly.Plots.resize(p); });
      });
    });
  }
})();
"""


def replaceable(path: Path, command: str, marker: bytes = GENERATOR, hint: str = "move it away") -> Path:
    """``path`` where ``command`` may write a file: a new one, or one spikecim wrote (``marker``
    in its first 4 kB), which is replaced. Any other file there is the user's and is never
    overwritten: a one-line error naming ``command`` and ending with ``hint``
    (:func:`spikecim.readers.replaceable`)."""
    from spikecim.readers import replaceable as own_file

    def ours(p: Path) -> bool:
        with p.open("rb") as f:
            return marker in f.read(4096)

    return own_file(
        path,
        ours,
        command,
        f"is a folder; {hint}",
        f"was not written by spikecim, so it is not replaced; {hint}",
    )


@cache
def plotly_js() -> str:
    """The vendored plotly.js bundle, with ``</script`` made safe for an inline script."""
    return PLOTLY_JS.read_text(encoding="utf-8").replace("</script", "<\\/script")


def toc(links: Sequence[tuple[str, str]]) -> str:
    """A numbered table of contents of ``(anchor, title)`` links."""
    if not links:
        return ""
    items = "".join(f'<li><a href="#{html.escape(a)}">{html.escape(t)}</a></li>' for a, t in links)
    return f'<nav class="toc"><strong>Contents</strong><ol>{items}</ol></nav>'


def section_html(anchor: str, title: str, fragment: str, open_: bool = True) -> str:
    """A collapsible ``<section>``: its title is the summary of a ``<details>`` block."""
    return (
        f'<section id="{html.escape(anchor)}"><details{" open" if open_ else ""}>'
        f"<summary><h2>{html.escape(title)}</h2></summary>\n{fragment}\n</details></section>"
    )


def page_html(title: str, heading: str, body: Sequence[str], meta: str = "") -> str:
    """A whole page: ``heading`` as its ``h1``, ``meta`` (HTML) under it, then ``body``.

    plotly.js is inlined once, only when a fragment of ``body`` holds a chart.
    """
    charts = any('class="chart"' in part for part in body)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f'{GENERATOR.decode()}{html.escape(spikecim.__version__)}"/>',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
    ]
    if charts:
        parts.append(f'<script id="plotly-js" data-version="{PLOTLY_JS_VERSION}">{plotly_js()}</script>')
    parts += ["</head><body>", f"<h1>{html.escape(heading)}</h1>"]
    if meta:
        parts.append(f'<p class="meta">{meta}</p>')
    parts += list(body)
    parts.append(f"<script>{_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
