"""MINT's integer-only inference path (docs/quant.md, "MINT's integer path").

:func:`integer_model` turns a model trained with ``mint`` (``integer: true``) into one whose
MINT layers and neurons compute with integers only:

- weights W_int = round(clamp(tanh(W)/α, −1, 1)·n) (int64), the bias b_int = round(b/s);
  a layer outputs the integer current I_int = W_int·S + b_int (spikes S are 0/1);
- the neuron keeps an integer membrane U_int ∈ [−n, n] and a fixed-point accumulator with f
  fractional bits: V = (U_int + I_int) << f, spike when V > θ_acc with the integer
  threshold θ_acc = θ·2^f/s, reset V − S·θ_acc (subtract) or (1 − S)·V (zero), then the
  leak β = 2^−k and the rounding in one rounding shift, U_int = clamp(round(V/2^(f+k)), −n, n)
  (half to even, as ``torch.round``): MINT's U = q(β·(H − S·θ)), H = s + U.

With the step s a power of two every value of the fake-quantised model is a small dyadic
number its float arithmetic holds exactly, so the two paths agree bit for bit. The first
layer (analog input) and the output layer are not MINT layers and run as they are.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as TF
from torch.nn.utils import parametrize

from spikecim.errors import SpikecimError
from spikecim.nn.neurons import Neuron, TemporalModule
from spikecim.ops.conv import output_size
from spikecim.quant.mint import mint_levels, n_levels
from spikecim.quant.transforms import MintMembrane, MintWeight

__all__ = ["IntegerConv2d", "IntegerLIF", "IntegerLinear", "integer_model"]

_MAX_FRACTION_BITS = 24


class IntegerLinear(nn.Module):
    """I_int = S·W_intᵀ + b_int for 0/1 spikes S, in int64."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        out = _as_int_spikes(s) @ self.weight.T
        return out if self.bias is None else out + self.bias


class IntegerConv2d(nn.Module):
    """The convolution of 0/1 spikes with integer weights, as an integer matrix product over
    the unfolded input (int64)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
            raise SpikecimError(
                "integer_model: only ungrouped, zero-padded Conv2d layers with numeric padding"
            )
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.kernel, self.stride, self.padding, self.dilation = (
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
        )

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        _as_int_spikes(s)
        n, _, h, w = s.shape
        cols = TF.unfold(s, self.kernel, self.dilation, self.padding, self.stride).to(torch.int64)
        out = self.weight.reshape(self.weight.shape[0], -1) @ cols
        ho, wo = output_size((h, w), self.kernel, self.stride, self.padding, self.dilation)
        out = out.reshape(n, -1, ho, wo)
        return out if self.bias is None else out + self.bias.reshape(1, -1, 1, 1)


class IntegerLIF(TemporalModule):
    """The MINT neuron on integers (module docstring): ``[T, B, ...]`` int64 currents in,
    0/1 spikes out (in ``dtype``)."""

    def __init__(self, n: int, leak_shift: int, fraction_bits: int, threshold: int, reset: str, dtype):
        super().__init__()
        self.n, self.k, self.f, self.threshold, self.reset, self.dtype = (
            n,
            leak_shift,
            fraction_bits,
            threshold,
            reset,
            dtype,
        )

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        u = torch.zeros_like(current[0])
        spikes = []
        for t in range(current.shape[0]):
            v = (u + current[t]) << self.f
            s = v > self.threshold
            v = v - s.to(v.dtype) * self.threshold if self.reset == "subtract" else torch.where(s, 0, v)
            u = _round_shift(v, self.f + self.k).clamp_(-self.n, self.n)
            spikes.append(s.to(self.dtype))
        return torch.stack(spikes)


def integer_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (trained with ``mint``, ``integer: true``) with every MINT layer
    and neuron on integers; the rest is copied as it is. Bad input: a one-line error."""
    from spikecim.quant.transforms import layer_neuron_pairs

    model = copy.deepcopy(model)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    replace: dict[int, nn.Module] = {}
    for name, layer, neuron in layer_neuron_pairs(model):
        wq = _mint_weight(layer)
        if wq is None:
            continue
        if not wq.integer:
            raise SpikecimError(
                f"integer_model: layer '{name}' was trained with mint integer: false (tanh on the membrane, "
                "a free scale); train with integer: true"
            )
        if neuron is None or not isinstance(neuron.membrane_quant, MintMembrane):
            raise SpikecimError(f"integer_model: layer '{name}' has no MINT neuron after it")
        replace[id(layer)] = _integer_layer(layer, wq)
        replace[id(neuron)] = _integer_neuron(name, neuron, wq, dtype)
    if not replace:
        raise SpikecimError("integer_model: the model has no mint layer")
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in replace:
                setattr(parent, child_name, replace[id(child)])
            elif isinstance(child, nn.modules.batchnorm._BatchNorm) and _follows_integer(
                parent, child_name, replace
            ):
                raise SpikecimError(
                    f"integer_model: BatchNorm '{child_name}' follows a MINT layer; train with integer: true"
                )
    return model


