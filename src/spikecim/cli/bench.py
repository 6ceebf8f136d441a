"""``spikecim bench``: speed against the peer libraries (see benchmarks/)."""

import typer


def register(app: typer.Typer) -> None:
    pass
