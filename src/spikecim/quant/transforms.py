"""Quantisation-aware training as method transforms (:mod:`spikecim.methods`; docs/quant.md).

- ``mint`` (``bits``, ``integer``): MINT (docs/references.md#mint). Every synaptic layer
  followed by a neuron, except the first (it reads the encoded input, not spikes), gets a
  learnable scale α (:class:`MintWeight`, a parametrisation of its weight) that also
  quantises the membrane of its neuron (:class:`MintMembrane`, injected into the neuron's
  step after the same-step reset). ``integer: true`` trains the integer-compatible variant:
  a clamp instead of tanh on the membrane, a power-of-two step α/n, the bias on the same
  step and no BatchNorm between the layer and its neuron; :func:`spikecim.quant.integer.
  integer_model` then runs it with integers only.
- ``weight-qat`` (``bits``): every synaptic layer's weight fake-quantised to ``bits``
  (symmetric, per tensor, scale max|W|/(2^(b−1) − 1), straight-through inside the range).
- ``squat`` (``bits``, ``levels``, ``lower_limit``, ``upper_limit``): SQUAT
  (docs/references.md#squat): every neuron's membrane snapped after each update to the
  levels of snnTorch's ``state_quant``.

``mint`` and ``squat`` both quantise the membrane, ``mint`` and ``weight-qat`` both the
weights: either pair is refused by the aspects each declares (``changes``,
:func:`spikecim.methods.check_combination`); ``weight-qat`` with ``squat`` combine. Each transform sets
the bits the tracer records (``weight_bits`` on the layer, ``membrane_bits`` on the neuron).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.methods import register_method
from spikecim.nn.neurons import Neuron
from spikecim.quant.functional import fake_quantize
from spikecim.quant.mint import (
    mint_alpha_init,
    mint_quantize,
    mint_step_quantize,
    n_levels,
    power_of_two_step,
)
from spikecim.quant.squat import StateQuantizer, state_levels

__all__ = ["MintBias", "MintMembrane", "MintWeight", "UniformWeight", "layer_neuron_pairs"]


class MintWeight(nn.Module):
    """The weight parametrisation of one MINT layer; holds the layer's α (the one copy)."""

    def __init__(self, weight: torch.Tensor, bits: int, integer: bool = False):
        super().__init__()
        self.bits, self.integer = bits, integer
        self.alpha = nn.Parameter(mint_alpha_init(weight, bits))

    def scale(self) -> torch.Tensor:
        """α as the quantiser uses it: n·s with a power-of-two step s in integer mode."""
        return power_of_two_step(self.alpha, self.bits) * n_levels(self.bits) if self.integer else self.alpha

    def step(self) -> torch.Tensor:
        """s = α/n, the value of one integer level."""
        return self.scale() / n_levels(self.bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return mint_quantize(w, self.scale(), self.bits, "tanh")


class MintBias(nn.Module):
    """The bias on the layer's step s, unclamped (integer mode): round(b/s)·s."""

    def __init__(self, weight_q: MintWeight):
        super().__init__()
        self._owner = (weight_q,)  # a reference: α is stored once, with the weight

    def forward(self, b: torch.Tensor) -> torch.Tensor:
        s = self._owner[0].step()
        return b + (torch.round(b / s) * s - b).detach()


class MintMembrane:
    """The membrane quantiser injected into a MINT neuron's step: the layer's α (a reference,
    stored with the layer), tanh then clamp (paper), or the clamp on a power-of-two step."""

    def __init__(self, weight_q: MintWeight):
        self.weight_q = weight_q

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        wq = self.weight_q
        if wq.integer:
            return mint_step_quantize(v, wq.step(), wq.bits)
        return mint_quantize(v, wq.alpha, wq.bits, "tanh")


class UniformWeight(nn.Module):
    """Symmetric per-tensor fake quantisation, scale max|W|/(2^(b−1) − 1)."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        qmax = 2 ** (self.bits - 1) - 1
        scale = w.detach().abs().max().clamp(min=torch.finfo(w.dtype).tiny) / qmax
        return fake_quantize(w, scale, 0, -qmax, qmax)


def layer_neuron_pairs(model: nn.Module) -> list[tuple[str, nn.Module, Neuron | None]]:
    """Synaptic operators in module order, each with the neuron that follows it (before the
    next operator), or None (the output layer)."""
    pairs: list[list] = []
    for name, m in model.named_modules():
        if ops.find(m) is not None:
            pairs.append([name, m, None])
        elif isinstance(m, Neuron) and pairs and pairs[-1][2] is None:
            pairs[-1][2] = m
    return [tuple(p) for p in pairs]


@register_method("mint", changes={"weight-quant", "membrane-quant"})
def mint(model: nn.Module, bits: int = 2, integer: bool = False) -> nn.Module:
    """MINT (module docstring)."""
    n_levels(bits)
    if not isinstance(integer, bool):
        raise SpikecimError(f"mint.integer: must be true or false, got {integer!r}")
    pairs = layer_neuron_pairs(model)
    chosen = [(name, layer, neuron) for name, layer, neuron in pairs[1:] if neuron is not None]
    if not chosen:
        raise SpikecimError(
            "mint: the model has no synaptic layer followed by a neuron after its first layer"
        )
    owners: dict[int, str] = {}
    for name, layer, neuron in chosen:
        if id(neuron) in owners:
            raise SpikecimError(
                f"mint: layers '{owners[id(neuron)]}' and '{name}' share one neuron; MINT gives each membrane "
                "the scale of its one layer"
            )
        owners[id(neuron)] = name
        if getattr(neuron, "reset_delay", False):
            raise SpikecimError(
                "mint: needs the same-step reset (MINT quantises the membrane stored after the reset); "
                "set model.neuron.reset_delay: false (or the variant's neuron)"
            )
    if integer:
        _drop_batchnorm(model, {id(layer) for _, layer, _ in chosen})
    for _, layer, neuron in chosen:
        wq = MintWeight(layer.weight, bits, integer)
        parametrize.register_parametrization(layer, "weight", wq)
        if integer and getattr(layer, "bias", None) is not None:
            parametrize.register_parametrization(layer, "bias", MintBias(wq))
        layer.weight_bits = bits
        neuron.membrane_quant = MintMembrane(wq)
        neuron.quantize_after = "reset"
        neuron.membrane_bits = bits
    return model


@register_method("weight-qat", changes={"weight-quant"})
def weight_qat(model: nn.Module, bits: int = 8) -> nn.Module:
    """Uniform weight fake quantisation of every synaptic layer (module docstring)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise SpikecimError(f"weight-qat.bits: must be an integer from 2 to 16, got {bits!r}")
    pairs = layer_neuron_pairs(model)
    for _, layer, _ in pairs:
        parametrize.register_parametrization(layer, "weight", UniformWeight(bits))
        layer.weight_bits = bits
    return model


@register_method("squat", changes={"membrane-quant"})
def squat(
    model: nn.Module,
    bits: int = 4,
    levels: str = "threshold-centred",
    lower_limit: float = 0.0,
    upper_limit: float = 0.2,
) -> nn.Module:
    """SQUAT on every neuron's membrane (module docstring)."""
    neurons = {id(m): m for m in model.modules() if isinstance(m, Neuron)}
    if not neurons:
        raise SpikecimError(
            "squat: the model has no neuron (an ANN variant?); squat applies to spiking variants"
        )
    for neuron in neurons.values():
        th = neuron.threshold
        if isinstance(th, nn.Parameter) or th.numel() != 1:
            raise SpikecimError(
                "squat: needs one fixed threshold per neuron module (its levels are built from it); "
                "drop learn_threshold and per-neuron thresholds"
            )
        lv = state_levels(bits, float(th), levels, lower_limit, upper_limit)
        neuron.membrane_quant = StateQuantizer(lv)
        neuron.quantize_after = "update"
        neuron.membrane_bits = bits
    return model


def _drop_batchnorm(model: nn.Module, layers: set[int]) -> None:
    """Replace each BatchNorm that directly follows one of ``layers`` (ids) in its container
    by Identity: the integer path has no per-channel multiplier (MINT's released VGG-9 has
    no BatchNorm)."""
    for parent in list(model.modules()):
        after_layer = False
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and after_layer:
                setattr(parent, child_name, nn.Identity())
                continue
            after_layer = id(child) in layers
