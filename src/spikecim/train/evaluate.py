"""Evaluation: accuracy and per-layer activity of a model on a data set.

``spike_rates`` maps each neuron layer to its mean activity per neuron per step: the firing
rate for a spiking neuron, the share of non-zero outputs for a ReLU of an ANN twin (the
activity an event-driven accelerator would see).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spikecim.nn import TemporalModule
from spikecim.train.batches import iterate_batches, to_model_input

__all__ = ["activity_modules", "evaluate", "predict"]


def activity_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The neurons of a model (spiking neurons or the ReLUs of its ANN twin), by name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU) or (isinstance(m, TemporalModule) and hasattr(m, "forward_with_mem")):
            out[name] = m
    return out


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class decision from per-step logits ``[T, B, classes]``: argmax of the mean over steps."""
    return logits.mean(0).argmax(-1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    encoder: str = "direct",
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    frames: bool = False,
) -> dict:
    """Accuracy of ``model`` on ``(x, y)`` and the mean activity of every neuron layer.

    ``forward`` replaces ``model(inputs)`` (e.g. an analog copy of the model) when given;
    ``frames`` marks ``x`` as spike frames ``[N, T, ...]`` (see :func:`to_model_input`).
    """
    spiking = bool(getattr(model, "spiking", True))
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, m in activity_modules(model).items():

        def hook(mod, inp, out, name=name):
            sums[name] = sums.get(name, 0.0) + float(
                (out != 0).sum() if isinstance(mod, nn.ReLU) else out.sum()
            )
            counts[name] = counts.get(name, 0) + out.numel()

        hooks.append(m.register_forward_hook(hook))
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    try:
        for xb, yb in iterate_batches(x, y, batch_size):
            inp = to_model_input(xb, steps, encoder, spiking, gen, frames).to(device)
            logits = (forward or model)(inp)
            correct += int((predict(logits).cpu() == yb).sum())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {
        "accuracy": correct / max(1, len(y)),
        "samples": len(y),
        "spike_rates": {k: sums[k] / counts[k] for k in sums if counts[k]},
    }
