"""Checkpoints: weights in safetensors, the rest of the training state in JSON.

One checkpoint of a variant is three files::

    <dir>/<variant>.epoch<k>.<sha>.safetensors         model state_dict (weights and buffers)
    <dir>/<variant>.epoch<k>.<sha>.optim.safetensors   optimizer tensors (e.g. Adam moments)
    <dir>/<variant>.state.json                         epoch completed, history, scheduler and
                                                       optimizer scalars, a fingerprint of the
                                                       config, and ``files``: the names and
                                                       SHA-256 of the two tensor files

(``<sha>`` is the first 12 hex digits of the file's SHA-256.) A save commits atomically:
the epoch's two tensor files are written under their new names (each to a temporary name,
flushed to disk with ``fsync``, renamed), then ``state.json`` is replaced in one
``os.replace``, then the previous epoch's files are removed. An interruption at any point
(Ctrl-C, SIGKILL, power loss) leaves ``state.json`` naming either the complete previous
epoch or the complete new one, never a mix; files it does not name are left-overs that the
next save removes. Loading follows ``state.json`` and checks each file against its SHA-256.
In a run folder each write and removal also goes to the folder's manifest
(:func:`spikecim.pipeline.folder.write_file`, recorded before the file is written), so
``--fresh`` knows the files for spikecim's; a file the manifest does not record as
spikecim's (one a user placed under a checkpoint's name) is never removed.

A folder written before this layout (``<variant>.safetensors``, ``<variant>.optim.safetensors``
and a ``state.json`` without ``files``) still loads and resumes; its next save moves it to
this layout. Weights placed by hand as ``<variant>.safetensors`` without a ``state.json``
are taken as they are for evaluation; training refuses to start beside them
(:func:`refuse_weights_placed_by_hand`: it would start from the seed's initial weights, not
from them), and no save ever removes them.

Nothing is unpickled on load. Every file is checked before anything is restored:
``state.json`` against :class:`TrainingState` (``0 <= epoch <= train.epochs``, one history
row per epoch, finite numbers) and its optimizer and scheduler settings against the
structure of the fresh ones; each safetensors file must be readable, hold every key with
the model's shapes and only finite values, and match its recorded SHA-256. A damaged
checkpoint is a one-line :class:`SpikecimError` naming the file and what is wrong, never a
traceback and never a silent resume.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
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
from safetensors.torch import save as safetensors_bytes

from spikecim.errors import SpikecimError, first_line, one_line_validation_error
from spikecim.pipeline import folder
from spikecim.readers import read_bytes, read_mapping

__all__ = [
    "TrainingState",
    "checkpoint_writes",
    "load_checkpoint",
    "load_variant_weights",
    "load_weights",
    "refuse_weights_placed_by_hand",
    "remove_stale",
    "save_checkpoint",
    "trained_weights",
    "weights_path",
    "write_durably",
]

# Scheduler fields that change as training goes on; the others follow from the config.
_SCHEDULER_PROGRESS = ("last_epoch", "_step_count", "_last_lr")
# --fresh clears only files spikecim wrote, as written (spikecim.pipeline.folder): one changed
# since, a damaged checkpoint say, must be moved out first
_ADVICE = "start training again with --fresh (move out first any file changed since spikecim wrote it) or choose another --name"


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


class _FileRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\.safetensors$")
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")


class _Files(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weights: _FileRecord
    optimizer: _FileRecord


class TrainingState(BaseModel):
    """The schema of ``<variant>.state.json``; ``epochs`` in the validation context bounds ``epoch``.

    ``files`` is absent in checkpoints written before the atomic layout."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    epoch: StrictInt = Field(ge=0)
    history: list[_HistoryRow]
    fingerprint: StrictStr
    optimizer: _OptimizerMeta
    scheduler: dict[str, Any] | None
    files: _Files | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TrainingState:
        epochs = (info.context or {}).get("epochs")
        if epochs is not None and self.epoch > epochs:
            raise ValueError(f"epoch {self.epoch} is past train.epochs = {epochs}")
        numbers = [h.epoch for h in self.history]
        if len(numbers) != self.epoch or numbers != list(range(1, self.epoch + 1)):
            raise ValueError(f"history must hold one row for each of epochs 1..{self.epoch}")
        return self


def weights_path(ckpt_dir: Path, variant: str) -> Path:
    """The weights file of ``variant``'s committed checkpoint: the one its ``state.json`` names,
    else ``<variant>.safetensors`` (older layout, or weights placed by hand)."""
    return _committed(Path(ckpt_dir), variant)[0]


