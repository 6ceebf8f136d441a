"""``spikecim run | train | evaluate | trace | report``."""

import typer


def register(app: typer.Typer) -> None:
    pass
