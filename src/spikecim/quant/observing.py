"""Switching observation on and off: :func:`observing` attaches one observer to each chosen
module for the duration of a ``with`` block and detaches it at the end.

Nothing about the modules changes: no config, attribute or buffer is set; the observers
hang on hooks that are removed on exit (also when the block raises), and the statistics
live in the observers the block yields. Applying the result is a separate, explicit step::

    with observing(layers, lambda m: AbsMaxObserver(axis=1)) as observers:
        for x in calibration_batches:
            model(x)
    qparams = [obs.compute_qparams() for obs in observers]

Where an observer looks is injected (``attach``): a module's output (a forward hook, the
default), its input (a forward pre-hook), or any function ``attach(module, observer)``
that returns a handle with ``remove()``: e.g. an analog layer's pre-ADC point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol

from torch import nn

from spikecim.quant.observers import Observer

__all__ = ["Handle", "observing"]


class Handle(Protocol):
    """What attaching returns (``torch.utils.hooks.RemovableHandle`` is one)."""

    def remove(self) -> None: ...


Attach = Literal["output", "input"] | Callable[[nn.Module, Observer], Handle]


@contextmanager
def observing(
    modules: Sequence[nn.Module],
    make_observer: Callable[[nn.Module], Observer],
    attach: Attach = "output",
) -> Iterator[list[Observer]]:
    """Attach ``make_observer(module)`` to each of ``modules`` at ``attach`` and yield the
    observers, in the order of ``modules``; every hook is removed when the block ends."""
    observers = [make_observer(m) for m in modules]
    handles: list[Handle] = []
    try:
        for module, obs in zip(modules, observers, strict=True):
            handles.append(_attach(module, obs, attach))
        yield observers
    finally:
        for h in handles:
            h.remove()


def _attach(module: nn.Module, obs: Observer, attach: Attach) -> Handle:
    if attach == "output":
        return module.register_forward_hook(lambda _m, _inp, out: obs.observe(out))
    if attach == "input":
        return module.register_forward_pre_hook(lambda _m, inp: obs.observe(inp[0]))
    if callable(attach):
        return attach(module, obs)
    raise ValueError(f"observing: attach must be 'output', 'input' or a function, got {attach!r}")