def trained_weights(ckpt_dir: Path, variant: str) -> Path | None:
    """The weights file of ``variant``'s committed checkpoint, or None where there is none (no
    ``state.json`` and no ``<variant>.safetensors``).

    A damaged checkpoint (a ``state.json`` that cannot be read or does not fit its schema, or
    the weights file it names missing) is the one-line error that resuming it gives, naming
    the file: never taken for a missing checkpoint."""
    ckpt_dir = Path(ckpt_dir)
    try:
        path = weights_path(ckpt_dir, variant)
    except SpikecimError as e:
        raise SpikecimError(e, advice=_ADVICE) from None
    if path.is_file():
        return path
    if (ckpt_dir / f"{variant}.state.json").exists():
        raise SpikecimError(f"checkpoint: {path} is missing", advice=_ADVICE)
    return None


def refuse_weights_placed_by_hand(ckpt_dir: Path, variant: str) -> None:
    """Refuse to train ``variant`` beside weights placed by hand (``<variant>.safetensors``
    without a ``state.json``): training starts from the seed's initial weights, not from them,
    and its checkpoint would take their place."""
    ckpt_dir = Path(ckpt_dir)
    placed = ckpt_dir / f"{variant}.safetensors"
    if placed.exists() and not (ckpt_dir / f"{variant}.state.json").exists():
        raise SpikecimError(
            f"checkpoint: {placed} holds weights placed by hand (no {variant}.state.json), which training "
            "does not start from; leave train out of the stages to use them as they are, or move the file "
            f"out of {ckpt_dir} to train the {variant} from scratch"
        )


