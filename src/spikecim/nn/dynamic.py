"""Dynamic timesteps (DT-SNN): each sample stops at the first step whose output is certain.

Li, Moitra, Geller and Panda, "Input-aware dynamic timestep spiking neural networks for
efficient in-memory computing", DAC 2023 (docs/references.md#dt-snn). After step t the
output is the mean of the per-step logits so far, f_t = (1/t)·Σ_{s≤t} h_s (the paper's
Eq. 1), and a sample stops at the first t where

- ``entropy`` rule: H_t = −(1/log K)·Σ_k p_k log p_k < θ, with p = softmax(f_t) over K classes;
- ``confidence`` rule (as in the related public code SEENN): max_k p_k ≥ θ;

otherwise it runs all T steps. θ = 0 with the entropy rule never stops early (H ≥ 0), so
the network is the static SNN exactly. Without a θ each rule takes its own default
(:data:`DEFAULT_THRESHOLD`): 0.1 for the entropy, 0.9 for the confidence (SEENN's), since a
top probability is at least 1/K and a low θ would stop every sample at its first step.

:class:`DynamicTimesteps` wraps a time-major model ``[T, B, ...] -> [T, B, K]``. While
training it is the model itself (train it with ``train.loss: per_step`` so that every prefix
of time is accurate). In eval mode it returns the per-step logits up to each sample's exit
step and holds the exit output f_e at every later step, so the mean over time of what it
returns, the decoding every spikecim evaluation uses, is the exit output; the accumulated
output of a stopped sample stays what it was when it stopped.
:meth:`DynamicTimesteps.forward_with_exits` also returns each sample's exit step.

The wrapped model is run on all T steps at once (its layers are folded over time); because
an SNN is causal, the outputs up to a sample's exit step are those a step-by-step run that
stopped there would give. What the stopped steps would cost is excluded where cost is
measured: :func:`spikecim.trace.trace` counts activity only over the samples still running.
The method transform ``dt-snn`` (options ``rule``, ``threshold``) wraps a variant's model.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import nn

from spikecim.errors import SpikecimError

__all__ = [
    "DEFAULT_THRESHOLD",
    "RULES",
    "DynamicTimesteps",
    "Exits",
    "exit_steps",
    "hold_after_exit",
    "normalised_entropy",
    "running_mean",
    "top_probability",
]

RULES = ("entropy", "confidence")
Rule = Literal["entropy", "confidence"]
DEFAULT_THRESHOLD = {"entropy": 0.1, "confidence": 0.9}  # θ when none is given


class Exits(NamedTuple):
    """What a dynamic-timestep forward pass returns."""

    output: torch.Tensor  # [T, B, K]: per-step logits up to each exit, the exit output held after
    steps: torch.Tensor  # [B] int64: the steps each sample ran, 1..T


def running_mean(logits: torch.Tensor) -> torch.Tensor:
    """f_t = (1/t)·Σ_{s≤t} h_s for per-step logits ``h[T, B, K]`` (returned ``[T, B, K]``)."""
    t = torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype, device=logits.device)
    return logits.cumsum(0) / t.view(-1, *([1] * (logits.dim() - 1)))


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = −(1/log K)·Σ_k p_k log p_k of p = softmax(logits) over the last axis, in [0, 1]."""
    k = logits.shape[-1]
    if k < 2:
        raise SpikecimError(f"dt-snn: the entropy rule needs at least 2 classes, the output has {k}")
    log_p = torch.log_softmax(logits, -1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(k)


def top_probability(logits: torch.Tensor) -> torch.Tensor:
    """max_k softmax(logits)_k over the last axis."""
    return torch.softmax(logits, -1).amax(-1)


def exit_steps(logits: torch.Tensor, rule: Rule, threshold: float) -> torch.Tensor:
    """The steps each sample runs, ``[B]`` in 1..T: the first t whose running mean f_t meets
    the rule (H_t < θ, or max p ≥ θ), else T."""
    f = running_mean(logits)
    stop = normalised_entropy(f) < threshold if rule == "entropy" else top_probability(f) >= threshold
    stop[-1] = True
    return stop.to(torch.uint8).argmax(0) + 1  # argmax returns the first maximum


def hold_after_exit(logits: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``logits[T, B, K]`` up to each sample's exit step, its exit output f_e after it: the mean
    over T of the result is f_e, and a sample that ran all T steps keeps its logits as they are."""
    T, B = logits.shape[:2]
    f_exit = running_mean(logits)[steps - 1, torch.arange(B, device=logits.device)]
    ran = torch.arange(T, device=logits.device).view(T, 1) < steps.view(1, B)
    return torch.where(ran.view(T, B, *([1] * (logits.dim() - 2))), logits, f_exit.unsqueeze(0))


class DynamicTimesteps(nn.Module):
    """A time-major model that stops each sample early (see the module docstring)."""

    def __init__(self, model: nn.Module, rule: Rule = "entropy", threshold: float | None = None) -> None:
        super().__init__()
        if rule not in RULES:
            raise SpikecimError(f"dt-snn.rule: unknown rule {rule!r}, allowed: {', '.join(RULES)}")
        if threshold is None:
            threshold = DEFAULT_THRESHOLD[rule]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise SpikecimError(f"dt-snn.threshold: must be a number in [0, 1], got {threshold!r}")
        if not getattr(model, "spiking", True):
            raise SpikecimError("dt-snn: applies to spiking variants (an ANN twin runs one step)")
        self.model = model
        self.rule: Rule = rule
        self.threshold = float(threshold)
        # what create_model marks on a model, for the tools that read it (trace, NIR export)
        self.spiking = True
        for key in ("model_name", "input_shape"):
            if hasattr(model, key):
                setattr(self, key, getattr(model, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.model(x)
        return self.forward_with_exits(x).output

    def forward_with_exits(self, x: torch.Tensor) -> Exits:
        """The held output ``[T, B, K]`` and each sample's exit step ``[B]``."""
        logits = self.model(x)
        steps = exit_steps(logits.detach(), self.rule, self.threshold)
        return Exits(hold_after_exit(logits, steps), steps)

    def extra_repr(self) -> str:
        return f"rule={self.rule}, threshold={self.threshold:g}"


def _register() -> None:
    from spikecim.methods import register_method

    @register_method("dt-snn", train={"loss": "per_step"}, changes={"timesteps"})
    def dt_snn(model: nn.Module, rule: Rule = "entropy", threshold: float | None = None) -> nn.Module:
        """Dynamic timesteps: wrap the model in :class:`DynamicTimesteps` (``threshold``: θ,
        by default the rule's own, :data:`DEFAULT_THRESHOLD`); trained with a loss at every
        step unless the variant sets ``train.loss``."""
        return DynamicTimesteps(model, rule, threshold)


_register()
