"""``spikegpt-tiny``: SpikeGPT, a spiking RWKV language model, on the CPU.

Zhu et al., "SpikeGPT: Generative Pre-trained Language Model with Spiking Neural Networks"
(2023), ``ridgerchu/SpikeGPT`` (``src/model.py``); docs/references.md#spikegpt.

Block: ``x += LIF(SRWKV(LN x))``; ``x += LIF(SRFFN(LN x))``, the LIF neurons (spikecim's,
``model.neuron``: τ = 2 is β = 0.5, θ = 1, arctan surrogate α = 2) stepping over the token
axis of the time-major ``[L, B, D]``: tokens are time.

- token shift with learned mixes: ``x^k_t = μ_k ⊙ x_t + (1 − μ_k) ⊙ x_{t−1}`` (likewise
  ``v``, ``r``; ``x_{−1} = 0``);
- SRWKV: ``k = W_k x^k``, ``v = W_v x^v``, ``r = W_r x^r``; the WKV recurrence with
  ``w = −exp(decay)`` and bonus ``u`` (:func:`~spikecim.nn.recurrence.wkv`; the fused CPU
  kernel, or the token loop with ``wkv_backend="reference"``); output ``W_o(σ(r) ⊙ wkv)``;
- SRFFN: ``σ(W_r x^r) ⊙ W_v(ReLU(W_k x^k)²)``, hidden ``4d``;
- the embedding is binarised: Heaviside forward, arctan surrogate backward.

The ANN twin (``spiking=False``) has the same topology with ReLU in place of each LIF and an
embedding that is not binarised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.models._registry import make_activation, register_model
from spikecim.models.lm._common import TokenModel, check_backend, check_size
from spikecim.nn.linear import Linear
from spikecim.nn.recurrence import wkv
from spikecim.nn.surrogate import atan

__all__ = ["SpikeGPT", "token_shift"]


def token_shift(x: torch.Tensor) -> torch.Tensor:
    """``x_{t−1}`` for every token of ``x[L, B, D]`` (zeros before the first)."""
    return F.pad(x, (0, 0, 0, 0, 1, -1))


def _mix(d_model: int, layer: int, layers: int, power: float = 1.0) -> torch.Tensor:
    """RWKV's initial token-shift mix: ``(c/d)^(power·(1 − layer/layers))`` per channel ``c``."""
    ratio = 1.0 - layer / layers
    return (torch.arange(d_model, dtype=torch.float32) / d_model) ** (power * ratio)


class TimeMix(nn.Module):
    """SRWKV: token shift, ``k, v, r`` projections, the WKV recurrence, ``W_o(σ(r) ⊙ wkv)``."""

    def __init__(self, d_model: int, layer: int, layers: int, wkv_backend: str = "auto") -> None:
        super().__init__()
        self.wkv_backend = wkv_backend
        self.recurrent_state = ("wkv", 3 * d_model)  # a, b, p, read and written every token (the tracer)
        ratio = layer / max(1, layers - 1)
        c = torch.arange(d_model, dtype=torch.float32) / max(1, d_model - 1)
        self.time_decay = nn.Parameter(-5 + 8 * c ** (0.7 + 1.3 * ratio))  # RWKV-4's initialisation
        zigzag = (torch.arange(d_model) + 1) % 3 - 1
        self.time_first = nn.Parameter(torch.full((d_model,), 0.3).log() + 0.5 * zigzag)
        self.mix_k = nn.Parameter(_mix(d_model, layer, layers))
        self.mix_v = nn.Parameter(_mix(d_model, layer, layers) + 0.3 * ratio)
        self.mix_r = nn.Parameter(_mix(d_model, layer, layers, 0.5))
        self.key = Linear(d_model, d_model, bias=False)
        self.value = Linear(d_model, d_model, bias=False)
        self.receptance = Linear(d_model, d_model, bias=False)
        self.output = Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = token_shift(x)
        k = self.key(self.mix_k * x + (1 - self.mix_k) * prev)
        v = self.value(self.mix_v * x + (1 - self.mix_v) * prev)
        r = self.receptance(self.mix_r * x + (1 - self.mix_r) * prev)
        return self.output(
            torch.sigmoid(r) * wkv(-torch.exp(self.time_decay), self.time_first, k, v, self.wkv_backend)
        )


