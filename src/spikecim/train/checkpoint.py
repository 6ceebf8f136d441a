"""Checkpoints: weights in safetensors, the rest of the training state in JSON.

``<dir>/<variant>.safetensors``         model state_dict (weights and buffers)
``<dir>/<variant>.optim.safetensors``   optimizer tensors (e.g. Adam moments)
``<dir>/<variant>.state.json``          epoch completed, history, scheduler and optimizer
                                        scalars, a fingerprint of the config

Nothing is unpickled on load. Files are written to a temporary name and renamed, so an
interruption leaves the previous complete checkpoint in place.

Every file is checked before anything is restored: ``state.json`` against
:class:`TrainingState` (``0 <= epoch <= train.epochs``, one history row per epoch, finite
numbers) and its optimizer and scheduler settings against the structure of the fresh ones;
each safetensors file must be readable, hold every key with the model's shapes and only
finite values. A damaged checkpoint is a one-line :class:`SpikecimError` naming the file and
what is wrong, never a traceback and never a silent resume.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping

__all__ = ["TrainingState", "load_checkpoint", "load_weights", "save_checkpoint", "weights_path"]

# Scheduler fields that change as training goes on; the others follow from the config.
_SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "_last_lr")
_ADVICE = "start training again with --fresh or choose another --name"


class _HistoryRow(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    epoch: StrictInt = Field(ge=1)
    loss: float
    train_acc: float = Field(ge=0.0, le=1.0)
    test_acc: float | None = Field(ge=0.0, le=1.0)
    lr: float = Field(ge=0.0)
    seconds: float = Field(ge=0.0)


class _OptimizerMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    param_groups: list[dict[str, Any]] = Field(min_length=1)
    scalars: dict[str, Any]


class TrainingState(BaseModel):
    """The schema of ``<variant>.state.json``; ``epochs`` in the validation context bounds ``epoch``."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    epoch: StrictInt = Field(ge=0)
    history: list[_HistoryRow]
    fingerprint: StrictStr
    optimizer: _OptimizerMeta
    scheduler: dict[str, Any] | None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TrainingState:
        epochs = (info.context or {}).get("epochs")
        if epochs is not None and self.epoch > epochs:
            raise ValueError(f"epoch {self.epoch} is past train.epochs = {epochs}")
        if [h.epoch for h in self.history] != list(range(1, self.epoch + 1)):
            raise ValueError(f"history must hold one row for each of epochs 1..{self.epoch}")
        return self


def weights_path(ckpt_dir: Path, variant: str) -> Path:
    return Path(ckpt_dir) / f"{variant}.safetensors"


