"""``spikecim compare``: several runs (or every run under a folder) on one page.

spikecim compare runs/a runs/b [--out DIR]     DIR/compare.html (default: the runs' common folder)
spikecim compare runs/ [--out DIR]             DIR/index.html over every run and study under runs/
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from spikecim.errors import SpikecimError


def compare_cmd(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="run folders (each holding metrics.json); or one folder of runs (e.g. runs/) for its index page"
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="folder to write compare.html (or index.html) into; default: the runs' common folder "
            "(for an index: the folder itself). A file of that name spikecim did not write is refused.",
        ),
    ] = None,
    index: Annotated[
        bool,
        typer.Option(
            "--index",
            help="write index.html over every run and design-space study under the one folder given",
        ),
    ] = False,
) -> None:
    """Put several runs' variants in one table and one set of charts, or index a folder of runs.

    The table and charts (accuracy against energy on each hardware model, energy per layer)
    link each run's report.html; the page is self-contained and offline, like report.html.
    Given one folder that is not a run (e.g. runs/), or --index, it writes index.html over
    every run and design-space study under it."""
    from spikecim.report.compare import write_compare_page, write_index_page

    for r in runs:
        if not r.is_dir():
            raise SpikecimError(f"compare: {r} is not a folder")
    if index or (len(runs) == 1 and not (runs[0] / "metrics.json").is_file()):
        if len(runs) != 1:
            raise SpikecimError("compare --index: give exactly one folder of runs (e.g. runs/)")
        print(write_index_page(runs[0], out))
        return
    if out is None:
        common = Path(os.path.commonpath([str(r.resolve()) for r in runs]))
        out = common.parent if (common / "metrics.json").is_file() else common
    print(write_compare_page(runs, out))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
