"""The progress bar every long step draws on the run's console (training epochs, analog seeds).

One layout: description, bar, ``done/total``, what was just done (the task's ``info`` field)
and the elapsed time. Nothing is drawn when ``enabled`` is false or there is no console.
"""

from __future__ import annotations

__all__ = ["progress_bar"]


def progress_bar(console, enabled: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled or console is None,
        transient=False,
    )
