"""Evaluation: the one path that encodes inputs, runs a model, decodes and scores it.

Training (its test accuracy per epoch), the ``evaluate`` stage, the analog stage and the
analog mitigation passes all go through :class:`ModelInput` (encode ``x[B, ...]`` to what the
model takes, decode its output to logits ``[B, classes]``) and :func:`evaluate`, so a
variant's accuracy is the same number wherever it is computed. Random encoders draw from one
generator seeded once per evaluation, never from torch's global generator.

``spike_rates`` maps each neuron layer to its mean activity per neuron per step: the firing
rate for a spiking neuron, the share of non-zero outputs for a ReLU of an ANN twin (the
activity an event-driven accelerator would see).

A model that stops samples early (:class:`~spikecim.nn.DynamicTimesteps`) also gets
``average_steps``, ``running_per_step[t]`` (the fraction of samples still running at step t),
``exits_per_step[t]`` (the fraction that stop after step t) and ``exit_steps`` (each sample's
steps, in the order of ``x``). Its ``spike_rates`` count all T steps the wrapped model
computes; the cost side counts only the samples still running (:func:`spikecim.trace.trace`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from spikecim.nn import is_spiking_neuron
from spikecim.nn.dynamic import DynamicTimesteps
from spikecim.train.batches import iterate_batches, to_model_input

__all__ = ["ModelInput", "activity_modules", "evaluate", "exit_statistics", "predict", "record_activity"]


@dataclass(frozen=True)
class ModelInput:
    """How a model takes a batch ``x[B, ...]``.

    ``timesteps`` T of a time-major model (``[T, B, ...] -> [T, B, classes]``), or None for a
    plain torch model (``[B, ...] -> [B, classes]``); ``encoder`` the spike encoder of a
    spiking model; ``spiking`` False for an ANN twin (T = 1, the input as is); ``frames``
    marks ``x`` as spike frames ``[B, T, ...]`` (see :func:`~spikecim.train.batches.to_model_input`).
    """

    timesteps: int | None = 1
    encoder: str = "direct"
    spiking: bool = True
    frames: bool = False

    @classmethod
    def from_encoder(cls, timesteps: int | None, encoder: str = "direct") -> ModelInput:
        """The analog API's spelling: ``encoder`` ``"frames"`` (spike frames, time moved
        first) or ``"frames-mean"`` (their mean over time, for an ANN twin) or a spike encoder."""
        if encoder == "frames":
            return cls(timesteps, "direct", True, True)
        if encoder == "frames-mean":
            return cls(1, "direct", False, True)
        return cls(timesteps, encoder)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.timesteps is None:
            return x
        return to_model_input(x, self.timesteps, self.encoder, self.spiking, generator, self.frames)

    @property
    def batch_dim(self) -> int:
        """The batch axis of an encoded input: 0 for ``[B, ...]``, 1 for time-major ``[T, B, ...]``."""
        return 0 if self.timesteps is None else 1

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, classes]``: the mean over time of a time-major output."""
        return out if self.timesteps is None else out.mean(0)


def activity_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The neurons of a model (spiking neurons or the ReLUs of its ANN twin), by name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.ReLU) or is_spiking_neuron(m):
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
    steps: int | None | ModelInput = 1,
    encoder: str = "direct",
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str = "cpu",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    frames: bool = False,
) -> dict:
    """Accuracy of ``model`` on ``(x, y)`` and the mean activity of every neuron layer.

    ``steps`` is a :class:`ModelInput`, or its ``timesteps`` with ``encoder`` and ``frames``
    (spiking as ``model.spiking`` says). The encoder's randomness comes from a generator
    seeded with ``seed``, drawn batch after batch. ``forward`` replaces ``model(inputs)``
    (e.g. an analog copy of the model) when given.
    """
    inputs = (
        steps
        if isinstance(steps, ModelInput)
        else ModelInput(steps, encoder, bool(getattr(model, "spiking", True)), frames)
    )
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    correct = 0
    runner = forward or model
    steps: list[torch.Tensor] = []
    try:
        with record_activity(model) as rates:
            for xb, yb in iterate_batches(x, y, batch_size):
                xe = inputs.encode(xb, gen).to(device)
                if isinstance(runner, DynamicTimesteps):
                    out, ran = runner.forward_with_exits(xe)
                    steps.append(ran.cpu())
                else:
                    out = runner(xe)
                logits = inputs.decode(out)
                correct += int((logits.argmax(-1).cpu() == yb).sum())
    finally:
        model.train(was_training)
    result = {
        "accuracy": correct / max(1, y.numel()),  # per decision: a sample, or a token of a text window
        "samples": len(y),
        "spike_rates": dict(rates),
    }
    if steps:
        result.update(exit_statistics(torch.cat(steps), int(inputs.timesteps or 1)))
    return result


@contextmanager
def record_activity(model: nn.Module) -> Iterator[dict[str, float]]:
    """Hooks on every neuron layer of ``model`` while the block runs; the yielded dict holds,
    once the block ends, each layer's mean activity per neuron per call (the firing rate of a
    spiking neuron, the share of non-zero outputs of a ReLU)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, m in activity_modules(model).items():

        def hook(mod, inp, out, name=name):
            out = out[0] if isinstance(out, tuple) else out  # a one-step cell returns (spikes, state)
            sums[name] = sums.get(name, 0.0) + float(
                (out != 0).sum() if isinstance(mod, nn.ReLU) else out.sum()
            )
            counts[name] = counts.get(name, 0) + out.numel()

        hooks.append(m.register_forward_hook(hook))
    rates: dict[str, float] = {}
    try:
        yield rates
    finally:
        for h in hooks:
            h.remove()
        rates.update({k: sums[k] / counts[k] for k in sums if counts[k]})


def exit_statistics(steps: torch.Tensor, timesteps: int) -> dict:
    """``average_steps``, ``running_per_step``, ``exits_per_step`` and ``exit_steps`` of the
    steps each sample ran (``steps[N]`` in 1..T)."""
    n = max(1, len(steps))
    t = torch.arange(1, timesteps + 1)
    return {
        "average_steps": float(steps.double().mean()) if len(steps) else 0.0,
        "running_per_step": [float((steps >= k).sum()) / n for k in t],
        "exits_per_step": [float((steps == k).sum()) / n for k in t],
        "exit_steps": [int(s) for s in steps],
    }
