"""Spike encoders: ``x[B, ...]`` in [0, 1] -> ``[T, B, ...]`` (time-major, ``T = steps``).

- ``direct``: the analog value repeated at every step (the first layer does the encoding).
- ``rate``: Bernoulli spikes with probability x at every step (seeded generator), so the
  spike count over T steps is Binomial(T, x) (Rueckauer et al., Front. Neurosci. 2017).
- ``latency``: time-to-first-spike, one spike at step round((1 - x) * (T - 1)) for x > 0
  (brighter inputs fire earlier); zero inputs never fire.
- ``frames``: for data sets that already are spike frames (``Dataset.frames``, e.g.
  N-MNIST ``[B, T, 2, 34, 34]``): moves time first, ``[B, T, ...] -> [T, B, ...]``, as float.
  ``steps`` must equal the T the frames were binned with.

Use :func:`get_encoder` with ``frames=dataset.frames``: on a frames data set ``direct``
(the default) means "feed the frames as they are" and returns ``frames``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch

from spikecim.errors import SpikecimError

__all__ = ["ENCODERS", "direct", "frames", "get_encoder", "latency", "rate"]


def direct(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return x.unsqueeze(0).expand(_check_steps(steps), *x.shape)


def rate(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    p = x.clamp(0, 1).unsqueeze(0).expand(_check_steps(steps), *x.shape)
    return torch.bernoulli(p, generator=generator)


def latency(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    x = x.clamp(0, 1)
    t_fire = torch.round((1 - x) * (_check_steps(steps) - 1)).long()
    t = torch.arange(steps, device=x.device).view(steps, *([1] * x.dim()))
    return ((t == t_fire.unsqueeze(0)) & (x.unsqueeze(0) > 0)).to(x.dtype)


def frames(x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    if x.dim() < 2 or x.shape[1] != _check_steps(steps):
        held = x.shape[1] if x.dim() >= 2 else "no"
        raise SpikecimError(
            f"data.timesteps: the frames hold {held} steps per sample but {steps} were asked; set them equal"
        )
    out = x.transpose(0, 1)
    return out if out.is_floating_point() else out.float()


ENCODERS: dict[str, Callable[..., torch.Tensor]] = {
    "direct": direct,
    "rate": rate,
    "latency": latency,
    "frames": frames,
}
_STATIC = ("direct", "rate", "latency")
_FOR_FRAMES = ("frames", "direct")


def get_encoder(name: str, frames: bool = False) -> Callable[..., torch.Tensor]:
    """The encoder ``name``; ``frames=True`` for a data set of spike frames (``Dataset.frames``)."""
    allowed = _FOR_FRAMES if frames else _STATIC
    if name not in allowed:
        kind = "a frames data set (already spikes over time)" if frames else "static images"
        raise SpikecimError(
            f"data.encoder: '{name}' is not an encoder for {kind}, allowed: {', '.join(allowed)}"
        )
    return ENCODERS["frames"] if frames else ENCODERS[name]


def _check_steps(steps: int) -> int:
    # expand() reads -1 as "keep the size": a negative T would silently give one step.
    n = None if isinstance(steps, bool) or not hasattr(steps, "__index__") else operator.index(steps)
    if n is None or n < 1:
        raise SpikecimError(f"data.timesteps: must be a positive integer, got {steps!r}")
    return n
