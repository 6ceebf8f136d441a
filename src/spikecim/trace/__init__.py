"""Tracing: run a model on data and record its :class:`Workload` (the bridge to ``spikecim.hw``).

``Workload`` needs only pydantic; ``trace`` (which needs torch) is imported on first use, so
the hardware models load without torch.
"""

from spikecim.trace.steps import REST, at_step
from spikecim.trace.workload import SCHEMA_VERSION, LayerWorkload, Operand, OpWorkload, Workload

__all__ = [
    "REST",
    "SCHEMA_VERSION",
    "LayerWorkload",
    "OpWorkload",
    "Operand",
    "Workload",
    "accumulates",
    "at_step",
    "trace",
]


def __getattr__(name: str):
    if name in ("trace", "accumulates"):
        from spikecim.trace import tracer

        return getattr(tracer, name)
    raise AttributeError(f"module 'spikecim.trace' has no attribute {name!r}")
