"""Bits of a stored operand, read from the model: a quantiser's ``weight_bits`` attribute if
the module has one, else the width of the tensor's dtype (32 for float32 weights)."""

from __future__ import annotations

import torch

__all__ = ["dtype_bits", "static_operand", "weight_bits"]


def dtype_bits(dtype: torch.dtype) -> int:
    if dtype == torch.bool:
        return 1
    return torch.finfo(dtype).bits if dtype.is_floating_point else torch.iinfo(dtype).bits


def weight_bits(module, weight: torch.Tensor) -> int:
    bits = getattr(module, "weight_bits", None)
    return int(bits) if isinstance(bits, int) and bits > 0 else dtype_bits(weight.dtype)


def static_operand(module, weight: torch.Tensor) -> dict:
    """The Workload description of a weight programmed once: its bits and its share of zeros."""
    return {
        "kind": "static",
        "bits": weight_bits(module, weight),
        "sparsity": float((weight == 0).float().mean()),
    }
