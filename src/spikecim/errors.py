"""User-facing errors, and how a command stops (Ctrl-C, SIGTERM).

A :class:`SpikecimError` carries one line that names the offending field and what is
allowed. The CLI prints it without a traceback and exits non-zero; library callers can
catch it like any ``ValueError``.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SpikecimError(ValueError):
    """Bad input from the user: the message is one line naming the field (a line break or
    other control character from the input is written escaped, ``\\n``).

    ``advice`` is what to do about it on the command line, written after the finding (``…;
    lower train.lr …``); :attr:`finding` is the message without it, for where that advice
    does not apply (a design's failure recorded in a study)."""

    def __init__(self, message: object = "", *args: object, advice: str = "") -> None:
        self.finding = one_line(str(message))
        super().__init__(f"{self.finding}; {one_line(advice)}" if advice else self.finding, *args)


def one_line(text: str) -> str:
    """``text`` with control characters (line breaks, tabs, escapes) written as escapes."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message, or its type's name when the message is empty: what
    a one-line error quotes of an exception raised by a library."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def allocation_failed(err: BaseException) -> str | None:
    """For an allocation that failed (``MemoryError``, torch's ``OutOfMemoryError`` on a GPU,
    or torch's CPU allocator: "can't allocate memory: you tried to allocate N bytes"): the
    size one tensor asked for, as `` (X GiB for one tensor)``, or ``""`` when the message
    does not say; ``None`` for any other error."""
    import re

    cuda = type(err).__name__ == "OutOfMemoryError"  # torch.OutOfMemoryError: a GPU's memory
    if not (cuda or isinstance(err, MemoryError) or "can't allocate memory" in str(err)):
        return None
    asked = re.search(r"allocate (\d+) bytes", str(err))
    return f" ({int(asked.group(1)) / 2**30:.3g} GiB for one tensor)" if asked else ""


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C: the message is one line saying what was saved (exit code 130)."""


def one_line_validation_error(err, prefix: str = "") -> str:
    """Summarise a pydantic ``ValidationError`` as one line: ``field.path: message``."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "__root__")
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{prefix}{loc}: {msg}" if loc else f"{prefix}{msg}")
    return "; ".join(parts).replace("\r", "\\r").replace("\n", "\\n")  # one line, even for odd keys


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a batch scheduler's stop) handled as Ctrl-C while the block runs, so
    a command stops as it does on Ctrl-C: what it keeps is kept and said. Python's default
    action ends the process at once (a ``--fresh`` run's previous files left set aside, a
    study stopped without a word). Only in the main thread, and only over the default action
    (a handler the caller installed stays)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def interrupts_deferred(drop: bool = False) -> Iterator[None]:
    """Ctrl-C and SIGTERM held back while the block runs, then delivered as they would have
    been, so a write that must be whole is not cut in the middle. Optuna's journal lock, for
    one: an interrupt between its ``rename`` and ``unlink`` leaves the lock file behind, and
    one before the ``rename`` ends in ``FileNotFoundError`` in place of the interrupt.
    ``drop=True`` drops them instead: the cleanup of a command already stopping, which a
    second Ctrl-C must not cut short. Only in the main thread (where Python runs signal
    handlers); nests."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not None:  # None: a handler not set from Python, left alone
            previous[signum] = signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(() if drop else held):  # each once, in the order they came
            signal.raise_signal(signum)
