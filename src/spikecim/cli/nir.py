"""``spikecim nir``: NIR import, export and inspection (see spikecim.interop)."""

import typer

app = typer.Typer(help="Import, export and inspect NIR graphs.", no_args_is_help=True)