def save_checkpoint(ckpt_dir: Path, variant: str, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Save everything needed to continue training after ``state["epoch"]``."""
    import json

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(weights_path(ckpt_dir, variant), lambda p: save_file(weights, str(p)))
    opt_tensors, opt_meta = _flat_optimizer(optimizer.state_dict())
    _atomic(ckpt_dir / f"{variant}.optim.safetensors", lambda p: save_file(opt_tensors, str(p)))
    full = dict(state, optimizer=opt_meta, scheduler=scheduler.state_dict() if scheduler else None)
    _atomic(ckpt_dir / f"{variant}.state.json", lambda p: p.write_text(json.dumps(full, indent=1)))


def load_weights(model, path: Path) -> None:
    """Load a safetensors state_dict into ``model``: every key present, the model's shapes, finite values."""
    path = Path(path)
    if not path.exists():
        raise SpikecimError(f"checkpoint: no weights at {path}")
    model.load_state_dict(_checked_tensors(path, model.state_dict()))


def load_checkpoint(
    ckpt_dir: Path,
    variant: str,
    model,
    optimizer,
    scheduler,
    epochs: int | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any] | None:
    """Restore a checkpoint into the given objects; returns its state, or None if absent.

    ``epochs`` (the run's ``train.epochs``) bounds the epoch a checkpoint may have reached;
    ``fingerprint`` must equal the one the checkpoint was written with. Everything is
    checked before the model, optimizer or scheduler is touched.
    """
    ckpt_dir = Path(ckpt_dir)
    state_file = ckpt_dir / f"{variant}.state.json"
    if not state_file.exists():
        return None
    try:
        return _restore(ckpt_dir, variant, model, optimizer, scheduler, epochs, fingerprint)
    except SpikecimError as e:
        raise SpikecimError(f"{e}; {_ADVICE}") from None


def _restore(
    ckpt_dir: Path, variant: str, model, optimizer, scheduler, epochs, fingerprint
) -> dict[str, Any]:
    state_file = ckpt_dir / f"{variant}.state.json"
    data = read_mapping(state_file, "checkpoint", "with epoch, history, optimizer and scheduler")
    written_with = data.get("fingerprint")
    if fingerprint is not None and isinstance(written_with, str) and written_with != fingerprint:
        raise SpikecimError(f"checkpoint: {ckpt_dir} was written with other training settings")
    try:
        state = TrainingState.model_validate(data, context={"epochs": epochs})
    except ValidationError as e:
        raise SpikecimError(f"checkpoint: {state_file}: {one_line_validation_error(e)}") from None
    fresh_opt = optimizer.state_dict()
    groups = state.optimizer.param_groups
    _same_structure(groups, fresh_opt["param_groups"], state_file, "optimizer.param_groups")
    for i, (saved, fresh) in enumerate(zip(groups, fresh_opt["param_groups"], strict=True)):
        _same_settings(saved, fresh, ("lr",), state_file, f"optimizer.param_groups.{i}")
    fresh_sched = scheduler.state_dict() if scheduler else None
    _same_structure(state.scheduler, fresh_sched, state_file, "scheduler")
    if fresh_sched is not None:
        _same_settings(state.scheduler, fresh_sched, _SCHEDULER_PROGRESS, state_file, "scheduler")
        if state.scheduler["last_epoch"] != state.epoch:
            raise SpikecimError(
                f"checkpoint: {state_file}: scheduler.last_epoch is {state.scheduler['last_epoch']}, "
                f"the epoch is {state.epoch}"
            )
    weights = _checked_tensors(weights_path(ckpt_dir, variant), model.state_dict())
    opt_path = ckpt_dir / f"{variant}.optim.safetensors"
    opt_tensors = _checked_optimizer(opt_path, state_file, state.optimizer, fresh_opt["param_groups"], model)
    model.load_state_dict(weights)
    meta = state.optimizer.model_dump()
    optimizer.load_state_dict(_unflat_optimizer(opt_tensors, meta))
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    out = state.model_dump()
    out["history"] = [dict(h) for h in data["history"]]
    del out["optimizer"], out["scheduler"]
    return out


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, read into memory (never mapped: a file cut short cannot crash us)."""
    if not path.is_file():
        raise SpikecimError(f"checkpoint: {path} is missing")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpikecimError(f"checkpoint: cannot read {path} ({e.strerror})") from None
    try:
        return load_safetensors(raw)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - safetensors' Rust panics are BaseExceptions
        first = (str(e).splitlines() or [e.__class__.__name__])[0][:120]
        raise SpikecimError(f"checkpoint: {path} is not a readable safetensors file ({first})") from None


def _checked_tensors(path: Path, expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` if they are exactly the keys and shapes of ``expected``, all finite."""
    tensors = _read_safetensors(path)
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise SpikecimError(
            f"checkpoint: {path} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise SpikecimError(
                f"checkpoint: {path} holds '{key}' of shape {list(got.shape)}, the model's is {list(want.shape)}"
            )
        _finite(got, path, key)
    return tensors


def _checked_optimizer(
    path: Path, state_file: Path, meta: _OptimizerMeta, fresh_groups: list[dict], model
) -> dict[str, torch.Tensor]:
    """The optimizer tensors of ``path``: keys ``<param id>.<name>`` of known parameters, shapes, finite."""
    tensors = _read_safetensors(path)
    saved_ids = [pid for g in meta.param_groups for pid in g["params"]]
    if not all(isinstance(pid, int) and not isinstance(pid, bool) for pid in saved_ids):
        raise SpikecimError(
            f"checkpoint: {state_file}: optimizer.param_groups holds a parameter id that is not an integer"
        )
    # torch numbers the parameters 0, 1, ... in group order: saved id -> the model's parameter.
    current = [p for p in model.parameters() if p.requires_grad]
    fresh_ids = [pid for g in fresh_groups for pid in g["params"]]
    by_index = {saved: current[fresh] for saved, fresh in zip(saved_ids, fresh_ids, strict=True)}
    names: dict[int, set[str]] = {}
    for key, value in [*tensors.items(), *((k, None) for k in meta.scalars)]:
        pid_text, _, name = key.partition(".")
        if not pid_text.isdigit() or int(pid_text) not in by_index or not name:
            raise SpikecimError(
                f"checkpoint: {path} holds '{key}', which names no parameter of the optimizer"
            )
        names.setdefault(int(pid_text), set()).add(name)
        if value is None:
            _finite_scalar(meta.scalars[key], path, key)
            continue
        param = by_index[int(pid_text)]
        if value.dim() > 0 and tuple(value.shape) != tuple(param.shape):
            raise SpikecimError(
                f"checkpoint: {path} holds '{key}' of shape {list(value.shape)}, the parameter's is {list(param.shape)}"
            )
        _finite(value, path, key)
    every = set().union(*names.values()) if names else set()
    for pid, held in names.items():
        if held != every:
            raise SpikecimError(f"checkpoint: {path} lacks '{pid}.{min(every - held)}'")
    return tensors


def _finite(t: torch.Tensor, path: Path, key: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise SpikecimError(f"checkpoint: {path} holds NaN or infinite values in '{key}'")


def _finite_scalar(v: Any, path: Path, key: str) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise SpikecimError(f"checkpoint: {path} holds a NaN or infinite '{key}'")


def _same_settings(saved: dict, fresh: dict, progress: tuple[str, ...], path: Path, where: str) -> None:
    """Settings the run's config fixes (numbers and lists of numbers outside ``progress``) must
    equal the fresh ones; numbers that training moves (``progress``) must not be negative."""
    for key, value in fresh.items():
        if key in progress:
            moved = saved[key] if isinstance(saved[key], list) else [saved[key]]
            if any(isinstance(v, int | float) and v < 0 for v in moved):
                raise SpikecimError(f"checkpoint: {path}: {where}.{key} is negative")
        elif isinstance(value, int | float | list) and not isinstance(value, bool) and saved[key] != value:
            raise SpikecimError(
                f"checkpoint: {path}: {where}.{key} is {saved[key]!r}, the run's settings give {value!r}"
            )


def _same_structure(saved: Any, fresh: Any, path: Path, where: str) -> None:
    """Raise unless ``saved`` has the fresh object's keys, lengths and kinds of value (numbers finite)."""

    def bad(what: str):
        return SpikecimError(f"checkpoint: {path}: {where} {what}")

    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            raise bad("must be a mapping")
        for k, v in fresh.items():
            if k not in saved:
                raise bad(f"lacks '{k}'")
            _same_structure(saved[k], v, path, f"{where}.{k}")
    elif isinstance(fresh, list | tuple):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise bad(f"must be a list of {len(fresh)}")
        for i, (s, f) in enumerate(zip(saved, fresh, strict=True)):
            _same_structure(s, f, path, f"{where}.{i}")
    elif isinstance(fresh, bool):
        if not isinstance(saved, bool):
            raise bad("must be true or false")
    elif isinstance(fresh, int | float):
        if isinstance(saved, bool) or not isinstance(saved, int | float) or not math.isfinite(saved):
            raise bad("must be a finite number")
    elif isinstance(fresh, str):
        if not isinstance(saved, str):
            raise bad("must be text")
    elif fresh is None and (
        isinstance(saved, dict | list) or (isinstance(saved, float) and not math.isfinite(saved))
    ):
        raise bad("must be a single value")


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def _flat_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in opt_state["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": opt_state["param_groups"], "scalars": scalars}


def _unflat_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in list(tensors.items()) + list(meta["scalars"].items()):
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}
