"""One trial of ``spikecim dse``: cheap before dear.

1. The design's hardware cost on its *structural* workload: the untrained model traced on a
   few samples with every activity set to zero (:func:`structural_workload`), milliseconds.
   That cost is a lower bound of the trained design's (:mod:`spikecim.dse.objectives`); when
   even the bound violates a ``<=`` hardware constraint the trial stops here, untrained.
2. Training, cached: the run's ``train``, ``evaluate`` and ``trace`` stages in
   ``<out>/cache/<key>/``, where the key is a hash of the config fields that change training
   (everything but the ``analog``, ``hardware`` and ``report`` sections and the run's name,
   stages and folder), so hardware-only and analog-only knobs reuse one trained network.
3. Analog accuracy (mean over the ``analog`` section's programming seeds) when an objective
   or constraint needs it, then the hardware cost of the traced workload.

A hardware-only space (``workload:``) costs its fixed workload on each architecture: step 3's
cost alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spikecim.dse.layout import CACHE
from spikecim.dse.objectives import METRICS, hardware_metrics, violated_by_bound
from spikecim.dse.space import Space, base_config, build

__all__ = ["Evaluator", "Outcome", "structural_workload", "training_key"]

_NOT_TRAINING = ("analog", "hardware", "report", "stages", "output_dir", "name", "baseline")
STRUCTURAL_SAMPLES = 8


@dataclass
class Outcome:
    """What a trial measured: ``values`` (every metric computed), ``bounds`` (the structural
    lower bounds), ``skipped`` (why training was skipped, or None), ``trained`` (the cache key
    of the trained network it used, or None)."""

    values: dict[str, float] = field(default_factory=dict)
    bounds: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    trained: str | None = None


def training_key(config: dict) -> str:
    """A hash of the config fields that change training (see the module docstring)."""
    kept = {k: v for k, v in config.items() if k not in _NOT_TRAINING}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Evaluator:
    """Evaluates designs of one space; results of training are cached in ``out_dir/cache``."""

    def __init__(self, space: Space, out_dir: str | Path):
        self.space = space
        self.out_dir = Path(out_dir)
        self.base = base_config(space)
        self.workload = None
        if space.hardware_only:
            from spikecim.hw.layers import load_workload

            self.workload = load_workload(space.path(space.workload))
        used = {o.metric for o in space.objectives} | {c.metric for c in space.constraints}
        self.needs_analog = any(METRICS[m].source == "analog" for m in used)
        self._structural: OrderedDict[str, Any] = OrderedDict()
        self._trained: OrderedDict[str, Any] = OrderedDict()
        self._data: dict[str, Any] = {}

    def __call__(self, params: dict[str, Any]) -> Outcome:
        from spikecim.hw.estimate import estimate

        trial = build(self.space, params, self.base)
        if self.workload is not None:
            report = estimate(self.workload, trial.arch, dense=self.space.dense)
            return Outcome(values=hardware_metrics(report, self.workload))
        from spikecim.config import RunConfig

        cfg = RunConfig.model_validate(trial.config)
        key = training_key(trial.config)
        wl0 = self._memo(self._structural, key, lambda: structural_workload(cfg, self._dataset(cfg)))
        bounds = hardware_metrics(estimate(wl0, trial.arch, dense=self.space.dense), wl0)
        reason = violated_by_bound(self.space.constraints, bounds)
        if reason is not None:
            return Outcome(bounds=bounds, skipped=reason)
        ctx = self._memo(self._trained, key, lambda: self._train(cfg, key))
        variant = cfg.variants[0].name
        wl = ctx.workloads[variant]
        values = hardware_metrics(estimate(wl, trial.arch, dense=self.space.dense), wl)
        acc = ctx.metrics["evaluate"].variants[variant].accuracy
        if acc is not None:
            values["accuracy"] = float(acc)
        if self.needs_analog:
            values.update(self._analog(cfg, ctx))
        return Outcome(values=values, bounds=bounds, trained=key)

    # ---- the dear part ---------------------------------------------------------------------
    def _train(self, cfg, key: str):
        """The trained network of ``cfg``: train, evaluate and trace into the cache folder
        (once per key, also across processes: a lock file per key), then load it."""
        from spikecim.config import RunConfig
        from spikecim.pipeline.run import load_run, run

        cache = self.out_dir / CACHE
        cache.mkdir(parents=True, exist_ok=True)
        run_dir = cache / key
        with _file_lock(cache / f"{key}.lock"):
            if not _finished(run_dir):
                data = cfg.model_dump(mode="json")
                data.update(output_dir=str(cache), name=key, stages=["train", "evaluate", "trace"])
                run(RunConfig.model_validate(data))
        return load_run(run_dir)

    def _analog(self, cfg, ctx) -> dict[str, float]:
        from spikecim.analog.evaluate import evaluate_analog
        from spikecim.pipeline.run import variant_input
        from spikecim.pipeline.stage_analog import crossbar_config_for_run

        a = cfg.analog
        variant = cfg.variants[0].name
        r = evaluate_analog(
            ctx.models[variant],
            ctx.data,
            crossbar_config_for_run(a),
            None,
            a.n_seeds,
            a.t_inference_s,
            variant_input(cfg, variant, ctx.data),
            a.max_samples,
            a.calibration_samples,
            seed=a.seed,
            input_seed=cfg.seed,
        )
        return {"analog_accuracy": float(r["mean"]), "analog_accuracy_std": float(r["std"])}

    def _dataset(self, cfg):
        from spikecim.data import dataset_from_config

        key = cfg.data.model_dump_json()
        if key not in self._data:
            self._data = {key: dataset_from_config(cfg.data)}
        return self._data[key]

    @staticmethod
    def _memo(store: OrderedDict, key: str, make, keep: int = 4):
        if key in store:
            store.move_to_end(key)
            return store[key]
        value = store[key] = make()
        while len(store) > keep:
            store.popitem(last=False)
        return value


def structural_workload(cfg, data):
    """The workload of ``cfg``'s (only) variant with nothing learnt: its untrained model,
    methods applied (pruning masks at their final sparsity, the network as deployed),
    traced on a few test samples for its shapes, bits and timesteps, then
    every activity set to zero, every static operand to all-zero (sparsity 1) and every step
    after the first to no samples running. Costs grow with each of these, so its cost is a
    lower bound of the trained network's."""
    import torch

    from spikecim.methods import deploy_model
    from spikecim.nn.prune import prune_at
    from spikecim.pipeline.run import build_models, variant_input
    from spikecim.trace import trace

    variant = cfg.variants[0].name
    model = build_models(cfg, data)[variant].eval()
    # a pruned network's shape is that of its final masks (prune with granularity channel:
    # fewer channels); they are set here on the untrained weights
    epochs = cfg.train_for(cfg.variants[0]).epochs
    prune_at(model, epochs, epochs)
    model = deploy_model(model, cfg.variants[0].methods)
    inputs = variant_input(cfg, variant, data)
    x = data.x_test[:STRUCTURAL_SAMPLES]
    batch = inputs.encode(x, torch.Generator().manual_seed(cfg.seed))
    wl = trace(model, [batch], model_name=cfg.model.name, dataset=cfg.data.name)
    layers = []
    for layer in wl.layers:
        zeros = [0.0] * len(layer.in_nonzero_per_step)
        operands = {
            k: op.model_copy(update={"sparsity": 1.0}) if op.kind == "static" else op
            for k, op in layer.operands.items()
        }
        update = {
            "in_nonzero_per_step": zeros,
            "acs_per_step": list(zeros),
            "operands": operands,
            "in_nonzero_per_sample": None,
        }
        if layer.out_spikes_per_step is not None:
            update["out_spikes_per_step"] = list(zeros)
        layers.append(layer.model_copy(update=update))
    running = None
    if wl.running_per_step is not None:
        running = [1.0] + [0.0] * (len(wl.running_per_step) - 1)
    return wl.model_copy(update={"layers": layers, "running_per_step": running})


def _finished(run_dir: Path) -> bool:
    try:
        return "trace" in json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` held for the block (waits for another holder)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
