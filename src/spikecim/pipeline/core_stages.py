"""The core stages of ``spikecim run``: train, evaluate, trace.

Each trains or reads the variants of the run: ``"snn"`` (the spiking model) and, when
``train.ann_twin`` is set, ``"ann"`` (its twin of identical topology with ReLU, T = 1).
"""

from __future__ import annotations

import torch

from spikecim.pipeline.stages import RunContext, register_stage
from spikecim.trace import trace
from spikecim.train import FitSpec, evaluate, fit
from spikecim.train.batches import iterate_batches, to_model_input

__all__ = ["variants"]


def variants(ctx: RunContext) -> list[str]:
    return ["snn", "ann"] if ctx.config.train.ann_twin else ["snn"]


@register_stage("train", description="train the SNN and its ANN twin (resumable)")
def train_stage(ctx: RunContext) -> dict:
    """Train every variant; a finished or interrupted checkpoint is resumed, not redone."""
    out = {}
    for v in variants(ctx):
        out[v] = fit(
            ctx.models[v],
            ctx.data,
            FitSpec.from_config(ctx.config),
            ctx.run_dir / "checkpoint",
            v,
            ctx.console,
        )
    return out


@register_stage("evaluate", requires=("train",), description="test accuracy and per-layer activity")
def evaluate_stage(ctx: RunContext) -> dict:
    cfg = ctx.config
    out = {}
    for v in variants(ctx):
        m = ctx.models[v]
        steps = cfg.data.timesteps if getattr(m, "spiking", True) else 1
        out[v] = evaluate(
            m,
            ctx.data.x_test,
            ctx.data.y_test,
            steps,
            cfg.data.encoder,
            seed=cfg.seed,
            frames=ctx.data.frames,
        )
    return out


def trace_inputs(ctx: RunContext, spiking: bool, limit: int = 512):
    """Encoded test batches (at most ``limit`` samples) for tracing."""
    cfg = ctx.config
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = ctx.data.x_test[:limit], ctx.data.y_test[:limit]
    for xb, _ in iterate_batches(x, y, cfg.data.batch_size):
        yield to_model_input(xb, cfg.data.timesteps, cfg.data.encoder, spiking, gen, ctx.data.frames)


@register_stage("trace", requires=("train",), description="record the Workload of each variant")
def trace_stage(ctx: RunContext) -> dict:
    out = {}
    for v in variants(ctx):
        m = ctx.models[v]
        spiking = bool(getattr(m, "spiking", True))
        w = trace(
            m, trace_inputs(ctx, spiking), model_name=ctx.config.model.name, dataset=ctx.config.data.name
        )
        w.save(ctx.run_dir / ("workload.json" if v == "snn" else f"workload_{v}.json"))
        ctx.workloads[v] = w
        out[v] = w.metrics()
    return out
