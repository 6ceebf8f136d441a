"""``transformer-tiny``: a plain causal transformer language model (pre-norm, GPT-2 style).

Embedding + learned positions -> ``layers`` × [x += Attn(LN x); x += MLP(LN x)] -> LN ->
linear head. Attention uses :class:`~spikecim.ops.matmul.MatMul` for its two products of
activations (``Q·Kᵀ`` and ``softmax·V``) and module forms ``nn.Softmax``, ``nn.LayerNorm``
and ``nn.GELU``, so the tracer and the analog conversion see every part. The products are
written per token (query ``q_t`` against the window's keys, future ones masked), so the
Workload counts ``d·L`` multiply-accumulates per token for each, a cache of ``L`` keys.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.models._registry import register_model
from spikecim.models.lm._common import TokenModel, check_size
from spikecim.nn.linear import Linear
from spikecim.ops.matmul import MatMul

__all__ = ["TokenEmbedding", "TransformerLM"]


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = Linear(d_model, 3 * d_model)
        self.scores = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.mix = MatMul()
        self.proj = Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, b, d = x.shape  # [L, B, D]
        q, k, v = self.qkv(x).view(n, b, 3, self.heads, d // self.heads).unbind(2)  # [L, B, H, dh] each
        # Per token t (time-major, so the tracer counts the work of each step): the query row
        # q_t [1, dh] against every key and value of the window, the future ones masked. The
        # keys and values are the same for every query: broadcast (size 1), not copied
        # (spikecim.ops.matmul.matmul_shared).
        keys = k.permute(1, 2, 3, 0).unsqueeze(0)  # [1, B, H, dh, L]
        values = v.permute(1, 2, 0, 3).unsqueeze(0)  # [1, B, H, L, dh]
        att = self.scores(q.unsqueeze(-2), keys) / math.sqrt(d // self.heads)  # [L, B, H, 1, L]
        future = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1).view(n, 1, 1, 1, n)
        att = self.softmax(att.masked_fill(future, float("-inf")))
        return self.proj(self.mix(att, values).reshape(n, b, d))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(Linear(d_model, 4 * d_model), nn.GELU(), Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TokenEmbedding(nn.Module):
    """Token embedding plus learned positions, ``[L, B] -> [L, B, D]`` (the model's modules, shared)."""

    def __init__(self, embed: nn.Embedding, pos: nn.Parameter) -> None:
        super().__init__()
        self.embed = embed
        self.pos = pos

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens) + self.pos[: tokens.shape[0], None]


class TransformerLM(TokenModel):
    def __init__(self, vocab: int, context: int, d_model: int, layers: int, heads: int) -> None:
        super().__init__(vocab, context)
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = Linear(d_model, vocab)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.check_tokens(tokens)
        x = TokenEmbedding(self.embed, self.pos)(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))

    def reconstruction_blocks(self) -> list[tuple[str, nn.Module]]:
        """Embedding, each transformer block, final norm and head: in order, the model
        (:mod:`spikecim.quant.blocks`)."""
        return [
            ("embed", TokenEmbedding(self.embed, self.pos)),
            *((f"blocks.{i}", b) for i, b in enumerate(self.blocks)),
            ("head", nn.Sequential(self.ln_out, self.head)),
        ]


@register_model("transformer-tiny", spiking_form=False, task="lm")
def transformer_tiny(
    spiking: bool = False,
    num_classes: int = 256,
    in_channels: int = 1,
    input_size: int = 64,
    d_model: int = 128,
    layers: int = 2,
    heads: int = 4,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
) -> TransformerLM:
    check_size("transformer-tiny", d_model=d_model, layers=layers, heads=heads)
    if d_model % heads:
        raise SpikecimError(f"model.kwargs.heads: {heads} does not divide d_model {d_model}")
    return TransformerLM(num_classes, input_size, d_model, layers, heads)
