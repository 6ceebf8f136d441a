"""The time step a layer call belongs to, said explicitly by code that runs a model step by step.

A spikecim model calls its layers on all steps at once (``[T*B, ...]`` or ``[T, B, ...]``);
a recurrent graph runs them once per step on ``[B, ...]``. The tracer cannot tell the two
apart from sizes alone (a ``[B, F]`` call with ``B = T`` looks like ``[T, F/T]`` steps), so a
step-by-step runner wraps each step in ``with at_step(t):``, and the work it does before the
first step (a recurrent edge's value at rest) in ``with at_step(REST):`` (not counted).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["REST", "at_step", "current_step"]

REST = -1
_STEP: ContextVar[int | None] = ContextVar("spikecim_step", default=None)


@contextmanager
def at_step(t: int) -> Iterator[None]:
    """Calls inside run on ``[B, ...]`` at step ``t`` (``REST``: before the first step)."""
    token = _STEP.set(int(t))
    try:
        yield
    finally:
        _STEP.reset(token)


def current_step() -> int | None:
    """The step set by the innermost :func:`at_step`, or ``None`` outside any."""
    return _STEP.get()
