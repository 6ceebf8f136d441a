"""What a long step shows on the run's console: its progress bar and its warnings.

The progress bar (training epochs, analog seeds) has one layout: description, bar,
``done/total``, what was just done (the task's ``info`` field) and the elapsed time. Nothing
is drawn when ``enabled`` is false or there is no console. A warning is a line
``warning: ...`` on the console, or a Python ``UserWarning`` when there is none (a library
call).
"""

from __future__ import annotations

import warnings

__all__ = ["progress_bar", "warn"]


def warn(console, note: str, stacklevel: int = 3) -> None:
    """``note`` as a warning on ``console``, or through :mod:`warnings` without one."""
    if console is not None:
        console.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
    else:
        warnings.warn(note, stacklevel=stacklevel)


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
