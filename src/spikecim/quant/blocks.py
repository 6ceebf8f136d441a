"""The reconstruction blocks of a model: the pieces block-wise post-training quantisation
(TesseraQ, AdaRound-style) quantises one after another.

Contract: ``reconstruction_blocks(model)`` returns ``[(name, block), ...]`` whose composition
in order equals the model, ``model(x) == blocks[-1](... blocks[0](x))``; each block takes and
returns one tensor. The blocks share the model's modules (no copies), so a weight set in a
block is set in the model.

- A model with a method ``reconstruction_blocks()`` (a language model's embedding, its
  transformer/RWKV/MLGRU blocks and its head) gives its own list.
- A sequential model (``torch.nn.Sequential``, spikecim's time-major ``Sequential`` among
  them) is cut after each child holding weight layers (:func:`quantizable_layers`) and the
  normalisation layers right after it. A block is then what leads to one weight layer (the
  neuron or ReLU after the previous block, pooling, flattening), the layer and its
  normalisation: ``conv-BN | LIF-conv-BN | LIF-pool-flatten-linear | LIF-linear`` for the
  convnet. Its output is the next neuron's input current (continuous, also in a spiking
  network), which is what the reconstruction loss compares. A child holding several weight
  layers (a residual block) is one block; children after the last weight layer join the
  last block.
- Any other model is one block.
"""

from __future__ import annotations

from torch import nn

from spikecim.quant.groupwise import quantizable_layers

__all__ = ["reconstruction_blocks"]

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def reconstruction_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's reconstruction blocks, in order (module docstring)."""
    own = getattr(model, "reconstruction_blocks", None)
    if callable(own):
        return list(own())
    if not isinstance(model, nn.Sequential):
        return [("model", model)]
    seq_type = type(model) if _rebuildable(model) else nn.Sequential
    groups: list[list[tuple[str, nn.Module]]] = [[]]
    has_weight = False  # the current block holds a weight layer
    for name, child in model.named_children():
        if has_weight and not isinstance(child, _NORMS):
            groups.append([])
            has_weight = False
        groups[-1].append((name, child))
        has_weight = has_weight or bool(quantizable_layers(child))
    if len(groups) > 1 and not has_weight:
        groups[-2] += groups.pop()
    out = []
    for group in groups:
        names = [n for n, _ in group]
        label = names[0] if len(names) == 1 else f"{names[0]}-{names[-1]}"
        out.append((label, seq_type(*[m for _, m in group])))
    return out


def _rebuildable(model: nn.Sequential) -> bool:
    """A subclass of ``nn.Sequential`` whose constructor takes the children only (spikecim's
    time-major ``Sequential``), so a slice of it keeps its forward."""
    try:
        type(model)()
    except TypeError:
        return False
    return True
