"""``spikecim hw``: hardware cost estimates (see spikecim.hw)."""

import typer

app = typer.Typer(help="Cost a workload on hardware models: energy, latency, area.", no_args_is_help=True)
