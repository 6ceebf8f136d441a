"""``spikformer-tiny``: a spiking transformer (Zhou et al. 2023, "Spikformer: When Spiking
Neural Network Meets Transformer", ICLR), on ``x[T, B, C, H, W]``.

    x0  = BN(Conv(stride patch)(image)) + position                 tokens [T, B, N, D]
    block, ``depth`` times (Spikformer's residual blocks):
        a = SSA(x);  x = x + a;  x = x + MLP(x),   MLP = SN(BN(SN(BN(x W1)) W2))
    logits = Linear(mean over tokens of SN(x))                     per step

SSA is :class:`~spikecim.models.attention.SpikingSelfAttention`: Q, K, V = SN(BN(x W)),
``SN_θ=0.5((Q Kᵀ) V · 0.125)``, out = SN(BN(· W_o)); with ``block_steps = B_t`` the STAtten
block attention ``Q (K̃ᵀ Ṽ) / H`` over chunks of B_t steps. The attention neuron is the
model's neuron with threshold 0.5. The classifier reads the spikes of a last neuron (a
departure from Spikformer's real-valued head) so that every Linear after the embedding
except Q/K/V reads binary inputs, and a silent network outputs the classifier's bias.

Defaults: width 64, depth 2, 4 heads, MLP ratio 2, patch and ``embed`` as in ``vit-tiny`` (2 for 8x8
digits). The ANN twin (``spiking=False``) is the same network with ReLU for every neuron.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spikecim.models._registry import make_activation, register_model
from spikecim.models.attention import SpikingSelfAttention, linear_bn
from spikecim.models.vit import PatchEmbedding, check_embed, patch_for, transformer_sizes
from spikecim.nn import TemporalModule, apply_folded
from spikecim.nn.linear import Linear

__all__ = ["Spikformer", "SpikformerBlock", "SpikingMLP", "spikformer_tiny"]


class SpikingMLP(TemporalModule):
    """``SN(BN(SN(BN(x W1)) W2))`` on ``x[T, B, N, D]``."""

    def __init__(self, dim: int, hidden: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.fc1, self.bn1, self.act1 = Linear(dim, hidden), nn.BatchNorm1d(hidden), act()
        self.fc2, self.bn2, self.act2 = Linear(hidden, dim), nn.BatchNorm1d(dim), act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act2(linear_bn(self.fc2, self.bn2, self.act1(linear_bn(self.fc1, self.bn1, x))))


class SpikformerBlock(TemporalModule):
    """``a = attn(x); x = x + a; x = x + mlp(x)``; forward ``(x, prev) -> (x, a)`` like
    :class:`~spikecim.models.vit.Encoder`."""

    def __init__(self, attn: SpikingSelfAttention, mlp: SpikingMLP) -> None:
        super().__init__()
        self.attn, self.mlp = attn, mlp

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.attn(x)
        x = x + a
        return x + self.mlp(x), a


class Spikformer(TemporalModule):
    """``x[T, B, C, H, W] -> logits[T, B, classes]`` (see the module docstring)."""

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        num_classes: int,
        dim: int,
        depth: int,
        heads: int,
        hidden: int,
        patch: int,
        act: Callable[[], nn.Module],
        attn_act: Callable[[], nn.Module],
        block_steps: int | None,
        overlap: bool = True,
    ) -> None:
        super().__init__()
        grid = input_size // patch
        self.embed = PatchEmbedding(
            in_channels, dim, patch, grid, cls_token=False, norm=True, overlap=overlap
        )
        self.blocks = nn.ModuleList(
            SpikformerBlock(
                SpikingSelfAttention(dim, heads, act, attn_act, block_steps, grid_height=grid),
                SpikingMLP(dim, hidden, act),
            )
            for _ in range(depth)
        )
        self.head_act = act()
        self.head = Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = apply_folded(self.embed, x)
        prev = None
        for block in self.blocks:
            t, prev = block(t, prev)
        return self.head(self.head_act(t).mean(2))


@register_model("spikformer-tiny")
def spikformer_tiny(
    spiking: bool = True,
    num_classes: int = 10,
    in_channels: int = 1,
    input_size: int = 8,
    width: float = 1.0,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    patch_size: int | None = None,
    embed: str = "overlap",
    block_steps: int | None = None,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> Spikformer:
    neuron_kw = dict(neuron_kw or {})
    act = make_activation(spiking, neuron, **neuron_kw)
    attn_act = make_activation(spiking, neuron, **{**neuron_kw, "threshold": 0.5})
    dim, hidden = transformer_sizes("spikformer-tiny", width, dim, depth, heads, mlp_ratio)
    patch = patch_for(input_size, patch_size)
    overlap = check_embed(embed)
    return Spikformer(
        in_channels,
        input_size,
        num_classes,
        dim,
        depth,
        heads,
        hidden,
        patch,
        act,
        attn_act,
        block_steps,
        overlap,
    )
