"""Attention blocks: multi-head softmax attention (ViT/DeiT) and spiking self-attention
(Spikformer, with the STAtten spatio-temporal block option).

Every product of two activations is a :class:`spikecim.ops.MatMul` module, one per product,
so the tracer records it with a dynamic operand and the analog side can map it; softmax,
LayerNorm and GELU are modules too, never functional calls.

``SoftmaxAttention`` (Dosovitskiy et al. 2021; DeiT, Touvron et al. 2021), on ``x[..., N, D]``
with ``h`` heads of ``d = D / h``::

    Q, K, V = x W_q, x W_k, x W_v                    (split into heads)
    A   = softmax(Q Kᵀ / sqrt(d))                    qk, softmax
    out = (A V) W_o                                  av, proj

``SpikingSelfAttention`` (Zhou et al. 2023, "Spikformer", ICLR), on ``x[T, B, N, D]``::

    Q, K, V = SN(BN(x W_q)), SN(BN(x W_k)), SN(BN(x W_v))     binary, per step
    S'  = SN_θ=0.5((Q Kᵀ) V · s),  s = 0.125                  qk, av (no softmax)
    out = SN(BN(S' W_o))

With ``block_steps = B_t`` it is STAtten (Lee et al. 2025, "Spiking Transformer with
Spatial-Temporal Attention", CVPR; ``module/ms_conv.py`` of
Intelligent-Computing-Lab-Yale/STAtten): the T steps are split into chunks of B_t steps
whose N tokens are concatenated (B_t·N tokens), and attention is ``Q̃ (K̃ᵀ Ṽ) · s`` with
``s = 1/H`` (H the height of the token grid), Kᵀ V first. Over a chunk of concatenated
tokens ``K̃ᵀ Ṽ = Σ_{t in chunk} K_tᵀ V_t``, so it is computed per step (``kv``: K_tᵀ V_t, a
``[d, d]`` matrix per step and head), summed over the steps of each chunk, and read by each
step's queries (``qkv``: Q_t · (K̃ᵀ Ṽ)). B_t = 1 is per-step attention in the Kᵀ V order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.nn import TemporalModule
from spikecim.nn.linear import Linear
from spikecim.ops import MatMul

__all__ = [
    "SoftmaxAttention",
    "SpikingSelfAttention",
    "check_block_steps",
    "chunk_sum",
    "heads_split",
    "linear_bn",
]


def heads_split(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[..., N, h·d] -> [..., h, N, d]``."""
    return x.unflatten(-1, (heads, x.shape[-1] // heads)).transpose(-3, -2)


def heads_merge(x: torch.Tensor) -> torch.Tensor:
    """``[..., h, N, d] -> [..., N, h·d]``."""
    return x.transpose(-3, -2).flatten(-2)


def linear_bn(linear: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """``BN(x W)`` on tokens ``x[..., D]``: BatchNorm1d over every token of every step and sample."""
    y = linear(x)
    return bn(y.reshape(-1, y.shape[-1])).reshape(y.shape)


def chunk_sum(x: torch.Tensor, block_steps: int) -> torch.Tensor:
    """``x[T, ...]`` summed over each chunk of ``block_steps`` consecutive steps, the sum
    repeated at every step of its chunk (``[T, ...]`` again)."""
    T = x.shape[0]
    chunks = x.reshape(T // block_steps, block_steps, *x.shape[1:]).sum(1, keepdim=True)
    return chunks.expand(-1, block_steps, *x.shape[1:]).reshape(x.shape)


def check_block_steps(block_steps: int | None) -> int | None:
    """STAtten's chunk length B_t checked at the door: a positive integer, or None (Spikformer)."""
    if block_steps is not None and (
        isinstance(block_steps, bool) or not isinstance(block_steps, int) or block_steps < 1
    ):
        raise SpikecimError(f"model.block_steps: must be a positive integer or None, got {block_steps!r}")
    return block_steps


class SoftmaxAttention(nn.Module):
    """Multi-head softmax attention on ``x[..., N, D]`` (see the module docstring)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise SpikecimError(f"model.heads: must divide the embedding width {dim}, got {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q, self.k, self.v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.qk = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av = MatMul()
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = heads_split(self.q(x), self.heads) * self.scale
        k = heads_split(self.k(x), self.heads)
        v = heads_split(self.v(x), self.heads)
        a = self.softmax(self.qk(q, k.transpose(-2, -1)))
        return self.proj(heads_merge(self.av(a, v)))


class SpikingSelfAttention(TemporalModule):
    """Spikformer's spiking self-attention on ``x[T, B, N, D]``, or STAtten with
    ``block_steps`` (see the module docstring).

    Args:
        act: the factory of the Q/K/V and output neurons (ReLU in the ANN twin).
        attn_act: the factory of the attention neuron (threshold 0.5 in Spikformer).
        block_steps: None for Spikformer ((Q Kᵀ) V per step); B_t for STAtten (Q (K̃ᵀ Ṽ)
            over chunks of B_t steps).
        scale: s; default 0.125 (Spikformer) or ``1 / grid_height`` (STAtten).
        grid_height: H, the height of the token grid (STAtten's default scale).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        act: Callable[[], nn.Module],
        attn_act: Callable[[], nn.Module],
        block_steps: int | None = None,
        scale: float | None = None,
        grid_height: int = 1,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise SpikecimError(f"model.heads: must divide the embedding width {dim}, got {heads}")
        self.heads, self.block_steps = heads, check_block_steps(block_steps)
        self.scale = (
            float(scale) if scale is not None else (0.125 if block_steps is None else 1.0 / grid_height)
        )
        self.q, self.q_bn, self.q_act = Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), act()
        self.k, self.k_bn, self.k_act = Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), act()
        self.v, self.v_bn, self.v_act = Linear(dim, dim, bias=False), nn.BatchNorm1d(dim), act()
        if block_steps is None:
            self.qk, self.av = MatMul(), MatMul()
        else:
            self.kv, self.qkv = MatMul(), MatMul()
        self.attn_act = attn_act()
        self.proj, self.proj_bn, self.proj_act = Linear(dim, dim), nn.BatchNorm1d(dim), act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = heads_split(self.q_act(linear_bn(self.q, self.q_bn, x)), self.heads)
        k = heads_split(self.k_act(linear_bn(self.k, self.k_bn, x)), self.heads)
        v = heads_split(self.v_act(linear_bn(self.v, self.v_bn, x)), self.heads)
        if self.block_steps is None:
            s = self.av(self.qk(q, k.transpose(-2, -1)), v)
        else:
            if x.shape[0] % self.block_steps:
                raise SpikecimError(
                    f"model.block_steps: must divide the timesteps T = {x.shape[0]}, got {self.block_steps}"
                )
            kv = chunk_sum(self.kv(k.transpose(-2, -1), v), self.block_steps)
            s = self.qkv(q, kv)
        s = self.attn_act(heads_merge(s) * self.scale)
        return self.proj_act(linear_bn(self.proj, self.proj_bn, s))