def _mint_weight(layer: nn.Module) -> MintWeight | None:
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    found = [p for p in layer.parametrizations.weight if isinstance(p, MintWeight)]
    return found[0] if found else None


@torch.no_grad()
def _integer_layer(layer: nn.Module, wq: MintWeight) -> nn.Module:
    w_int = mint_levels(layer.parametrizations.weight.original, wq.scale(), wq.bits, "tanh").to(torch.int64)
    bias = getattr(layer, "bias", None)
    b_int = None if bias is None else torch.round(bias / wq.step()).to(torch.int64)
    if isinstance(layer, nn.Linear):
        return IntegerLinear(w_int, b_int)
    if isinstance(layer, nn.Conv2d):
        return IntegerConv2d(w_int, b_int, layer)
    raise SpikecimError(f"integer_model: {type(layer).__name__} layers have no integer path (Linear, Conv2d)")


@torch.no_grad()
def _integer_neuron(name: str, neuron: Neuron, wq: MintWeight, dtype) -> IntegerLIF:
    beta, theta = neuron.beta, neuron.threshold
    if beta.numel() != 1 or theta.numel() != 1:
        raise SpikecimError(f"integer_model: the neuron after '{name}' needs one beta and one threshold")
    mant, exp = math.frexp(float(beta))
    if mant != 0.5 or exp > 1:
        raise SpikecimError(
            f"integer_model: beta must be a power of two (1, 0.5, 0.25, ...) for the leak to be a shift, got {float(beta):g}"
        )
    k = 1 - exp  # beta = 2^-k
    ratio = float(theta) / float(wq.step())  # exact: the step is a power of two
    f = next((f for f in range(_MAX_FRACTION_BITS + 1) if float(ratio * 2**f).is_integer()), None)
    if f is None:
        raise SpikecimError(
            f"integer_model: threshold/step of the neuron after '{name}' ({ratio:g}) needs more than "
            f"{_MAX_FRACTION_BITS} fraction bits"
        )
    return IntegerLIF(n_levels(wq.bits), k, f, int(ratio * 2**f), neuron.reset, dtype)


def _round_shift(v: torch.Tensor, f: int) -> torch.Tensor:
    """round(v / 2^f), half to even, on integers."""
    if f == 0:
        return v
    q = v >> f
    r = v - (q << f)
    half = 1 << (f - 1)
    return q + ((r > half) | ((r == half) & (q & 1 == 1))).to(v.dtype)


def _as_int_spikes(s: torch.Tensor) -> torch.Tensor:
    if not bool(((s == 0) | (s == 1)).all()):
        raise SpikecimError("integer_model: a MINT layer's input must be 0/1 spikes")
    return s.to(torch.int64)


def _follows_integer(parent: nn.Module, child_name: str, replace: dict[int, nn.Module]) -> bool:
    names = [n for n, _ in parent.named_children()]
    i = names.index(child_name)
    return i > 0 and isinstance(getattr(parent, names[i - 1]), (IntegerLinear, IntegerConv2d))
