"""Losses over per-step logits ``[T, B, classes]``.

- ``mean``: cross-entropy of the logits averaged over steps (rate-decoded output).
- ``per_step``: the mean over t of the cross-entropy at every step, so the output is
  accurate at every prefix of time (needed for dynamic-timestep inference, DT-SNN:
  Li et al., DAC 2023; docs/references.md#dt-snn). It is the cross-entropy term of the
  temporal efficient training loss (TET: Deng et al., ICLR 2022), ``(1/T)·Σ_t CE(O_t, y)``,
  which the DT-SNN authors' public early-exit code trains with (SEENN, ``utils.py``
  ``TET_loss``, called by ``train_snn.py``).
- :func:`with_tet_mse`: TET's whole loss, ``(1 − λ)·loss + λ·MSE(O, φ)`` with the MSE over
  every per-step output (``train.tet_lambda``: λ, ``train.tet_means``: φ; the TET and SEENN
  code use λ = 10⁻³, φ = 1), added to ``per_step`` by the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["classification_loss", "with_tet_mse"]


def classification_loss(
    logits: torch.Tensor, y: torch.Tensor, mode: str = "mean", label_smoothing: float = 0.0
) -> torch.Tensor:
    """The loss of ``mode`` for per-step logits ``[T, B, classes]`` and labels ``y[B]`` (or
    soft targets ``y[B, classes]``, as mixup gives), the targets smoothed by
    ``label_smoothing`` ε: cross-entropy against (1 − ε)·target + ε/classes (Szegedy et al.,
    CVPR 2016; torch's ``cross_entropy(label_smoothing=ε)``)."""
    if mode == "mean":
        return F.cross_entropy(logits.mean(0), y, label_smoothing=label_smoothing)
    if mode == "per_step":
        steps = logits.shape[0]
        every = y.repeat(steps, *[1] * (y.dim() - 1))  # the targets of step 0, then of step 1, ...
        return F.cross_entropy(logits.flatten(0, 1), every, label_smoothing=label_smoothing)
    raise ValueError(f"train.loss: unknown '{mode}', allowed: mean, per_step")


def with_tet_mse(loss: torch.Tensor, out: torch.Tensor, lamb: float, means: float) -> torch.Tensor:
    """TET's loss from its cross-entropy term ``loss``: ``(1 − lamb)·loss + lamb·MSE(out, means)``,
    the mean squared distance of every per-step output to ``means``."""
    return (1.0 - lamb) * loss + lamb * F.mse_loss(out, torch.full_like(out, means))
