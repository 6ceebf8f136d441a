"""The run loop: resolve the config, build the context, run the registered stages in order.

A run folder ``runs/<name>/`` holds ``config.yaml`` (the fully resolved config),
``checkpoint/`` (safetensors weights + JSON training state), ``metrics.json`` (each finished
stage's result under its name, written after every stage), ``workload*.json`` and the
report. Running the same command again resumes: training continues after the last
completed epoch, and the other stages are recomputed from the checkpoints.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from spikecim.config import RunConfig, load_config
from spikecim.data import dataset_from_config
from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.pipeline.stages import RunContext, get_stage
from spikecim.readers import read_mapping
from spikecim.train.distributed import is_main_process

__all__ = ["build_context", "build_models", "load_run", "run", "write_metrics"]


def build_models(cfg: RunConfig, data) -> dict[str, torch.nn.Module]:
    """Fresh, seeded models for every variant of the run."""
    models = {}
    for spiking, v in ((True, "snn"), (False, "ann")):
        if v == "ann" and not cfg.train.ann_twin:
            continue
        torch.manual_seed(cfg.seed)
        models[v] = create_model(
            cfg.model.name,
            spiking=spiking,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            input_size=data.input_size,
            neuron=cfg.model.neuron.kind,
            neuron_kw=cfg.model.neuron.module_kwargs(),
            **cfg.model.kwargs,
        )
    return models


def build_context(cfg: RunConfig, console=None) -> RunContext:
    data = dataset_from_config(cfg.data)
    ctx = RunContext(config=cfg, run_dir=cfg.run_dir, data=data, console=console)
    ctx.models = build_models(cfg, data)
    return ctx


def write_metrics(ctx: RunContext) -> Path:
    path = ctx.run_dir / "metrics.json"
    tmp = path.with_name("metrics.json.tmp")
    tmp.write_text(json.dumps(ctx.metrics, indent=1, default=float))
    tmp.replace(path)
    return path


def _check_same_run(cfg: RunConfig) -> None:
    """Refuse to resume a run folder written with another model or data set."""
    old = cfg.run_dir / "config.yaml"
    if not old.exists():
        return
    prev = read_mapping(old, "run", "of sections")
    now = cfg.model_dump(mode="json")
    for key in ("model", "data", "seed"):
        if prev.get(key) != now.get(key):
            raise SpikecimError(
                f"run: {cfg.run_dir} holds a run with another '{key}'; choose another --name or pass --fresh"
            )
    # Trained weights exist: another training setting cannot resume them, and must not
    # overwrite the config.yaml that describes them.
    if any((cfg.run_dir / "checkpoint").glob("*.state.json")):
        old_t, new_t = prev.get("train") or {}, now.get("train") or {}
        for key in sorted(set(old_t) & set(new_t)):
            if key != "ann_twin" and old_t[key] != new_t[key]:
                raise SpikecimError(
                    f"run: {cfg.run_dir} holds a run trained with train.{key}={old_t[key]!r} "
                    f"(now {new_t[key]!r}); choose another --name or pass --fresh"
                )


def _reuse_earlier_results(ctx: RunContext) -> None:
    """Let a run of some stages build on what earlier runs left in the folder.

    The other stages' results stay in ``metrics.json``; without ``train`` among the stages the
    trained weights come from the checkpoint, and without ``trace`` the workloads from
    ``workload*.json``. A stage whose input is missing stops the run before anything runs.
    """
    from spikecim.trace.workload import Workload
    from spikecim.train.checkpoint import load_weights, weights_path

    cfg, run_dir = ctx.config, ctx.run_dir
    if (run_dir / "metrics.json").exists():
        try:
            ctx.metrics = read_mapping(run_dir / "metrics.json", "run", "of stage results")
        except SpikecimError:
            ctx.metrics = {}
    users: dict[str, list[str]] = {}
    for name in cfg.stages:
        for r in get_stage(name).requires:
            if r not in cfg.stages:
                users.setdefault(r, []).append(name)
    if "train" in users:
        for v, m in ctx.models.items():
            path = weights_path(run_dir / "checkpoint", v)
            if not path.exists():
                raise SpikecimError(
                    f"stages: no trained weights at {path} (needed by {', '.join(users['train'])}); "
                    "add train to the stages"
                )
            load_weights(m, path)
            m.eval()
    if "trace" in users:
        for v, fname in (("snn", "workload.json"), ("ann", "workload_ann.json")):
            if (run_dir / fname).exists():
                ctx.workloads[v] = Workload.load(run_dir / fname)
        if not ctx.workloads:
            raise SpikecimError(
                f"stages: no traced workload at {run_dir / 'workload.json'} "
                f"(needed by {', '.join(users['trace'])}); add trace to the stages"
            )


def run(cfg: RunConfig, console=None, fresh: bool = False) -> RunContext:
    """Run ``cfg.stages`` in order; returns the context (models, workloads, metrics)."""
    main = is_main_process()
    if fresh and cfg.run_dir.exists() and main:
        shutil.rmtree(cfg.run_dir)
    _check_same_run(cfg)
    for i, name in enumerate(cfg.stages):
        later = [r for r in get_stage(name).requires if r in cfg.stages[i + 1 :]]
        if later:
            raise SpikecimError(f"stages: '{name}' must come after {', '.join(later)}")
    ctx = build_context(cfg, console)  # data and models first: bad input leaves no folder behind
    _reuse_earlier_results(ctx)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (cfg.run_dir / "config.yaml").write_text(cfg.to_yaml())
    done: list[str] = []
    for name in cfg.stages:
        stage = get_stage(name)
        missing = [r for r in stage.requires if r not in done and r in cfg.stages]
        if missing:
            raise SpikecimError(f"stages: '{name}' must come after {', '.join(missing)}")
        if console is not None:
            console.rule(f"[bold]{name}[/bold] {stage.description}")
        t0 = time.perf_counter()
        ctx.metrics[name] = stage.fn(ctx)
        ctx.metrics.setdefault("timing_s", {})[name] = time.perf_counter() - t0
        if main:
            write_metrics(ctx)
        done.append(name)
    return ctx


def load_run(run_dir: str | Path, console=None) -> RunContext:
    """Rebuild a finished (or interrupted) run: config, data, models with their trained weights."""
    from spikecim.trace.workload import Workload
    from spikecim.train.checkpoint import load_weights, weights_path

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise SpikecimError(f"run: {run_dir} is not a run folder (no config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    cfg = cfg.model_copy(update={"output_dir": str(run_dir.parent), "name": run_dir.name})
    ctx = build_context(cfg, console)
    for v, m in ctx.models.items():
        load_weights(m, weights_path(run_dir / "checkpoint", v))
        m.eval()
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        ctx.metrics = read_mapping(metrics, "run", "of stage results")
    for v, fname in (("snn", "workload.json"), ("ann", "workload_ann.json")):
        if (run_dir / fname).exists():
            ctx.workloads[v] = Workload.load(run_dir / fname)
    return ctx