def save_checkpoint(ckpt_dir: Path, variant: str, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Save everything needed to continue training after ``state["epoch"]``, atomically.

    The writes of :func:`checkpoint_writes` are made in order with :func:`write_durably`
    (``state.json`` last: the commit), then :func:`remove_stale` drops the previous epoch's files,
    and the fixed-name files of a checkpoint of the older layout (named by the ``state.json``
    this save replaced) go too.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    older = _older_layout(ckpt_dir, variant)
    for name, data in checkpoint_writes(variant, model, optimizer, scheduler, state):
        write_durably(ckpt_dir / name, data)
    remove_stale(ckpt_dir, variant)
    for f in older:
        folder.remove_file(f)
    if older:
        folder.fsync_dir(ckpt_dir)


def checkpoint_writes(
    variant: str, model, optimizer, scheduler, state: dict[str, Any]
) -> list[tuple[str, bytes]]:
    """The files one save writes, in the order it writes them: ``(file name, content)`` for the
    weights, the optimizer tensors, and last ``<variant>.state.json``, which names the other two."""
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flat_optimizer(optimizer.state_dict())
    epoch = int(state["epoch"])
    writes, files = [], {}
    for kind, tensors, suffix in (("weights", weights, ""), ("optimizer", opt_tensors, ".optim")):
        data = safetensors_bytes(tensors)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{variant}.epoch{epoch}.{digest[:12]}{suffix}.safetensors"
        writes.append((name, data))
        files[kind] = {"name": name, "sha256": digest}
    full = dict(
        state, files=files, optimizer=opt_meta, scheduler=scheduler.state_dict() if scheduler else None
    )
    writes.append((f"{variant}.state.json", json.dumps(full, indent=1).encode()))
    return writes


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: a temporary file, ``fsync``, a rename, and an
    ``fsync`` of the folder so the rename itself survives a power loss (in a run folder,
    recorded in its manifest first: :func:`spikecim.pipeline.folder.write_file`)."""
    folder.write_file(Path(path), data, durable=True)


def remove_stale(ckpt_dir: Path, variant: str) -> None:
    """Remove ``variant``'s checkpoint files that its ``state.json`` does not name: earlier
    epochs, an interrupted save's files and temporary files. Nothing is removed while
    ``state.json`` cannot be read, and the fixed names ``<variant>.safetensors`` and
    ``<variant>.optim.safetensors`` never are: they may hold weights placed by hand."""
    ckpt_dir = Path(ckpt_dir)
    try:
        weights, optim, _ = _committed(ckpt_dir, variant)
    except SpikecimError:
        return
    keep = {weights.name, optim.name}
    for f in ckpt_dir.iterdir():
        name = f.name
        stale = (_EPOCH_FILE.fullmatch(name) is not None and name.startswith(f"{variant}.epoch")) or (
            name.startswith(f"{variant}.") and name.endswith(".tmp")
        )
        if stale and name not in keep and f.is_file() and not f.is_symlink():
            folder.remove_file(f)
    folder.fsync_dir(ckpt_dir)


def load_weights(model, path: Path) -> None:
    """Load a safetensors state_dict into ``model``: every key present, the model's shapes, finite values."""
    path = Path(path)
    if not path.exists():
        raise SpikecimError(f"checkpoint: no weights at {path}")
    model.load_state_dict(_checked_tensors(path, model.state_dict()))


def load_variant_weights(model, ckpt_dir: Path, variant: str) -> None:
    """Load the weights of ``variant``'s committed checkpoint in ``ckpt_dir`` into ``model``
    (the file its ``state.json`` names, checked against the recorded SHA-256)."""
    weights, _, hashes = _committed(Path(ckpt_dir), variant)
    if not weights.exists():
        raise SpikecimError(f"checkpoint: no weights at {weights}")
    sha = None if hashes is None else (hashes[0], Path(ckpt_dir) / f"{variant}.state.json")
    try:
        tensors = _checked_tensors(weights, model.state_dict(), sha)
    except SpikecimError as e:
        if hashes is None:  # weights placed by hand: --fresh would not clear them
            raise
        raise SpikecimError(e, advice=_ADVICE) from None
    model.load_state_dict(tensors)


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
        raise SpikecimError(e, advice=_ADVICE) from None


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
    fresh_sched = scheduler.state_dict() if scheduler else None
    _same_structure(state.scheduler, fresh_sched, state_file, "scheduler")
    scheduled = ("lr",) if fresh_sched is not None else ()  # without a schedule, lr is a setting
    for i, (saved, fresh) in enumerate(zip(groups, fresh_opt["param_groups"], strict=True)):
        _same_settings(saved, fresh, scheduled, state_file, f"optimizer.param_groups.{i}")
    if fresh_sched is not None:
        _same_settings(state.scheduler, fresh_sched, _SCHEDULER_PROGRESS, state_file, "scheduler")
        for i, (group, last_lr) in enumerate(zip(groups, state.scheduler["_last_lr"], strict=True)):
            if group["lr"] != last_lr:
                raise SpikecimError(
                    f"checkpoint: {state_file}: optimizer.param_groups.{i}.lr is {group['lr']!r}, "
                    f"the scheduler's last learning rate is {last_lr!r}"
                )
        if state.scheduler["last_epoch"] != state.epoch:
            raise SpikecimError(
                f"checkpoint: {state_file}: scheduler.last_epoch is {state.scheduler['last_epoch']}, "
                f"the epoch is {state.epoch}"
            )
    if state.files is None:  # the layout before atomic checkpoints: fixed names, no hashes
        w_path, o_path = ckpt_dir / f"{variant}.safetensors", ckpt_dir / f"{variant}.optim.safetensors"
        w_sha = o_sha = None
    else:
        w_path, o_path = ckpt_dir / state.files.weights.name, ckpt_dir / state.files.optimizer.name
        w_sha, o_sha = (state.files.weights.sha256, state_file), (state.files.optimizer.sha256, state_file)
    weights = _checked_tensors(w_path, model.state_dict(), w_sha)
    opt_tensors = _checked_optimizer(
        o_path, state_file, state.optimizer, fresh_opt["param_groups"], model, o_sha
    )
    model.load_state_dict(weights)
    meta = state.optimizer.model_dump()
    optimizer.load_state_dict(_unflat_optimizer(opt_tensors, meta))
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    out = state.model_dump()
    out["history"] = [dict(h) for h in data["history"]]
    del out["optimizer"], out["scheduler"], out["files"]
    return out


def _committed(ckpt_dir: Path, variant: str) -> tuple[Path, Path, tuple[str, str] | None]:
    """The weights and optimizer files of the committed checkpoint and their SHA-256 (None for
    the older layout and for weights without a ``state.json``). A ``state.json`` that does not
    fit :class:`TrainingState` (an empty one too) is an error naming it."""
    state_file = ckpt_dir / f"{variant}.state.json"
    plain = (ckpt_dir / f"{variant}.safetensors", ckpt_dir / f"{variant}.optim.safetensors", None)
    if not state_file.exists():
        return plain
    data = read_mapping(state_file, "checkpoint", "with epoch, history, optimizer and scheduler")
    try:
        files = TrainingState.model_validate(data).files
    except ValidationError as e:
        raise SpikecimError(f"checkpoint: {state_file}: {one_line_validation_error(e)}") from None
    if files is None:
        return plain
    return (
        ckpt_dir / files.weights.name,
        ckpt_dir / files.optimizer.name,
        (files.weights.sha256, files.optimizer.sha256),
    )


def _older_layout(ckpt_dir: Path, variant: str) -> tuple[Path, ...]:
    """The fixed-name files of ``variant``'s checkpoint when its ``state.json`` is one of the
    layout before atomic checkpoints (it names them); nothing otherwise, and never weights
    placed by hand without a ``state.json``."""
    if not (ckpt_dir / f"{variant}.state.json").exists():
        return ()
    try:
        weights, optim, hashes = _committed(ckpt_dir, variant)
    except SpikecimError:
        return ()
    return (weights, optim) if hashes is None else ()


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of ``path`` and the file's SHA-256, read into memory (never mapped: a file
    cut short cannot crash us)."""
    if not path.is_file():
        raise SpikecimError(f"checkpoint: {path} is missing")
    raw = read_bytes(path, "checkpoint")
    try:
        return load_safetensors(raw), hashlib.sha256(raw).hexdigest()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - safetensors' Rust panics are BaseExceptions
        raise SpikecimError(
            f"checkpoint: {path} is not a readable safetensors file ({first_line(e)[:120]})"
        ) from None


def _checked_tensors(
    path: Path, expected: dict[str, torch.Tensor], sha: tuple[str, Path] | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of ``path`` if they are exactly the keys and shapes of ``expected``, all
    finite, and (``sha``: the SHA-256 and the state file recording it) the file unchanged."""
    tensors, digest = _read_safetensors(path)
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
    _same_digest(path, digest, sha)
    return tensors


