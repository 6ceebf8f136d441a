"""``spikecim nir``: NIR import, export and inspection (see spikecim.interop).

spikecim nir inspect graph.nir [--dt 1e-4]
spikecim nir export runs/digits-convnet -o convnet.nir [--dt 1e-4] [--allow-partial]
spikecim nir import graph.nir -o runs/from-nir [--dt 1e-4] [--convention euler|snntorch]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Import, export and inspect NIR graphs.", no_args_is_help=True)


@app.command("inspect")
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="a .nir file or a `nir import` folder")],
    dt: Annotated[float | None, typer.Option(help="step in seconds (default: the file's, else 1e-4)")] = None,
) -> None:
    """Print the graph's nodes in execution order: type, shapes and parameters.

    A `nir import` folder is read with the dt and convention of its nir.yaml (--dt wins)."""
    from rich.console import Console
    from rich.table import Table

    from spikecim.interop.describe import describe
    from spikecim.interop.loader import nir_source

    file, dt, convention = nir_source(file, dt)
    rows, used_dt = describe(file, dt=dt, convention=convention)
    table = Table(title=f"{file.name}  (dt = {used_dt:g} s)", show_lines=False)
    for col in ("node", "type", "input", "output", "from", "parameters"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.name, r.kind, _shape(r.input_shape), _shape(r.output_shape), ", ".join(r.inputs), r.params
        )
    Console(width=160).print(table)


@app.command("export")
def export_cmd(
    run_dir: Annotated[
        Path, typer.Argument(help="a run folder (spikecim run) or a NIR folder (spikecim nir import)")
    ],
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="the .nir file to write (a new file, or one spikecim exported)"),
    ],
    dt: Annotated[float, typer.Option(help="step in seconds the discrete neurons are written for")] = 1e-4,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            metavar="",
            help="export a run whose training was interrupted (fewer epochs than train.epochs)",
        ),
    ] = False,
    variant: Annotated[
        str | None,
        typer.Option(
            help="the run's variant to export, as deployed (e.g. without the channels prune removed); "
            "default: its first spiking one"
        ),
    ] = None,
) -> None:
    """Write a run's trained spiking model as a NIR graph.

    A file spikecim exported before is replaced; any other existing file is refused."""
    import warnings

    from spikecim.interop import load_model, to_nir, write_graph

    _nir_output(output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(run_dir, allow_partial=allow_partial, variant=variant)
        graph = to_nir(model, dt=dt)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    write_graph(graph, output)
    typer.echo(f"wrote {output} ({len(graph.nodes)} nodes, dt = {dt:g} s)")


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="a .nir file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the folder to create")],
    dt: Annotated[float | None, typer.Option(help="step in seconds (default: the file's, else 1e-4)")] = None,
    convention: Annotated[str, typer.Option(help="euler (NIR's forward Euler) or snntorch")] = "euler",
) -> None:
    """Check a NIR graph and write it as a folder that evaluate, trace and hw accept."""
    from spikecim.interop.loader import import_run

    model = import_run(file, output, dt=dt, convention=convention)
    typer.echo(
        f"wrote {output}/model.nir and nir.yaml: input {_shape(model.input_shape)}, "
        f"dt = {model.nir_dt:g} s, convention {model.nir_convention}"
    )


def _nir_output(path: Path) -> None:
    """``path`` may be written: a new file, or a NIR file spikecim exported before. Any other
    existing file is the user's and is never overwritten."""
    from spikecim.interop.nirfile import written_by_spikecim
    from spikecim.readers import replaceable

    replaceable(
        path,
        written_by_spikecim,
        "-o",
        "is a folder; give the .nir file's name",
        "is not a NIR file spikecim exported; spikecim replaces only its own exports (choose a new file name)",
    )


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"
