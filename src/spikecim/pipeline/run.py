"""The run loop: resolve the config, build the context, run the registered stages in order.

A run folder ``runs/<name>/`` holds ``config.yaml`` (the fully resolved config),
``checkpoint/`` (safetensors weights + JSON training state), ``metrics.json`` (each finished
stage's result under its name, written after every stage), ``workload*.json`` and the
report. Running the same command again resumes: training continues after the last
completed epoch, and the other stages are recomputed from the checkpoints. Every file
spikecim writes there is recorded with its hash in ``.spikecim-run``, which decides what
``--fresh`` may clear and what a command may replace (:mod:`spikecim.pipeline.folder`).
"""

from __future__ import annotations

import json
import shutil
import time
import zlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from spikecim.config import RunConfig, load_config, written_over
from spikecim.data import dataset_from_config
from spikecim.errors import (
    RunInterrupted,
    SpikecimError,
    interrupts_deferred,
    one_line_validation_error,
    terminate_as_interrupt,
)
from spikecim.methods import deploy_model
from spikecim.models import create_model
from spikecim.pipeline import folder
from spikecim.pipeline.results import result_json
from spikecim.pipeline.stages import RunContext, get_stage, read_result
from spikecim.progress import warn
from spikecim.readers import first_non_finite, read_mapping, read_metrics
from spikecim.train.checkpoint import trained_weights, weights_path
from spikecim.train.distributed import is_main_process
from spikecim.train.seeding import seeded
from spikecim.variants import workload_filename

__all__ = [
    "build_context",
    "build_models",
    "check_trained",
    "load_run",
    "load_workloads",
    "run",
    "trained_epochs",
    "variant_input",
    "write_metrics",
]


def build_models(cfg: RunConfig, data) -> dict[str, torch.nn.Module]:
    """Fresh models for every variant of the run, its method transforms applied.

    Each is initialised from ``cfg.seed`` alone, in a forked global generator state
    (:func:`~spikecim.train.seeding.seeded`): the process's own random state is left as it was.
    """
    from spikecim.methods import apply_methods
    from spikecim.train.seeding import seeded

    frames_t = data.sample_shape[0] if getattr(data, "frames", False) else None
    models = {}
    for v in cfg.variants:
        if frames_t is not None and v.spiking and cfg.timesteps_for(v) != frames_t:
            raise SpikecimError(
                f"variants: '{v.name}' asks for T = {cfg.timesteps_for(v)}, but the {cfg.data.name} frames "
                f"are binned to data.timesteps = {frames_t}; frame data sets take one T per run"
            )
        neuron = cfg.neuron_for(v)
        with seeded(cfg.seed):
            model = create_model(
                cfg.model.name,
                spiking=v.spiking,
                num_classes=data.num_classes,
                in_channels=data.in_channels,
                input_size=data.input_size,
                neuron=neuron.kind,
                neuron_kw=neuron.module_kwargs(),
                **cfg.model.kwargs,
            )
            try:
                models[v.name] = apply_methods(model, v.methods)
                deploy_model(models[v.name], v.methods)  # refuse what cannot be deployed before training
            except SpikecimError as e:  # which variant's methods, when several list one
                raise SpikecimError(f"variants.{v.name}: {e}") from None
    return models


def variant_input(cfg: RunConfig, variant: str, data):
    """How the run feeds one variant (its task's :meth:`~spikecim.tasks.Task.model_input`):
    its T, the run's encoder, spiking or not, frames or not."""
    from spikecim.tasks import get_task

    v = cfg.variant(variant)
    return get_task(cfg.task).model_input(
        cfg.timesteps_for(v), cfg.data.encoder, v.spiking, bool(getattr(data, "frames", False))
    )


def build_context(cfg: RunConfig, console=None) -> RunContext:
    data = dataset_from_config(cfg.data)
    if data.task != cfg.task:
        from spikecim.data import list_datasets

        fits = [n for n in list_datasets() if n in _TEXT_DATASETS] if cfg.task == "lm" else None
        allowed = f", allowed: {', '.join(fits)}" if fits else ""
        raise SpikecimError(
            f"data.name: {cfg.data.name} holds {data.task} samples but the run's task is {cfg.task}{allowed}"
        )
    ctx = RunContext(config=cfg, run_dir=cfg.run_dir, data=data, console=console)
    ctx.models = build_models(cfg, data)
    return ctx


_TEXT_DATASETS = ("pydoc", "shakespeare", "text")