def _same_digest(path: Path, digest: str, sha: tuple[str, Path] | None) -> None:
    if sha is not None and digest != sha[0]:
        raise SpikecimError(f"checkpoint: {path} does not match the SHA-256 recorded in {sha[1]}")


def _checked_optimizer(
    path: Path,
    state_file: Path,
    meta: _OptimizerMeta,
    fresh_groups: list[dict],
    model,
    sha: tuple[str, Path] | None = None,
) -> dict[str, torch.Tensor]:
    """The optimizer tensors of ``path``: keys ``<param id>.<name>`` of known parameters, shapes,
    finite, the file unchanged (see :func:`_checked_tensors`)."""
    tensors, digest = _read_safetensors(path)
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
            _finite_scalar(meta.scalars[key], state_file, key)  # scalars live in state.json
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
    _same_digest(path, digest, sha)
    return tensors


def _finite(t: torch.Tensor, path: Path, key: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise SpikecimError(f"checkpoint: {path} holds NaN or infinite values in '{key}'")


def _finite_scalar(v: Any, path: Path, key: str) -> None:
    """An optimizer value that is not a tensor: a finite number, or None (e.g. SGD's
    ``momentum_buffer`` without momentum)."""
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpikecimError(f"checkpoint: {path} holds '{key}' = {v!r}, not a finite number")
    if not math.isfinite(v):
        raise SpikecimError(f"checkpoint: {path} holds a NaN or infinite '{key}'")


def _same_settings(saved: dict, fresh: dict, progress: tuple[str, ...], path: Path, where: str) -> None:
    """Settings the run's config fixes (every value outside ``progress``: numbers, flags such as
    Adam's ``maximize``, tuples such as its ``betas``) must equal the fresh ones; numbers that
    training moves (``progress``) must not be negative."""
    for key, value in fresh.items():
        if key in progress:
            moved = saved[key] if isinstance(saved[key], list) else [saved[key]]
            if any(isinstance(v, int | float) and v < 0 for v in moved):
                raise SpikecimError(f"checkpoint: {path}: {where}.{key} is negative")
        elif _as_json(saved[key]) != _as_json(value):
            raise SpikecimError(
                f"checkpoint: {path}: {where}.{key} is {saved[key]!r}, the run's settings give {_as_json(value)!r}"
            )


def _as_json(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), to compare a saved setting with a fresh one."""
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


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


_EPOCH_FILE = re.compile(r"[A-Za-z0-9_-]+\.epoch\d+\.[0-9a-f]{12}(\.optim)?\.safetensors")


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
