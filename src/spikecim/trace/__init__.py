"""Tracing: run a model on data and record its :class:`Workload` (the bridge to ``spikecim.hw``)."""

from spikecim.trace.tracer import accumulates, trace
from spikecim.trace.workload import SCHEMA_VERSION, LayerWorkload, Workload

__all__ = ["trace", "accumulates", "Workload", "LayerWorkload", "SCHEMA_VERSION"]
