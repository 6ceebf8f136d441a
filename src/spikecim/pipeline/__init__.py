"""The ``spikecim run`` pipeline: an ordered list of registered stages.

A stage is a function ``fn(ctx: RunContext) -> dict`` registered with
:func:`register_stage`. Its returned dict is stored under its name in ``metrics.json``.
Later packages (analog, hardware, report) add a stage by registering it; nothing edits
the run loop. See :mod:`spikecim.pipeline.run`.
"""

from spikecim.pipeline.stages import RunContext, Stage, get_stage, list_stages, register_stage

__all__ = ["RunContext", "Stage", "get_stage", "list_stages", "register_stage"]
