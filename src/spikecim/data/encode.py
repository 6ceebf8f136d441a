"""Spike encoders: ``x[B, ...]`` in [0, 1] -> ``[T, B, ...]``.

- ``direct``: the analog value repeated at every step (the first layer does the encoding).
- ``rate``: Bernoulli spikes with probability x at every step (seeded generator).
- ``latency``: time-to-first-spike, one spike at step round((1 - x) * (T - 1)) for x > 0
  (brighter inputs fire earlier); zero inputs never fire.
"""

from __future__ import annotations

from typing import Callable

import torch

from spikecim.errors import SpikecimError

__all__ = ["direct", "rate", "latency", "get_encoder", "ENCODERS"]


def direct(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x.unsqueeze(0).expand(steps, *x.shape)


def rate(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    p = x.clamp(0, 1).unsqueeze(0).expand(steps, *x.shape)
    return torch.bernoulli(p, generator=generator)


def latency(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    x = x.clamp(0, 1)
    t_fire = torch.round((1 - x) * (steps - 1)).long()
    t = torch.arange(steps, device=x.device).view(steps, *([1] * x.dim()))
    return ((t == t_fire.unsqueeze(0)) & (x.unsqueeze(0) > 0)).to(x.dtype)


ENCODERS: dict[str, Callable[..., torch.Tensor]] = {"direct": direct, "rate": rate, "latency": latency}


def get_encoder(name: str) -> Callable[..., torch.Tensor]:
    if name not in ENCODERS:
        raise SpikecimError(f"data.encoder: unknown '{name}', allowed: {', '.join(ENCODERS)}")
    return ENCODERS[name]
