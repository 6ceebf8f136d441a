"""The core stages of ``spikecim run``: train, evaluate, trace.

Each trains or reads every variant the run config lists (by default ``snn``, the spiking
model, and ``ann``, its twin of identical topology with ReLU, T = 1), each at its own
timesteps. Registered in :mod:`spikecim.pipeline.builtin_stages`.
"""

from __future__ import annotations

import torch

from spikecim.methods import deploy_model
from spikecim.pipeline import folder
from spikecim.pipeline.results import EvaluateResult, TraceResult, TrainResult
from spikecim.pipeline.run import variant_input
from spikecim.pipeline.stages import RunContext
from spikecim.trace import trace
from spikecim.train import FitSpec, fit
from spikecim.train.batches import iterate_batches
from spikecim.train.checkpoint import refuse_weights_placed_by_hand
from spikecim.train.trainer import check_fit
from spikecim.variants import workload_filename

__all__ = ["evaluate_stage", "trace_stage", "train_stage", "variants"]


def variants(ctx: RunContext) -> list[str]:
    """The names of the run's variants, in the config's order."""
    return [v.name for v in ctx.config.variants]


def train_stage(ctx: RunContext) -> TrainResult:
    """Train every variant; a finished or interrupted checkpoint is resumed, not redone.
    Weights placed by hand for any variant, and what :func:`~spikecim.train.trainer.check_fit`
    refuses, are refused before the first one trains. Each trained model is replaced by the
    network as deployed (:func:`spikecim.methods.deploy_model`)."""
    for v in variants(ctx):
        refuse_weights_placed_by_hand(ctx.run_dir / "checkpoint", v)
        check_fit(ctx.models[v], ctx.data, FitSpec.from_config(ctx.config, v))
    out = {}
    for v in variants(ctx):
        out[v] = fit(
            ctx.models[v],
            ctx.data,
            FitSpec.from_config(ctx.config, v),
            ctx.run_dir / "checkpoint",
            v,
            ctx.console,
            task=ctx.config.task,
        )
        # the later stages take the network as deployed (prune's channels removed)
        ctx.models[v] = deploy_model(ctx.models[v], ctx.config.variant(v).methods)
    return TrainResult.model_validate(out)


def evaluate_stage(ctx: RunContext) -> EvaluateResult:
    """Test accuracy (and the task's other metrics) and the mean activity of every layer, per
    variant: the run's task's :meth:`~spikecim.tasks.Task.evaluate`."""
    from spikecim.tasks import get_task

    cfg = ctx.config
    task = get_task(cfg.task)
    return EvaluateResult.model_validate(
        {
            v: task.evaluate(
                ctx.models[v],
                ctx.data.x_test,
                ctx.data.y_test,
                variant_input(cfg, v, ctx.data),
                seed=cfg.seed,
            )
            for v in variants(ctx)
        }
    )


def trace_inputs(ctx: RunContext, variant: str, limit: int = 512):
    """Encoded test batches (at most ``limit`` samples) of one variant for tracing."""
    cfg = ctx.config
    inputs = variant_input(cfg, variant, ctx.data)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = ctx.data.x_test[:limit], ctx.data.y_test[:limit]
    for xb, _ in iterate_batches(x, y, cfg.data.batch_size):
        yield inputs.encode(xb, gen)


def trace_stage(ctx: RunContext) -> TraceResult:
    """Trace every variant, write its ``workload*.json`` and return its totals. Each file it
    replaces must be one spikecim wrote (checked before any is traced)."""
    files = {v: ctx.run_dir / workload_filename(ctx.config.variants, v) for v in variants(ctx)}
    folder.check_replaceable(files.values(), "trace")
    out = {}
    for v in variants(ctx):
        w = trace(
            ctx.models[v],
            trace_inputs(ctx, v),
            model_name=ctx.config.model.name,
            dataset=ctx.config.data.name,
        )
        w.save(files[v])
        ctx.workloads[v] = w
        out[v] = w.metrics()
    return TraceResult.model_validate(out)
