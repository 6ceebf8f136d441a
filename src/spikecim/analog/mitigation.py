"""Mitigation: hardware-aware training, batch-norm fine-tuning on the crossbar.

- **Hardware-aware training** (``hwa_train``): the digital model trains with noise injected
  into every programmed weight (each operator of :mod:`spikecim.ops` that has one) at each step (aihwkit-style weight modifiers, gradient
  taken at the noisy weights, update applied to the clean ones):
  ``add_normal`` W + σ·max|W|·N, ``mult_normal`` W·(1 + σ·N), ``pcm`` the PCM programming
  noise (docs/references.md#pcm-programming-noise) mapped to weight units,
  σ_W = σ_prog(g)/g_max·max|W| with g = |W|/max|W|·g_max, scaled by ``std``. With
  ``converters`` (:class:`~spikecim.analog.hwa_config.HwaConverters`: DAC, ADC, output
  bound, learned input range, tiles, weight clipping) the training forward also runs the
  crossbar's periphery, as aihwkit-lightning 2.1 does (:mod:`spikecim.analog.hwa`). The weight
  noise itself is :mod:`spikecim.analog.hwa_noise`.
- **Batch-norm fine-tuning** (``bn_finetune``): with the weights frozen on the programmed
  crossbar, only the BatchNorm affine parameters (γ, β: :func:`bn_parameters`) are trained
  on a small calibration set, through the noisy analog forward pass (the batch-norm
  optimisation method against IMC hardware noise). The running mean and variance are not
  trained but re-estimated on the way: the BatchNorm layers run in training mode, so each
  calibration batch moves them by the layer's momentum (an exponential moving average of
  the statistics seen through the crossbar).
- **Drift compensation** is a crossbar setting (``drift_compensation.enabled``), applied in
  :mod:`spikecim.analog.tiles`.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops
from spikecim.analog.evaluate import _inputs
from spikecim.analog.hwa import clip_weights, digital_layers, hwa_layers
from spikecim.analog.hwa_config import HwaConverters
from spikecim.analog.hwa_noise import WeightModifier, modify_weight, weight_noise
from spikecim.errors import SpikecimError
from spikecim.train.evaluate import ModelInput

__all__ = [
    "WeightModifier",
    "bn_finetune",
    "bn_parameters",
    "bn_running_stats",
    "hwa_optimizer",
    "hwa_step",
    "hwa_train",
    "modify_weight",
    "weight_noise",
]


def _loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, inputs: ModelInput, generator: torch.Generator
) -> torch.Tensor:
    logits = inputs.decode(model(inputs.encode(x, generator)))
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())  # [B, classes], or [B, L, vocabulary] (lm)


def hwa_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    modifier: WeightModifier | None = None,
    epochs: int = 2,
    lr: float = 1e-3,
    timesteps: int | None = 1,
    encoder: str | ModelInput = "direct",
    batch_size: int = 64,
    seed: int = 0,
    converters: HwaConverters | None = None,
) -> nn.Module:
    """A copy of the digital ``model`` fine-tuned with weight noise (module docstring), and
    with the ``converters`` in its forward when they are on (:mod:`spikecim.analog.hwa`).

    ``timesteps`` and ``encoder`` as in :func:`~spikecim.analog.evaluate.accuracy`; one
    generator seeded with ``seed`` draws the shuffling, the weight noise and the encoding.
    The copy returned is digital again (the learned input ranges are not kept)."""
    inputs = _inputs(timesteps, encoder)
    modifier = modifier or WeightModifier()
    converters = converters or HwaConverters()
    if epochs < 0:
        raise SpikecimError(f"analog.hwa_epochs: must be >= 0, got {epochs}")
    model = copy.deepcopy(model)
    if not ops.programmed_layers(model):
        raise SpikecimError("hwa_train: the model has no layer with programmed weights (linear or conv)")
    gen = torch.Generator().manual_seed(seed)
    if converters.in_forward:
        hwa_layers(model, converters, modifier, gen)
    opt = hwa_optimizer(list(model.parameters()), lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            hwa_step(model, opt, x[idx], y[idx], modifier, inputs, gen, converters)
    model.eval()
    return digital_layers(model)


def hwa_optimizer(params: list[torch.Tensor], lr: float) -> torch.optim.Adam:
    """The Adam optimiser of :func:`hwa_train`: torch's fused kernel (one pass per parameter
    instead of one per Adam operation; the same update up to float rounding) where every
    parameter is a CPU or CUDA floating-point tensor, else the per-operation one."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def hwa_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    modifier: WeightModifier | None,
    inputs: ModelInput,
    gen: torch.Generator | None,
    converters: HwaConverters | None = None,
) -> None:
    """One step of :func:`hwa_train` on ``model``'s programmed weights; ``gen`` draws the
    input encoding and the noise injected here.

    Converters off: ``modifier``'s noise goes into the programmed weights (None: no noise),
    the forward and backward run at the noisy weights, the clean weights come back, the
    optimiser updates them; a parametrised weight gets its noise after its parametrisations
    (:func:`_noisy_weights`). Converters on (``model``'s layers wrapped by :func:`spikecim.analog.hwa.hwa_layers`):
    the layers draw the noise in their forward with their own modifier and generator, and
    ``modifier`` is not read. Then, with ``weight_clip_sigma``, every programmed weight is
    clipped (:func:`spikecim.analog.hwa.clip_weights`)."""
    converters = converters or HwaConverters()
    inject = not converters.in_forward and modifier is not None
    opt.zero_grad()
    with _noisy_weights(model, modifier, gen) if inject else contextlib.nullcontext():
        _loss(model, x, y, inputs, gen).backward()
    opt.step()
    if converters.weight_clip_sigma is not None:
        clip_weights(model, converters.weight_clip_sigma)


