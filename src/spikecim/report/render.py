"""Build ``report.html`` (and ``report.md``) for a run folder.

The page is one self-contained file (:mod:`spikecim.report.page`): inline CSS, interactive
charts drawn by the one inlined copy of plotly.js, PNGs inlined as base64, no external
resources. It holds the run name, the summary (the console's headline table and the
"estimated vs hardware" sentence), a table of contents, a summary of ``config.yaml``, then
every registered section (:mod:`spikecim.report.sections`) in order, each collapsible,
leaving out the empty ones. The Markdown report holds the same text and tables and links
the PNGs under ``plots/``.

A report writes into a run folder all or nothing
(:func:`spikecim.pipeline.folder.all_or_nothing`): the page and the PNGs its sections draw
are held until it is rendered, then written only if none of them would replace a file that
is not spikecim's as the folder's manifest records it. A ``config.yaml`` changed since
spikecim wrote it is refused: it would describe another run.
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import yaml

import spikecim
from spikecim.errors import SpikecimError, one_line
from spikecim.pipeline import folder
from spikecim.readers import read_mapping, read_metrics
from spikecim.report.page import page_html, replaceable, section_html, toc
from spikecim.report.sections import Section, html_table, list_sections
from spikecim.report.summary import summary_html
from spikecim.variants import resolve_variants

__all__ = ["CONFIG_SUMMARY_KEYS", "html_to_markdown", "md_escape", "write_markdown", "write_report"]

# Config fields shown in the summary table (dotted paths into config.yaml); the full file
# follows in a collapsed block.
CONFIG_SUMMARY_KEYS = (
    "seed",
    "stages",
    "data.name",
    "data.encoder",
    "data.timesteps",
    "data.batch_size",
    "model.name",
    "model.neuron.kind",
    "model.neuron.beta",
    "model.neuron.threshold",
    "train.epochs",
    "train.lr",
    "train.optimizer",
    "train.loss",
    "variants",
    "baseline",
)
_SECTION_MODULES = (
    "spikecim.pipeline.stage_analog",
    "spikecim.pipeline.stage_hardware",
    "spikecim.pipeline.dt_stage",
    "spikecim.pipeline.stage_methods",
    "spikecim.security.report",
    "spikecim.pipeline.trex_search",
    "spikecim.pipeline.stage_ptq",
    "spikecim.report.lm_section",
)


def write_report(run_dir: str | Path) -> Path:
    """Render ``run_dir/report.html`` from ``run_dir/metrics.json`` and return its path."""
    run_dir = Path(run_dir)
    with folder.all_or_nothing("report"):
        path = _write_html(run_dir, _render(run_dir))
    return path


def write_markdown(run_dir: str | Path) -> Path:
    """Render ``run_dir/report.md`` (same content, images linked from ``plots/``)."""
    run_dir = Path(run_dir)
    with folder.all_or_nothing("report"):
        path = _write_markdown(run_dir, _render(run_dir))
    return path


# ---- rendering ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rendered:
    run_name: str
    config: dict | None
    blocks: list[tuple[Section, str]]  # non-empty sections and their HTML fragments
    summary: str = ""  # the headline table and the "estimated vs hardware" sentence (HTML)


def _render(run_dir: Path) -> _Rendered:
    path = run_dir / "metrics.json"
    if not path.exists():
        raise SpikecimError(f"report: metrics.json not found in {run_dir}")
    metrics = _typed(read_metrics(path, "report"), str(path))
    config = None
    if (run_dir / "config.yaml").exists():
        folder.check_config(run_dir, "report")
        config = read_mapping(run_dir / "config.yaml", "report", "of sections")
    run_name = str((config or {}).get("name") or run_dir.name)
    _load_section_modules()
    blocks = []
    for section in list_sections():
        fragment = _render_section(section, metrics, run_dir)
        if fragment.strip():
            blocks.append((section, fragment))
    summary = _unfinished_html(config, metrics) + summary_html(
        {k: v for k, v in metrics.items() if k != "timing_s"}
    )
    return _Rendered(run_name, config, blocks, summary)


def _unfinished_html(config: dict | None, metrics: dict) -> str:
    """A note naming the stages ``config.yaml`` lists (``report`` aside, which writes this page)
    that have no result in ``metrics.json``: the run was interrupted or failed before them, or
    is still running. ``""`` when every stage finished or the config names none."""
    stages = (config or {}).get("stages")
    if not isinstance(stages, list):
        return ""
    missing = [str(s) for s in stages if str(s) != "report" and str(s) not in metrics]
    if not missing:
        return ""
    return (
        f'<p class="error" id="unfinished">No result in metrics.json for the stage{"s" if len(missing) > 1 else ""} '
        f"{html.escape(', '.join(missing))} of config.yaml: the run stopped before "
        f"{'them' if len(missing) > 1 else 'it'} (interrupted or failed) or is still running, so "
        f"{'their sections are' if len(missing) > 1 else 'its section is'} left out.</p>"
    )


def _typed(raw: dict, source: str) -> dict:
    """``metrics.json`` (the file ``source``) with each stage's entry read as its typed result
    (an entry that does not fit its type is refused naming it); ``timing_s`` as it is."""
    from spikecim.pipeline.stages import read_results

    timing = raw.get("timing_s")
    return {**read_results(raw, source), **({"timing_s": timing} if isinstance(timing, dict) else {})}


def _render_section(section: Section, metrics: dict, run_dir: Path) -> str:
    """A failing section shows its error in place and one line on stderr says it is missing
    from the report; the rest of the report still renders (and the command exits 0)."""
    try:
        if section.stage is not None:
            return section.fn(metrics.get(section.stage), run_dir)
        return section.fn(metrics, run_dir)
    except Exception as e:  # noqa: BLE001 - one broken section must not lose the whole report
        print(
            f"warning: report: section '{section.name}' is missing from the report (its place shows "
            f"the error): {one_line(f'{e.__class__.__name__}: {e}')}",
            file=sys.stderr,
        )
        return f'<p class="error">This section could not be rendered: {html.escape(f"{e.__class__.__name__}: {e}")}</p>'


def _load_section_modules() -> None:
    """Import the modules that register sections (analog and hardware are optional)."""
    import spikecim.report.core_sections  # noqa: F401

    for mod in _SECTION_MODULES:
        try:
            __import__(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def _config_rows(config: dict) -> list[list[str]]:
    rows = []
    for key in CONFIG_SUMMARY_KEYS:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if key == "variants" and node is None:
            node = [v.model_dump() for v in resolve_variants(config)]
        if key == "variants":
            node = [_variant_text(v) for v in node]
        if node is not None:
            rows.append([key, ", ".join(map(str, node)) if isinstance(node, list) else str(node)])
    return rows


def _variant_text(v: dict) -> str:
    """``snn`` with its T and methods when set, e.g. ``snn-t8 (T = 8)`` or ``ann (ANN)``."""
    notes = [] if v.get("spiking", True) else ["ANN"]
    if v.get("timesteps"):
        notes.append(f"T = {v['timesteps']}")
    notes += [m if isinstance(m, str) else str(m.get("name")) for m in v.get("methods") or []]
    return f"{v.get('name')} ({', '.join(notes)})" if notes else str(v.get("name"))


# ---- HTML ----------------------------------------------------------------------------------
def _write_html(run_dir: Path, r: _Rendered) -> Path:
    name = html.escape(r.run_name)
    links = [("summary", "Summary")] if r.summary else []
    links += [("config", "Configuration")] if r.config is not None else []
    links += [(s.name, s.title) for s, _ in r.blocks]
    body = [toc(links)]
    if r.summary:
        body.append(section_html("summary", "Summary", r.summary))
    if r.config is not None:
        full = yaml.safe_dump(r.config, sort_keys=False)
        body.append(
            section_html(
                "config",
                "Configuration",
                html_table(["setting", "value"], _config_rows(r.config))
                + f"<details><summary>full config.yaml</summary><pre>{html.escape(full)}</pre></details>",
            )
        )
    body += [section_html(section.name, section.title, fragment) for section, fragment in r.blocks]
    page = page_html(
        f"spikecim report: {r.run_name}",
        "spikecim report",
        body,
        meta=f"run <strong>{name}</strong> · spikecim {html.escape(spikecim.__version__)}",
    )
    path = replaceable(run_dir / "report.html", "report")
    return folder.write_file(path, page.encode("utf-8"))


# ---- Markdown ------------------------------------------------------------------------------
_MARKDOWN_TITLE = "# spikecim report"  # the first line of every report.md spikecim writes


def _write_markdown(run_dir: Path, r: _Rendered) -> Path:
    parts = [_MARKDOWN_TITLE, f"run **{md_escape(r.run_name)}** · spikecim {spikecim.__version__}"]
    if r.summary:
        parts += ["## Summary", html_to_markdown(r.summary)]
    if r.config is not None:
        parts += [
            "## Configuration",
            html_to_markdown(html_table(["setting", "value"], _config_rows(r.config))),
        ]
    for section, fragment in r.blocks:
        parts += [f"## {section.title}", html_to_markdown(fragment)]
    path = replaceable(run_dir / "report.md", "report", marker=_MARKDOWN_TITLE.encode())
    return folder.write_file(path, ("\n\n".join(p for p in parts if p) + "\n").encode("utf-8"))


def md_escape(text: str) -> str:
    """``text`` as literal Markdown: HTML-special characters as entities (no tag survives), and
    the characters that would start a table cell, code span, link or emphasis backslash-escaped."""
    text = re.sub(r"&(?=[#A-Za-z])", "&amp;", text)  # a lone "&" stays readable; "&lt;" stays literal
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`|*\[\]])", r"\\\1", text)


def html_to_markdown(fragment: str) -> str:
    """Convert a section's HTML fragment to Markdown.

    Handles ``h1``-``h6``, ``p``, ``table``, ``ul``/``ol``/``li``, ``pre``, ``details``/``summary``
    ``img`` and chart ``figure`` (linked by their ``data-file``, inline data is dropped; a chart
    without a file is left out); ``script`` and ``style`` are dropped; other tags keep their text.
    """
    parser = _MarkdownParser()
    parser.feed(fragment)
    parser.close()
    return parser.result()


class _MarkdownParser(HTMLParser):
    _BLOCKS: ClassVar[frozenset[str]] = frozenset({"p", "summary", "li", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.text: list[str] = []  # text of the current block or table cell
        self.rows: list[list[str]] | None = None  # inside a table
        self.pre = False
        self.skip = 0  # inside script or style

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag == "figure":
            a = dict(attrs)
            if a.get("data-file"):
                self._flush()
                self.blocks.append(f"![{md_escape(a.get('data-alt') or '')}]({quote(a['data-file'])})")
        elif tag in self._BLOCKS or tag == "pre":
            self._flush()
            self.pre = tag == "pre"
        elif tag == "table":
            self._flush()
            self.rows = []
        elif tag == "tr" and self.rows is not None:
            self.rows.append([])
        elif tag in ("th", "td"):
            self.text = []
        elif tag == "img":
            a = dict(attrs)
            if a.get("data-file"):
                self._flush()
                self.blocks.append(f"![{md_escape(a.get('alt') or '')}]({quote(a['data-file'])})")
        elif tag == "br":
            self.text.append("\n" if self.pre else " ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in ("th", "td") and self.rows:
            self.rows[-1].append(" ".join("".join(self.text).split()))
            self.text = []
        elif tag == "table" and self.rows is not None:
            rows, self.rows = [r for r in self.rows if r], None
            if rows:
                width = max(len(r) for r in rows)
                rows = [r + [""] * (width - len(r)) for r in rows]
                lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * width]
                lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
                self.blocks.append("\n".join(lines))
        elif tag == "pre":
            # A code block shows its text literally; its fence is longer than any backtick run inside.
            code = "".join(self.text).strip("\n")
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall("`+", code)), default=0))
            self.blocks.append(f"{fence}\n{code}\n{fence}")
            self.text, self.pre = [], False
        elif tag in self._BLOCKS:
            text = " ".join("".join(self.text).split())
            self.text = []
            if text:
                self.blocks.append(self._block(tag, text))

    @staticmethod
    def _block(tag: str, text: str) -> str:
        if tag == "summary":
            return f"**{text}**"
        if tag == "li":
            return f"- {text}"
        if tag == "p":
            return text
        return "#" * int(tag[1]) + " " + text

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.text.append(data if self.pre else md_escape(data))

    def _flush(self) -> None:
        """Loose text between blocks becomes its own paragraph."""
        if self.rows is None and not self.pre:
            text = " ".join("".join(self.text).split())
            if text:
                self.blocks.append(text)
        self.text = []

    def result(self) -> str:
        self._flush()
        return "\n\n".join(self.blocks)