def write_metrics(ctx: RunContext) -> Path:
    """Write ``metrics.json`` atomically (each result's :func:`result_json`); every number in
    it is finite (strict JSON)."""
    data = {k: result_json(v) for k, v in ctx.metrics.items()}
    text = json.dumps(data, indent=1, default=float, allow_nan=False)
    return folder.write_file(ctx.run_dir / "metrics.json", text.encode())


def trained_epochs(run_dir: Path) -> dict[str, int]:
    """Completed epochs per variant, from ``checkpoint/<variant>.state.json``."""
    out = {}
    for f in sorted((Path(run_dir) / "checkpoint").glob("*.state.json")):
        if not f.is_file():  # a pipe or a device would block or never end: the checkpoint check names it
            continue
        try:
            out[f.name.removesuffix(".state.json")] = int(json.loads(f.read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue  # damaged: the checkpoint check names it
    return out


def check_trained(run_dir: Path, cfg: RunConfig, variants, allow_partial: bool = False) -> list[str]:
    """Refuse variants trained for fewer than ``train.epochs`` epochs (an interrupted run).

    A variant without weights is always refused; a damaged checkpoint (its ``state.json``
    unreadable, the weights file it names missing) is refused naming the file, as ``spikecim
    run`` refuses to resume it; one whose ``<variant>.state.json`` counts fewer epochs is
    refused unless ``allow_partial``, and then named in the returned notes. Weights without a
    state file (placed by hand) are taken as they are.
    """
    run_dir = Path(run_dir)
    done = trained_epochs(run_dir)
    notes = []
    for v in variants:
        n = cfg.train_for(cfg.variant(v)).epochs
        if trained_weights(run_dir / "checkpoint", v) is None:
            raise SpikecimError(
                f"run: {run_dir}: the {v} trained 0 of {n} epochs (no checkpoint); "
                "run `spikecim run` again to finish"
            )
        if v in done and done[v] < n:
            msg = f"{run_dir}: the {v} trained {done[v]} of {n} epochs"
            if not allow_partial:
                raise SpikecimError(
                    f"run: {msg}; run `spikecim run` again to finish, or pass --allow-partial"
                )
            notes.append(msg)
    return notes


def _check_same_run(cfg: RunConfig) -> None:
    """Refuse to resume a run folder written with another model or data set, or whose
    config.yaml was changed since spikecim wrote it (:func:`~spikecim.pipeline.folder.check_config`)."""
    old = cfg.run_dir / "config.yaml"
    if not old.exists():
        return
    folder.check_config(cfg.run_dir, "run")
    prev = read_mapping(old, "run", "of sections")
    now = cfg.model_dump(mode="json")
    for key in ("model", "data", "seed"):
        if _with_later_defaults(prev.get(key), key) != now.get(key):
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
    _check_same_variants(cfg, prev)


def _with_later_defaults(section: Any, key: str) -> Any:
    """A section of an earlier config.yaml with the fields added since at their defaults, so
    that a run written before a field existed resumes as it was (a ``data`` section without
    ``augment`` was trained without augmentation)."""
    from spikecim.config import DataConfig, ModelConfig

    schema = {"data": DataConfig, "model": ModelConfig}.get(key)
    if schema is None or not isinstance(section, dict):
        return section
    return written_over(schema().model_dump(mode="json"), section)


def _check_same_variants(cfg: RunConfig, prev: dict) -> None:
    """Refuse to resume a trained variant whose model is now built otherwise: spiking or not,
    its neuron settings (over ``model.neuron``, as that section is compared) or its methods.
    Its timesteps and training settings are checked with its checkpoint."""
    from spikecim.config import VariantConfig

    trained = {f.name.removesuffix(".state.json") for f in (cfg.run_dir / "checkpoint").glob("*.state.json")}
    before = {}
    for entry in prev.get("variants") or []:
        try:
            v = VariantConfig.model_validate(entry)
        except ValidationError:
            continue  # an entry this version cannot read: the checkpoint check judges it
        before[v.name] = v
    for v in cfg.variants:
        old = before.get(v.name)
        if v.name not in trained or old is None:
            continue
        was_neuron, now_neuron = cfg.neuron_for(old).model_dump(), cfg.neuron_for(v).model_dump()
        changes = [
            ("spiking", old.spiking, v.spiking),
            *((f"neuron.{k}", was_neuron[k], now_neuron[k]) for k in was_neuron),
            ("methods", [m.model_dump() for m in old.methods], [m.model_dump() for m in v.methods]),
        ]
        for key, was, now in changes:
            if was != now:
                raise SpikecimError(
                    f"run: {cfg.run_dir} holds the {v.name} trained with {key}={was!r} (now {now!r}); "
                    "choose another --name or pass --fresh"
                )


def _needs_earlier_results(cfg: RunConfig) -> dict[str, list[str]]:
    """For each stage required but not run: the stages of this run that need its results."""
    users: dict[str, list[str]] = {}
    for name in cfg.stages:
        for r in get_stage(name).requires:
            if r not in cfg.stages:
                users.setdefault(r, []).append(name)
    return users


def _reuse_earlier_results(ctx: RunContext) -> None:
    """Let a run of some stages build on what earlier runs left in the folder.

    The other stages' results stay in ``metrics.json``; without ``train`` among the stages the
    trained weights come from the checkpoint, and without ``trace`` the workloads from
    ``workload*.json``. A stage whose input is missing stops the run before anything runs.
    """
    from spikecim.train.checkpoint import load_variant_weights

    cfg, run_dir = ctx.config, ctx.run_dir
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        try:
            ctx.metrics = _typed_metrics(read_metrics(metrics, "run"))
        except SpikecimError as e:  # rewriting it would lose every earlier result
            raise SpikecimError(f"{e}; repair it, or move it away and pass --fresh to start over") from None
    users = _needs_earlier_results(cfg)
    if "train" in users:
        for v, m in ctx.models.items():
            if trained_weights(run_dir / "checkpoint", v) is None:
                raise SpikecimError(
                    f"stages: no trained weights at {weights_path(run_dir / 'checkpoint', v)} "
                    f"(needed by {', '.join(users['train'])}); add train to the stages"
                )
            load_variant_weights(m, run_dir / "checkpoint", v)
            ctx.models[v] = deploy_model(m.eval(), cfg.variant(v).methods)
    if "trace" in users:
        ctx.workloads = load_workloads(cfg, run_dir)
        if not ctx.workloads:
            raise SpikecimError(
                f"stages: no traced workload at {run_dir / 'workload.json'} "
                f"(needed by {', '.join(users['trace'])}); add trace to the stages"
            )


def run_config(run_dir: Path) -> RunConfig:
    """The config of the run folder ``run_dir``, which spikecim writes whole: a folder without
    one, with an empty one (damaged: read as the defaults, it would describe another run), or
    with one changed since spikecim wrote it (:func:`~spikecim.pipeline.folder.check_config`)
    is refused in one line."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise SpikecimError(f"run: {run_dir} is not a run folder (no config.yaml)")
    if not read_mapping(path, "run"):
        raise SpikecimError(
            f"run: {path} is empty, where spikecim wrote the run's whole config; restore it from a copy"
        )
    folder.check_config(run_dir, "run")
    return load_config(path)


def run(cfg: RunConfig, console=None, fresh: bool = False) -> RunContext:
    """Run ``cfg.stages`` in order; returns the context (models, workloads, metrics).

    Everything that can be checked is checked before the run folder is touched: the folder
    is inside ``output_dir`` and spikecim's own, the stage order, the device, the data set,
    the models and the encoder. ``fresh`` sets the previous run aside and deletes it once the
    first stage has finished. A failure before anything new is saved leaves the folder as it
    was; Ctrl-C, or SIGTERM (``kill``, a batch scheduler's stop), raises
    :class:`~spikecim.errors.RunInterrupted` saying what was saved.
    """
    with terminate_as_interrupt():
        return _run(cfg, console, fresh)


def _run(cfg: RunConfig, console, fresh: bool) -> RunContext:
    try:
        ctx = _prepare(cfg, console, fresh)
    except KeyboardInterrupt:
        raise RunInterrupted("interrupted before the run started; nothing was written") from None
    if not is_main_process():  # under torchrun only the first process handles the folder
        if not fresh:
            _reuse_earlier_results(ctx)
        for name in cfg.stages:
            _run_stage(ctx, name, write=False)
        return ctx
    run_dir = ctx.run_dir
    created = not run_dir.exists()
    # marked as spikecim's only when spikecim makes it: a folder made by hand (weights placed
    # in it, say) is never taken for one --fresh may clear
    ours = created or (run_dir.is_dir() and folder.is_empty(run_dir))
    folder.check_owned(run_dir, fresh)
    with folder.locked(run_dir):
        aside = folder.Aside(run_dir) if fresh else None
        config, marker = run_dir / "config.yaml", run_dir / folder.MARKER
        old_config = config.read_bytes() if config.is_file() else None
        old_marker = marker.read_bytes() if marker.is_file() else None
        before = _checkpoint_stamp(run_dir)
        done: list[str] = []
        try:
            if aside is None:
                _check_same_run(cfg)
                _reuse_earlier_results(ctx)
            else:
                aside.move()
            if ours:
                folder.mark(run_dir)
            folder.write_file(config, cfg.to_yaml().encode())
            for name in cfg.stages:
                _run_stage(ctx, name, write=True)
                done.append(name)
                if aside is not None:
                    aside.discard()  # the new run has started: the previous one goes
            if aside is not None:
                aside.discard()
        except BaseException as e:
            with interrupts_deferred(drop=True):  # a second Ctrl-C does not cut the cleanup short
                what = _clean_up(run_dir, aside, done, created, before, config, old_config, old_marker)
            if isinstance(e, KeyboardInterrupt):
                raise RunInterrupted(_interrupted_line(cfg, done, what)) from None
            raise
    return ctx


def _clean_up(
    run_dir: Path, aside, done: list[str], created: bool, before, config: Path, old_config, old_marker
) -> str | None:
    """After a run failed or was interrupted: put the previous run back (``--fresh``), or undo
    what a run that saved nothing wrote (its config.yaml, and the manifest that records it).
    Returns what the folder now holds, or None when the stages that finished are kept."""
    if aside is not None and aside.path is not None:
        aside.restore()
        return f"the previous run in {run_dir} is restored"
    if done or _checkpoint_stamp(run_dir) != before:
        return None
    if created:  # only this run wrote into it
        shutil.rmtree(run_dir)
        return f"nothing was written to {run_dir}"
    if old_config is None:
        config.unlink(missing_ok=True)
    else:
        config.write_bytes(old_config)
    if old_marker is not None:
        folder.restore_marker(run_dir, old_marker)
    return f"{run_dir} is as it was"


def _prepare(cfg: RunConfig, console, fresh: bool) -> RunContext:
    """Every check that touches nothing; returns the context with data and fresh models."""
    from spikecim.data.encode import get_encoder
    from spikecim.train.trainer import resolve_device

    out, run_dir = Path(cfg.output_dir).resolve(), cfg.run_dir.resolve()
    if run_dir.parent != out and not cfg.run_dir.is_symlink():
        raise SpikecimError(
            f"name: {cfg.run_dir} is not a folder directly inside output_dir {cfg.output_dir}"
        )
    for i, name in enumerate(cfg.stages):
        later = [r for r in get_stage(name).requires if r in cfg.stages[i + 1 :]]
        if later:
            raise SpikecimError(f"stages: '{name}' must come after {', '.join(later)}")
    needed = _needs_earlier_results(cfg)
    if fresh and needed:
        stage, users = next(iter(needed.items()))
        raise SpikecimError(
            f"stages: --fresh starts an empty run folder, so {', '.join(users)} needs {stage} among the stages"
        )
    if "train" in cfg.stages:
        resolve_device(cfg.train.device)
    ctx = build_context(cfg, console)
    get_encoder(cfg.data.encoder, frames=bool(getattr(ctx.data, "frames", False)))
    return ctx


def stage_seed(run_seed: int, stage: str) -> int:
    """The global generator's seed while ``stage`` runs: the run seed and the stage's name."""
    return (run_seed * 1_000_003 + zlib.crc32(stage.encode())) % 2**63


def _run_stage(ctx: RunContext, name: str, write: bool) -> None:
    stage = get_stage(name)
    if ctx.console is not None:
        ctx.console.rule(f"[bold]{name}[/bold] {stage.description}")
    t0 = time.perf_counter()
    # torch seeds its global generator at random in every process: anything a stage draws from
    # it (the crossbar read noise outside a seeded block, a library's own draws) would change
    # from run to run. Each stage runs with it seeded from the run seed and the stage's name,
    # in a forked state, so the same command gives the same files and runs stay independent.
    with seeded(stage_seed(ctx.config.seed, name)):
        result = stage.fn(ctx)
    if not isinstance(result, stage.result_type):
        try:
            result = stage.result_type.model_validate(result)
        except ValidationError as e:
            raise SpikecimError(one_line_validation_error(e, prefix=f"stage '{name}' result: ")) from None
    bad = first_non_finite(result.model_dump(exclude_unset=True), name)
    if bad is not None:
        raise SpikecimError(
            f"stage '{name}': {bad[0]} is {bad[1]}, not a finite number; metrics.json is left as it was"
        )
    ctx.metrics[name] = result
    ctx.metrics.setdefault("timing_s", {})[name] = time.perf_counter() - t0
    if write:
        write_metrics(ctx)


def _typed_metrics(raw: dict) -> dict:
    """A ``metrics.json`` read back (:func:`~spikecim.readers.read_metrics`): each stage's entry
    as its typed result where it fits (others kept as they are, so no earlier result is lost),
    ``timing_s`` as it is."""
    out = {}
    for k, v in raw.items():
        out[k] = v if k == "timing_s" else (read_result(k, v) or v)
    return out


def _checkpoint_stamp(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of each training-state file: what changes when an epoch is saved."""
    out = {}
    for f in (run_dir / "checkpoint").glob("*.state.json"):
        st = f.stat()
        out[f.name] = (st.st_mtime_ns, st.st_size)
    return out


def _interrupted_line(cfg: RunConfig, done: list[str], unchanged: str | None) -> str:
    """One line for Ctrl-C: what was saved, and how to go on."""
    if unchanged is not None:
        return f"interrupted before anything new was saved: {unchanged}"
    names = {v.name for v in cfg.variants}

    def n(v: str) -> int:
        return cfg.train_for(cfg.variant(v)).epochs if v in names else cfg.train.epochs

    saved = [
        f"epochs 1-{k} of {n(v)} of the {v}" if k > 1 else f"epoch 1 of {n(v)} of the {v}"
        for v, k in trained_epochs(cfg.run_dir).items()
        if k > 0
    ]
    parts = []
    if saved:
        parts.append(f"{', '.join(saved)} saved in {cfg.run_dir / 'checkpoint'}")
    if done:
        parts.append(f"stages {', '.join(done)} recorded in {cfg.run_dir / 'metrics.json'}")
    return f"interrupted: {'; '.join(parts) or 'nothing saved'}; run the same command to resume"


def load_run(
    run_dir: str | Path, console=None, variants: list[str] | None = None, allow_partial: bool = False
) -> RunContext:
    """Rebuild a finished run: config, data, models with their trained weights (of
    ``variants`` only when given: the others are left out of ``ctx.models``), its results.

    A run whose training was interrupted is refused (see :func:`check_trained`) unless
    ``allow_partial``; then each partly trained variant is named in a warning. The traced
    workloads are read from ``workload*.json`` when first asked for: evaluating or tracing
    again does not need them, a damaged one is refused where it is used.
    """
    from spikecim.train.checkpoint import load_variant_weights

    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    cfg = cfg.model_copy(update={"output_dir": str(run_dir.parent), "name": run_dir.name})
    ctx = build_context(cfg, console)
    if variants is not None:
        for v in variants:
            cfg.variant(v)  # an unknown name fails here, naming the allowed ones
        ctx.models = {v: m for v, m in ctx.models.items() if v in variants}
    for note in check_trained(run_dir, cfg, list(ctx.models), allow_partial):
        warn(console, f"{note} (--allow-partial)")
    for v, m in ctx.models.items():
        load_variant_weights(m, run_dir / "checkpoint", v)
        ctx.models[v] = deploy_model(m.eval(), cfg.variant(v).methods)
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        ctx.metrics = _typed_metrics(read_metrics(metrics, "run"))
    ctx.workloads = _SavedWorkloads(cfg, run_dir)
    return ctx


def load_workloads(cfg: RunConfig, run_dir: Path) -> dict:
    """The traced workloads of the run's variants found in ``run_dir`` (see
    :func:`~spikecim.variants.workload_filename`), all read now."""
    saved = _SavedWorkloads(cfg, run_dir)
    return {v: saved[v] for v in saved}


class _SavedWorkloads(MutableMapping):
    """The traced workloads of a run folder by variant, each read from its ``workload*.json``
    the first time it is asked for (a damaged file is refused then, naming it). A workload set
    here (the trace stage's) replaces the file's; the keys are the variants that have either."""

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        self._files = {v.name: Path(run_dir) / workload_filename(cfg.variants, v.name) for v in cfg.variants}
        self._held: dict = {}

    def __getitem__(self, variant: str):
        from spikecim.trace.workload import Workload

        if variant not in self._held:
            if variant not in self:
                raise KeyError(variant)
            self._held[variant] = Workload.load(self._files[variant])
        return self._held[variant]

    def __setitem__(self, variant: str, workload) -> None:
        self._held[variant] = workload

    def __delitem__(self, variant: str) -> None:
        if variant not in self:
            raise KeyError(variant)
        self._held.pop(variant, None)
        self._files.pop(variant, None)

    def __contains__(self, variant: object) -> bool:
        return variant in self._held or (variant in self._files and self._files[variant].is_file())

    def __iter__(self) -> Iterator[str]:
        yield from (v for v in self._files if v in self)
        yield from (v for v in self._held if v not in self._files)

    def __len__(self) -> int:
        return sum(1 for _ in self)
