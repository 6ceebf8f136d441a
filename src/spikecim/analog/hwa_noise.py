"""Weight noise of hardware-aware training (aihwkit-style weight modifiers), drawn in each
training step: ``add_normal`` W + σ·max|W|·N, ``mult_normal`` W·(1 + σ·N), ``pcm`` the PCM
programming noise (docs/references.md#pcm-programming-noise) mapped to weight units,
σ_W = σ_prog(g)/g_max·max|W| with g = |W|/max|W|·g_max, scaled by ``std``. Used by
:mod:`spikecim.analog.mitigation` (noise injected into the weights) and by
:mod:`spikecim.analog.hwa` (noise drawn per tile in the forward with the converters).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from spikecim.analog.devices import PCMDevice
from spikecim.analog.noise import normal_like
from spikecim.schema import Schema

__all__ = ["WeightModifier", "modify_weight", "weight_noise"]


class WeightModifier(Schema):
    """The weight noise of hardware-aware training; the defaults are the run config's
    (``analog.hwa_modifier``, ``analog.hwa_noise_std``): the PCM programming noise as is."""

    kind: Literal["add_normal", "mult_normal", "pcm"] = "pcm"
    std: float = Field(1.0, ge=0, description="noise scale (relative; 1.0 = the PCM model as is for 'pcm')")


def modify_weight(
    w: torch.Tensor, modifier: WeightModifier, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A noisy copy of ``w`` (no gradient through the noise): ``w + weight_noise(w)``."""
    return w.detach() + weight_noise(w, modifier, generator)


def weight_noise(
    w: torch.Tensor,
    modifier: WeightModifier,
    generator: torch.Generator | None = None,
    w_max: torch.Tensor | None = None,
) -> torch.Tensor:
    """The noise ``modifier`` adds to ``w`` (no gradient), its scale max|W| taken over ``w``
    (``w_max``: that maximum when the caller has it already). The normals come from
    spikecim's compiled generator keyed by one draw of ``generator``
    (:func:`spikecim.analog.noise.normal_like`; torch's ``randn`` where it does not run)."""
    n = normal_like(w, generator)
    w = w.detach()
    w_max = (w.abs().amax() if w_max is None else w_max).clamp(min=1e-12)
    if modifier.kind == "add_normal":
        return n.mul_(modifier.std * w_max)  # (std·max|W|)·N, in the draw's memory
    if modifier.kind == "mult_normal":
        return w * (modifier.std * n)
    g_max_us = 25.0  # cancels: σ_W = σ_prog(g)/g_max · max|W| depends on g/g_max only
    sigma_us = PCMDevice().prog_noise_std_us(w.abs() / w_max * g_max_us, g_max_us)
    return modifier.std * sigma_us / g_max_us * w_max * n
