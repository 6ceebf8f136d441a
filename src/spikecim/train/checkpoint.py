"""Checkpoints: weights in safetensors, the rest of the training state in JSON.

``<dir>/<variant>.safetensors``         model state_dict (weights and buffers)
``<dir>/<variant>.optim.safetensors``   optimizer tensors (e.g. Adam moments)
``<dir>/<variant>.state.json``          epoch completed, history, scheduler and optimizer
                                        scalars, a fingerprint of the config

Nothing is unpickled on load. Files are written to a temporary name and renamed, so an
interruption leaves the previous complete checkpoint in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from spikecim.errors import SpikecimError

__all__ = ["load_checkpoint", "load_weights", "save_checkpoint", "weights_path"]


def weights_path(ckpt_dir: Path, variant: str) -> Path:
    return Path(ckpt_dir) / f"{variant}.safetensors"


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


def save_checkpoint(ckpt_dir: Path, variant: str, model, optimizer, scheduler, state: dict[str, Any]) -> None:
    """Save everything needed to continue training after ``state["epoch"]``."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    _atomic(weights_path(ckpt_dir, variant), lambda p: save_file(weights, str(p)))
    opt_tensors, opt_meta = _flat_optimizer(optimizer.state_dict())
    _atomic(ckpt_dir / f"{variant}.optim.safetensors", lambda p: save_file(opt_tensors, str(p)))
    full = dict(state, optimizer=opt_meta, scheduler=scheduler.state_dict() if scheduler else None)
    _atomic(ckpt_dir / f"{variant}.state.json", lambda p: p.write_text(json.dumps(full, indent=1)))


def load_weights(model, path: Path) -> None:
    """Load a safetensors state_dict into ``model`` (strict: names and shapes must match)."""
    path = Path(path)
    if not path.exists():
        raise SpikecimError(f"checkpoint: no weights at {path}")
    try:
        tensors = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise SpikecimError(
            f"checkpoint: {path} is not a readable safetensors file ({e.__class__.__name__})"
        ) from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise SpikecimError(
            f"checkpoint: {path.name} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_checkpoint(ckpt_dir: Path, variant: str, model, optimizer, scheduler) -> dict[str, Any] | None:
    """Restore a checkpoint into the given objects; returns its state, or None if absent."""
    ckpt_dir = Path(ckpt_dir)
    state_file = ckpt_dir / f"{variant}.state.json"
    if not state_file.exists():
        return None
    state = json.loads(state_file.read_text())
    load_weights(model, weights_path(ckpt_dir, variant))
    opt_tensors = load_file(str(ckpt_dir / f"{variant}.optim.safetensors"))
    optimizer.load_state_dict(_unflat_optimizer(opt_tensors, state.pop("optimizer")))
    sched = state.pop("scheduler")
    if scheduler is not None and sched is not None:
        scheduler.load_state_dict(sched)
    return state
