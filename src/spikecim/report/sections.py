"""Report sections: each stage contributes its part of ``report.html`` by registering one.

A section is ``fn(metrics: dict, run_dir: Path) -> str`` returning an HTML fragment (it may
write PNGs under ``run_dir / "plots"`` and embed them with :func:`embed_png`). Sections are
rendered in ``order``; a section whose stage did not run returns ``""``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Section", "register_section", "list_sections", "embed_png"]

SectionFn = Callable[[dict, Path], str]


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    order: int
    fn: SectionFn


_SECTIONS: dict[str, Section] = {}


def register_section(name: str, title: str, order: int = 50) -> Callable[[SectionFn], SectionFn]:
    def deco(fn: SectionFn) -> SectionFn:
        _SECTIONS[name] = Section(name, title, order, fn)
        return fn

    return deco


def list_sections() -> list[Section]:
    return sorted(_SECTIONS.values(), key=lambda s: s.order)


def embed_png(path: str | Path, alt: str = "") -> str:
    """An ``<img>`` tag with the PNG inlined as base64 (the report stays one file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{alt}" src="data:image/png;base64,{data}"/>'
