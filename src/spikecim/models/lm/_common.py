"""What the tiny language models share: argument checks and the token input."""

from __future__ import annotations

import torch
from torch import nn

from spikecim.errors import SpikecimError

__all__ = ["TokenModel", "check_backend", "check_size"]


def check_size(model: str, **sizes: int) -> None:
    """Every size a positive integer, else one line naming ``model.kwargs.<name>``."""
    for key, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SpikecimError(f"model.kwargs.{key}: {model} needs a positive integer, got {v!r}")


def check_backend(key: str, value: str) -> None:
    """A recurrence backend of :mod:`spikecim.nn.recurrence`, else one line naming ``model.kwargs.<key>``."""
    from spikecim.nn.recurrence import BACKENDS

    if value not in BACKENDS:
        raise SpikecimError(f"model.kwargs.{key}: unknown {value!r}, allowed: {', '.join(BACKENDS)}")


class TokenModel(nn.Module):
    """Base of the language models: checks the token input against the context."""

    def __init__(self, vocab: int, context: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.context = context

    def check_tokens(self, tokens: torch.Tensor) -> None:
        """Time-major integer ids ``[L, B]`` with ``L ≤ context``, each in ``[0, vocab)``, else one line."""
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise SpikecimError(f"tokens: need integer ids [L, B], got {tokens.dtype} {list(tokens.shape)}")
        if tokens.shape[0] > self.context:
            raise SpikecimError(f"tokens: {tokens.shape[0]} tokens exceed the model's context {self.context}")
        if bool(((tokens < 0) | (tokens >= self.vocab)).any()):
            raise SpikecimError(
                f"tokens: ids must lie in [0, {self.vocab - 1}] (the model's vocabulary of {self.vocab}), "
                f"got {int(tokens.min())} to {int(tokens.max())}"
            )
