"""Mixup and CutMix of training batches: mixed inputs with soft targets.

- **Mixup** (Zhang et al., ICLR 2018): ``x = λ·x + (1 − λ)·x'``, targets
  ``λ·y + (1 − λ)·y'`` (one-hot), λ ~ Beta(α, α) with ``train.mixup_alpha: α``.
- **CutMix** (Yun et al., ICCV 2019): a box of x' pasted into x, its sides
  ``√(1 − λ)·(H, W)`` around a uniformly drawn centre, clipped at the borders, λ ~ Beta(α, α)
  with ``train.cutmix_alpha: α``, then set to the share of x the box left (so the targets
  weigh what the image shows).

The partner x' of every sample is the batch reversed, one λ per batch (timm's ``Mixup`` in
its default batch mode). With both α > 0 each batch takes one of the two with probability ½.
λ, the box and the choice come from the generator given (the trainer's epoch generator), so
a resumed run mixes the same batches. Event frames ``[T, C, H, W]`` are mixed alike in every
frame of a sample.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["mix_batch"]


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x mixed, soft targets [B, num_classes])`` of a batch ``x[B, ..., H, W]`` with labels
    ``y[B]``; at least one α must be positive."""
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    partner = x.flip(0)
    if use_cutmix:
        x, lam = _cutmix(x, partner, lam, rng)
    else:
        x = lam * x + (1.0 - lam) * partner  # float inputs: the trainer refuses mixup of others
    onehot = F.one_hot(y, num_classes).float()
    return x, lam * onehot + (1.0 - lam) * onehot.flip(0)


def _cutmix(x: torch.Tensor, partner: torch.Tensor, lam: float, rng: np.random.Generator):
    h, w = x.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
    return x, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
