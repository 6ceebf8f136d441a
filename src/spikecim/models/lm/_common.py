"""What the tiny language models share: argument checks and the token-axis helpers."""

from __future__ import annotations

import torch
from torch import nn

from spikecim.errors import SpikecimError

__all__ = ["TokenModel", "check_size", "over_tokens"]


def check_size(model: str, **sizes: int) -> None:
    """Every size a positive integer, else one line naming ``model.kwargs.<name>``."""
    for key, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikecimError(f"model.kwargs.{key}: {model} needs a positive integer, got {v!r}")


def over_tokens(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a time-major module (a neuron) over the token axis of ``x[B, L, D]``: tokens as time."""
    return module(x.transpose(0, 1)).transpose(0, 1)


class TokenModel(nn.Module):
    """Base of the language models: checks the token input against the context."""

    def __init__(self, vocab: int, context: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.context = context

    def check_tokens(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise SpikecimError(f"tokens: need integer ids [B, L], got {tokens.dtype} {list(tokens.shape)}")
        if tokens.shape[1] > self.context:
            raise SpikecimError(f"tokens: {tokens.shape[1]} tokens exceed the model's context {self.context}")
