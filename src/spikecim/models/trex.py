"""TReX: attention reuse across encoders (Moitra et al., "TReX: Reusing Vision Transformer's
Attention for Efficient Xbar-based Computing").

In a *reuse* encoder the attention block (its Q/K/V projections, Q·Kᵀ, softmax, A·V and
output projection) is removed; a transformation block reads the previous encoder's
attention output instead::

    a_i = TB(a_{i-1}),  TB = GELU(Linear_{d×d}(LayerNorm(a_{i-1})))
    x   = x + a_i;  x = x + MLP(x)                   (MLP and residuals kept)

A reuse encoder's own ``a_i`` is what the next reuse encoder reads, so runs of reuse chain.
Encoder 0 always computes its attention. The method ``trex`` (a variant's ``methods:
[{name: trex, reuse: [2, 3]}]`` or ``{name: trex, pattern: contiguous, count: 2}``) replaces
the chosen encoders of a transformer (``vit-tiny``, ``spikformer-tiny``); with no reuse
encoder the model is unchanged.

Reuse patterns, for ``k`` reuse encoders among encoders 1..depth-1 (docs/transformers.md):

- ``contiguous``: the last ``k`` encoders;
- ``strided``: spread evenly, encoder ``(j + 1)·depth / (k + 1)`` rounded half up, for j < k;
- ``pyramid``: runs of reuse that grow with depth, one computing encoder between runs:
  compute 0, reuse 1, compute 2, reuse 3-4, compute 5, reuse 6-8, ...; the first ``k``.
"""

from __future__ import annotations

import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.methods import register_method
from spikecim.nn.linear import Linear

__all__ = ["PATTERNS", "ReuseEncoder", "TransformBlock", "candidates", "encoders_of", "reuse_pattern", "trex"]

PATTERNS = ("strided", "contiguous", "pyramid")


class TransformBlock(nn.Module):
    """``TB(a) = GELU(Linear(LayerNorm(a)))``, ``d -> d``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.linear = Linear(dim, dim)
        self.act = nn.GELU()

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(self.norm(a)))


class ReuseEncoder(nn.Module):
    """An encoder without attention: ``a = tb(prev); x = x + a; x = x + mlp(x)``, forward
    ``(x, prev) -> (x, a)`` like the encoder it replaces, whose ``mlp`` branch it keeps."""

    def __init__(self, tb: TransformBlock, mlp: nn.Module) -> None:
        super().__init__()
        self.tb, self.mlp = tb, mlp

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if prev is None:
            raise SpikecimError("methods.trex: a reuse encoder needs a previous encoder's attention output")
        a = self.tb(prev)
        x = x + a
        return x + self.mlp(x), a


def encoders_of(model: nn.Module) -> nn.ModuleList:
    """The model's encoder list (``model.blocks``), or a one-line error."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(b, "mlp") for b in blocks):
        raise SpikecimError(
            f"methods.trex: needs a transformer with encoders (vit-tiny, spikformer-tiny), got {type(model).__name__}"
        )
    return blocks


def reuse_pattern(pattern: str, depth: int, count: int) -> list[int]:
    """The reuse encoders of ``pattern`` with ``count`` of them in a ``depth``-encoder model
    (see the module docstring); a one-line error where the pattern cannot hold ``count``."""
    if pattern not in PATTERNS:
        raise SpikecimError(f"methods.trex.pattern: unknown '{pattern}', allowed: {', '.join(PATTERNS)}")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= depth - 1:
        raise SpikecimError(
            f"methods.trex.count: must be an integer in [0, {depth - 1}] (depth {depth}), got {count!r}"
        )
    if pattern == "contiguous":
        return list(range(depth - count, depth))
    if pattern == "strided":
        return [(2 * (j + 1) * depth + count + 1) // (2 * (count + 1)) for j in range(count)]  # half up
    reuse, i, run = [], 1, 1
    while len(reuse) < count and i < depth:
        take = list(range(i, min(i + run, depth)))[: count - len(reuse)]
        reuse += take
        i, run = i + run + 1, run + 1
    if len(reuse) < count:
        raise SpikecimError(
            f"methods.trex.count: the pyramid pattern holds at most {len(reuse)} reuse encoders of {depth}"
        )
    return reuse


def candidates(depth: int, count: int) -> list[tuple[str, list[int]]]:
    """``(pattern, reuse encoders)`` of every pattern that holds ``count``, duplicates dropped;
    ``[("none", [])]`` for no reuse."""
    if count == 0:
        return [("none", [])]
    out: list[tuple[str, list[int]]] = []
    for p in PATTERNS:
        try:
            r = reuse_pattern(p, depth, count)
        except SpikecimError:
            continue
        if all(r != seen for _, seen in out):
            out.append((p, r))
    return out


@register_method("trex", changes={"attention"})
def trex(
    model: nn.Module, reuse: list[int] | None = None, pattern: str | None = None, count: int | None = None
) -> nn.Module:
    """Replace the attention of the ``reuse`` encoders (or of ``pattern`` with ``count`` of
    them) by transformation blocks; the model is changed in place and returned."""
    blocks = encoders_of(model)
    depth = len(blocks)
    if reuse is not None and (pattern is not None or count is not None):
        raise SpikecimError("methods.trex: give either reuse or pattern and count, not both")
    if reuse is None:
        if pattern is None or count is None:
            raise SpikecimError("methods.trex: give reuse (encoder indices) or pattern and count")
        reuse = reuse_pattern(pattern, depth, count)
    if not isinstance(reuse, (list, tuple)) or not all(
        isinstance(i, int) and not isinstance(i, bool) and 1 <= i < depth for i in reuse
    ):
        raise SpikecimError(
            f"methods.trex.reuse: must be a list of encoder indices in [1, {depth - 1}], got {reuse!r}"
        )
    for i in sorted(set(reuse)):
        block = blocks[i]
        if isinstance(block, ReuseEncoder):
            continue
        dim = _width(block)
        blocks[i] = ReuseEncoder(TransformBlock(dim), block.mlp)
    model.trex_reuse = sorted(set(reuse))
    return model


def _width(block: nn.Module) -> int:
    """The embedding width an encoder reads and writes (its attention's output projection)."""
    return block.attn.proj.out_features