class ChannelMix(nn.Module):
    """SRFFN: ``σ(W_r x^r) ⊙ W_v(ReLU(W_k x^k)²)``."""

    def __init__(self, d_model: int, layer: int, layers: int) -> None:
        super().__init__()
        self.mix_k = nn.Parameter(_mix(d_model, layer, layers))
        self.mix_r = nn.Parameter(_mix(d_model, layer, layers))
        self.key = Linear(d_model, 4 * d_model, bias=False)
        self.value = Linear(4 * d_model, d_model, bias=False)
        self.receptance = Linear(d_model, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev = token_shift(x)
        k = torch.relu(self.key(self.mix_k * x + (1 - self.mix_k) * prev)) ** 2
        r = torch.sigmoid(self.receptance(self.mix_r * x + (1 - self.mix_r) * prev))
        return r * self.value(k)


class Block(nn.Module):
    def __init__(self, d_model: int, layer: int, layers: int, act, wkv_backend: str = "auto") -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.att = TimeMix(d_model, layer, layers, wkv_backend)
        self.act1 = act()
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = ChannelMix(d_model, layer, layers)
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.act1(self.att(self.ln1(x)))  # the neuron steps over the tokens
        return x + self.act2(self.ffn(self.ln2(x)))


class Embedding(nn.Module):
    """The embedding, binarised in the spiking model, ``[L, B] -> [L, B, D]`` (the model's
    embedding, shared)."""

    def __init__(self, embed: nn.Embedding, spiking: bool) -> None:
        super().__init__()
        self.embed = embed
        self.spiking = spiking
        self.binarise = atan(2.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        return self.binarise(x) if self.spiking else x  # Heaviside(x) forward, arctan surrogate backward


class SpikeGPT(TokenModel):
    def __init__(
        self,
        vocab: int,
        context: int,
        d_model: int,
        layers: int,
        spiking: bool,
        act,
        wkv_backend: str = "auto",
    ) -> None:
        super().__init__(vocab, context)
        self.spiking = spiking
        self.embed = nn.Embedding(vocab, d_model)
        nn.init.uniform_(self.embed.weight, -1e-4, 1e-4)  # RWKV's embedding initialisation
        self.binarise = atan(2.0)
        self.blocks = nn.ModuleList(Block(d_model, i, layers, act, wkv_backend) for i in range(layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = Linear(d_model, vocab, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.check_tokens(tokens)
        x = self.embed(tokens)
        if self.spiking:
            x = self.binarise(x)  # Heaviside(x) forward, arctan surrogate backward
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))

    def reconstruction_blocks(self) -> list[tuple[str, nn.Module]]:
        """Embedding, each RWKV block, final norm and head: in order, the model
        (:mod:`spikecim.quant.blocks`)."""
        return [
            ("embed", Embedding(self.embed, self.spiking)),
            *((f"blocks.{i}", b) for i, b in enumerate(self.blocks)),
            ("head", nn.Sequential(self.ln_out, self.head)),
        ]


@register_model("spikegpt-tiny", task="lm")
def spikegpt_tiny(
    spiking: bool = True,
    num_classes: int = 256,
    in_channels: int = 1,
    input_size: int = 64,
    d_model: int = 128,
    layers: int = 2,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
    wkv_backend: str = "auto",
) -> SpikeGPT:
    """``wkv_backend``: ``"auto"`` (the fused CPU kernel where it runs) or ``"reference"``
    (the token loop), see :func:`spikecim.nn.recurrence.wkv`."""
    check_size("spikegpt-tiny", d_model=d_model, layers=layers)
    check_backend("wkv_backend", wkv_backend)
    act = make_activation(spiking, neuron, **(neuron_kw or {}))
    return SpikeGPT(num_classes, input_size, d_model, layers, spiking, act, wkv_backend)