class _Noise(nn.Module):
    """The last parametrisation of a parametrised weight for one step: the step's noise added."""

    def __init__(self, noise: torch.Tensor):
        super().__init__()
        self.noise = noise

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.noise


@contextlib.contextmanager
def _noisy_weights(model: nn.Module, modifier: WeightModifier, gen: torch.Generator | None):
    """Every programmed weight of ``model`` with ``modifier``'s noise, drawn in module order,
    until the block ends. A plain weight takes it in place (restored after); a parametrised
    one (``torch.nn.utils.parametrize``: a pruning mask, fake quantisation) as a last
    parametrisation, so the noise lands on the weight the layer computes, as the crossbar
    programs it: a pruned weight gets its noise too, a quantised one its noise unrounded."""
    plain: list[tuple[torch.Tensor, torch.Tensor]] = []
    wrapped: list[nn.Module] = []
    try:
        with torch.no_grad():
            for _, m, w in ops.programmed_layers(model):
                noise = weight_noise(w, modifier, gen)
                if parametrize.is_parametrized(m, "weight"):
                    parametrize.register_parametrization(m, "weight", _Noise(noise))
                    wrapped.append(m)
                else:
                    plain.append((w, w.detach().clone()))
                    w.add_(noise)
        yield
    finally:
        with torch.no_grad():
            for w, clean in plain:
                w.copy_(clean)
        for m in wrapped:
            del m.parametrizations["weight"][-1]


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters :func:`bn_finetune` trains: every BatchNorm layer's affine γ and β
    (2 per channel; none for a layer built with ``affine=False``)."""
    return [p for m in _batchnorms(model) for p in m.parameters()]


def bn_running_stats(model: nn.Module) -> int:
    """How many running-statistic values :func:`bn_finetune` re-estimates (mean and variance,
    2 per channel of every BatchNorm layer that tracks them)."""
    return sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in _batchnorms(model)
        if m.running_mean is not None and m.running_var is not None
    )


def bn_finetune(
    analog_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int = 3,
    lr: float = 1e-2,
    timesteps: int | None = 1,
    encoder: str | ModelInput = "direct",
    batch_size: int = 64,
    seed: int = 0,
) -> nn.Module:
    """Retrain only BatchNorm affine parameters (:func:`bn_parameters`) of a programmed analog
    model on ``(x, y)``, in place, re-estimating the running statistics on the way; crossbar
    weights stay frozen. Returns the model (unchanged when it has no BatchNorm)."""
    inputs = _inputs(timesteps, encoder)
    bns = _batchnorms(analog_model)
    if not bns:
        return analog_model
    params = bn_parameters(analog_model)
    frozen = {id(p) for p in params}
    flags = {p: p.requires_grad for p in analog_model.parameters()}
    for p in analog_model.parameters():
        p.requires_grad_(id(p) in frozen)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    analog_model.eval()
    for m in bns:
        m.train()
    try:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                if len(idx) < 2:
                    continue
                opt.zero_grad()
                _loss(analog_model, x[idx], y[idx], inputs, gen).backward()
                opt.step()
    finally:
        for p, f in flags.items():
            p.requires_grad_(f)
        analog_model.eval()
    return analog_model
