"""``matmulfree-tiny``: the MatMul-free language model (HGRN-bit), pure PyTorch on the CPU.

Zhu et al., "Scalable MatMul-free Language Modeling" (2024), ``ridgerchu/matmulfreellm``
(``mmfreelm/models/hgrn_bit/modeling_hgrn_bit.py``, ``mmfreelm/layers/hgrn_bit.py``);
docs/references.md#matmul-free-lm. Every projection is a ternary
:class:`~spikecim.nn.bitlinear.BitLinear`, the LM head included.

Block: ``x += MLGRU(RMSNorm x)``; ``x += GLU(RMSNorm x)``.

- MLGRU token mixer: ``f = σ(W_f x)``; from the second layer on, ``f = lb + (1 − lb)·f``
  with the learned lower bound ``lb = cumsum(softmax(P)) − softmax(P)[0]`` over layers
  (layer 0's bound is 0); ``i = SiLU(W_i x)·(1 − f)``; ``h_t = f_t ⊙ h_{t−1} + i_t``
  (:func:`~spikecim.nn.recurrence.mlgru_scan`); ``o = W_o(RMSNorm(W_g x) ⊙ h ⊙ σ(h))``.
- GLU channel mixer: ``W_down(SiLU(W_gate x) ⊙ W_up x)``, hidden ``256·⌈(8d/3)/256⌉``.

The recurrence runs as one compiled C call forward and one backward on the CPU (the token
loop with ``scan_backend="reference"``); at the tiny sizes the projections take most of the
time either way (docs/lm.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.models._registry import register_model
from spikecim.models.lm._common import TokenModel, check_backend, check_size
from spikecim.nn.bitlinear import BitLinear
from spikecim.nn.recurrence import mlgru_scan

__all__ = ["MLGRU", "LayerBlock", "MatMulFreeLM", "glu_hidden", "lower_bounds"]


def glu_hidden(d_model: int) -> int:
    """The public code's GLU width: ``8d/3`` rounded up to a multiple of 256."""
    return 256 * math.ceil((8 * d_model / 3) / 256)


class MLGRU(nn.Module):
    """The MatMul-free linear GRU token mixer (HGRN-bit attention)."""

    def __init__(self, d_model: int, layer: int, scan_backend: str = "auto") -> None:
        super().__init__()
        self.layer = layer
        self.scan_backend = scan_backend
        self.recurrent_state = ("mlgru", d_model)  # h, read and written every token (the tracer)
        self.i_proj = BitLinear(d_model, d_model)
        self.f_proj = BitLinear(d_model, d_model)
        self.g_proj = BitLinear(d_model, d_model)
        self.g_norm = nn.RMSNorm(d_model, eps=1e-5)
        self.o_proj = BitLinear(d_model, d_model)
        for m in (self.i_proj, self.f_proj, self.g_proj, self.o_proj):
            nn.init.xavier_uniform_(m.weight, gain=2**-2.5)

    def gates(self, x: torch.Tensor, lower_bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ``i`` and forget gate ``f`` of the recurrence, ``[B, L, D]`` each."""
        f = torch.sigmoid(self.f_proj(x))
        if self.layer > 0:
            f = lower_bound + (1 - lower_bound) * f
        i = F.silu(self.i_proj(x)) * (1 - f)
        return i, f

    def forward(self, x: torch.Tensor, lower_bound: torch.Tensor) -> torch.Tensor:
        i, f = self.gates(x, lower_bound)
        h, _ = mlgru_scan(i, f, backend=self.scan_backend)
        return self.o_proj(self.g_norm(self.g_proj(x)) * h * torch.sigmoid(h))


class GLU(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        hidden = glu_hidden(d_model)
        self.gate_proj = BitLinear(d_model, hidden)
        self.up_proj = BitLinear(d_model, hidden)
        self.down_proj = BitLinear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, d_model: int, layer: int, scan_backend: str = "auto") -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.attn = MLGRU(d_model, layer, scan_backend)
        self.mlp_norm = nn.RMSNorm(d_model, eps=1e-6)
        self.mlp = GLU(d_model)

    def forward(self, x: torch.Tensor, lower_bound: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), lower_bound)
        return x + self.mlp(self.mlp_norm(x))


def lower_bounds(p: torch.Tensor) -> torch.Tensor:
    """The forget gates' lower bounds from the learned ``P[layers, D]``:
    ``cumsum(softmax(P)) − softmax(P)[0]`` over the layer axis."""
    p = p.softmax(0)
    return p.cumsum(0) - p[0]


class LayerBlock(nn.Module):
    """Block ``layer`` with its lower bound, ``[L, B, D] -> [L, B, D]`` (the model's block and
    bound parameter, shared)."""

    def __init__(self, block: Block, bounds: nn.Parameter, layer: int) -> None:
        super().__init__()
        self.block = block
        self.bounds = bounds
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, lower_bounds(self.bounds)[self.layer])


class MatMulFreeLM(TokenModel):
    def __init__(
        self, vocab: int, context: int, d_model: int, layers: int, scan_backend: str = "auto"
    ) -> None:
        super().__init__(vocab, context)
        self.embed = nn.Embedding(vocab, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.lower_bounds = nn.Parameter(torch.zeros(layers, d_model))
        self.blocks = nn.ModuleList(Block(d_model, i, scan_backend) for i in range(layers))
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.head = BitLinear(d_model, vocab)

    def lower_bound(self) -> torch.Tensor:
        """``cumsum(softmax(P)) − softmax(P)[0]`` over the layer axis: ``[layers, D]``."""
        return lower_bounds(self.lower_bounds)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        self.check_tokens(tokens)
        x = self.embed(tokens)
        bounds = self.lower_bound()
        for i, block in enumerate(self.blocks):
            x = block(x, bounds[i])
        return self.head(self.norm(x))

    def reconstruction_blocks(self) -> list[tuple[str, nn.Module]]:
        """Embedding, each MLGRU + GLU block (with its lower bound), final norm and head: in
        order, the model (:mod:`spikecim.quant.blocks`). Every weight layer is a BitLinear,
        left out of post-training quantisation (docs/quant.md)."""
        return [
            ("embed", self.embed),
            *((f"blocks.{i}", LayerBlock(b, self.lower_bounds, i)) for i, b in enumerate(self.blocks)),
            ("head", nn.Sequential(self.norm, self.head)),
        ]


@register_model("matmulfree-tiny", spiking_form=False, task="lm", float_weights=False)
def matmulfree_tiny(
    spiking: bool = False,
    num_classes: int = 256,
    in_channels: int = 1,
    input_size: int = 64,
    d_model: int = 128,
    layers: int = 2,
    neuron: str = "lif",
    neuron_kw: dict | None = None,
    scan_backend: str = "auto",
) -> MatMulFreeLM:
    """``scan_backend``: ``"auto"`` (the fused CPU kernel where it runs) or ``"reference"``
    (the token loop), see :func:`spikecim.nn.recurrence.mlgru_scan`."""
    check_size("matmulfree-tiny", d_model=d_model, layers=layers)
    check_backend("scan_backend", scan_backend)
    return MatMulFreeLM(num_classes, input_size, d_model, layers, scan_backend)
