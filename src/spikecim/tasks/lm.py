"""``lm``: byte-level language modelling (next-token prediction).

A sample is a window of ``L`` tokens ``x[B, L]`` (bytes of UTF-8 text, vocabulary 256) and
its targets ``y[B, L]``, the same text shifted by one token. A language model is time-major
with tokens as time (:class:`TokenInput`): it takes ``x.T`` ``[L, B]`` and returns logits
``[L, B, 256]``; position ``t`` sees only tokens ``≤ t`` (causal), and a spiking model's
neurons step once per token. The tracer therefore counts one step per token, and every
cost per step is a cost per token.

Metrics over every predicted token of the validation split (:func:`evaluate_lm`):

- ``cross_entropy``: the mean next-token cross-entropy in nats, ``CE = −(1/N) Σ log p(y_n)``;
- ``perplexity = exp(CE)``;
- ``bits_per_char = CE / ln 2`` (one byte is one character of ASCII text);
- ``accuracy``: the share of tokens whose most likely next token is right.

:func:`generate` continues a prompt greedily (``temperature = 0``) or by sampling from
``softmax(logits / temperature)`` with a generator seeded by ``seed`` (the same seed gives
the same text).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.tasks._registry import Task, register_task
from spikecim.train.batches import iterate_batches
from spikecim.train.evaluate import ModelInput, record_activity

__all__ = [
    "MAX_TOKENS",
    "VOCAB_SIZE",
    "LanguageModelling",
    "TokenInput",
    "decode",
    "encode",
    "evaluate_lm",
    "generate",
    "lm_loss",
]

VOCAB_SIZE = 256  # bytes
MAX_TOKENS = 100_000  # bytes generate writes at most: 100 kB of text, one forward pass each


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as token ids ``[N]`` (int64)."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.int64)


def decode(tokens: Iterable[int]) -> str:
    """Token ids back to text (bytes that are not valid UTF-8 become U+FFFD)."""
    return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class TokenInput(ModelInput):
    """How a language model takes a batch of windows ``x[B, L]``: time-major ``[L, B]``, its
    logits ``[L, B, V]`` turned back to ``[B, L, V]``."""

    timesteps: int | None = None

    @property
    def batch_dim(self) -> int:
        return 1  # time-major [L, B]

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x.t()

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return out.transpose(0, 1)


def lm_loss(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy of ``logits[B, L, V]`` against ``y[B, L]`` (nats), with
    the targets smoothed by ``label_smoothing``."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), label_smoothing=label_smoothing)


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Cross-entropy, perplexity, bits per character and next-token accuracy of ``model``
    over the batches ``(x[B, L], y[B, L])`` of ``loader`` (fed time-major, :class:`TokenInput`);
    ``spike_rates`` per neuron layer. ``forward`` replaces ``model`` (e.g. an analog copy)."""
    inputs = TokenInput()
    was_training = model.training
    model.eval()
    runner = forward or model
    ce_sum, correct, tokens, samples = 0.0, 0, 0, 0
    try:
        with record_activity(model) as rates:
            for xb, yb in loader:
                logits = inputs.decode(runner(inputs.encode(xb).to(device))).float().cpu()
                ce_sum += float(F.cross_entropy(logits.flatten(0, -2), yb.flatten(), reduction="sum"))
                correct += int((logits.argmax(-1) == yb).sum())
                tokens += yb.numel()
                samples += len(yb)
    finally:
        model.train(was_training)
    if tokens == 0:
        raise SpikecimError("evaluate: the language-modelling data hold no tokens")
    ce = ce_sum / tokens
    if not math.isfinite(ce):
        raise SpikecimError("evaluate: the model's next-token cross-entropy is not finite")
    if ce > math.log(sys.float_info.max):
        raise SpikecimError(
            f"evaluate: the next-token cross-entropy is {ce:.4g} nats, so the perplexity exp(ce) "
            "is beyond a float: far worse than guessing every byte uniformly (ln 256 ≈ 5.5 nats)"
        )
    return {
        "accuracy": correct / tokens,
        "cross_entropy": ce,
        "perplexity": math.exp(ce),
        "bits_per_char": ce / math.log(2),
        "tokens": tokens,
        "samples": samples,
        "spike_rates": dict(rates),
    }


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: str,
    tokens: int = 200,
    temperature: float = 0.0,
    seed: int = 0,
    context: int | None = None,
) -> str:
    """``prompt`` continued by ``tokens`` bytes (0 to :data:`MAX_TOKENS`); each step feeds the
    last ``context`` tokens (default and at most the model's ``context``).

    ``temperature`` 0 picks the most likely byte (greedy); above 0 it samples from
    ``softmax(logits / temperature)`` with a generator seeded by ``seed``.
    """
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 0 <= tokens <= MAX_TOKENS:
        raise SpikecimError(f"tokens: must be an integer from 0 to {MAX_TOKENS}, got {tokens!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise SpikecimError(f"temperature: must be a finite number >= 0, got {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise SpikecimError(f"seed: must be an integer in [0, 2**63), got {seed!r}")
    if not isinstance(prompt, str):
        raise SpikecimError(f"prompt: must be text (str), got {type(prompt).__name__}")
    try:
        ids = encode(prompt)
    except UnicodeEncodeError as e:  # a lone surrogate, e.g. a byte of argv that is not UTF-8
        raise SpikecimError(
            f"prompt: must be UTF-8 text; character {e.start} is {prompt[e.start]!r}, which UTF-8 cannot encode"
        ) from None
    if ids.numel() == 0:
        raise SpikecimError("prompt: must hold at least one character")
    limit = getattr(model, "context", None)
    if context is None:
        context = int(limit) if limit is not None else ids.numel() + tokens
    elif isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= (limit or context):
        allowed = f"[1, {limit}] (the model's context)" if limit is not None else ">= 1"
        raise SpikecimError(f"context: must be an integer in {allowed}, got {context!r}")
    gen = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    model.eval()
    out = ids.tolist()
    try:
        for _ in range(tokens):
            x = torch.tensor(out[-context:], dtype=torch.int64)[:, None]  # [L, 1], time-major
            logits = model(x)[-1, 0].float()
            if not bool(torch.isfinite(logits).all()):
                raise SpikecimError("generate: the model's logits are not finite numbers (a diverged model)")
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                # shifted so the top logit is 0: a tiny temperature gives -inf, never inf/inf;
                # in float64, where a temperature below float32's range (1e-300) is no 0
                probs = torch.softmax((logits.double() - logits.max()) / temperature, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=gen))
            out.append(nxt)
    finally:
        model.train(was_training)
    return decode(out[len(ids) :])


@register_task
class LanguageModelling(Task):
    name = "lm"
    headline = "bits_per_char"
    metric = "perplexity"
    scalar_metrics = ("perplexity", "bits_per_char", "cross_entropy", "accuracy")
    data_kind = "lm"

    def model_input(self, timesteps, encoder, spiking, frames):
        return TokenInput(spiking=spiking)

    def loss(self, out, y, mode, label_smoothing=0.0):
        if mode != "mean":
            raise SpikecimError(
                f"train.loss: the lm task trains on the next-token cross-entropy (mean), got '{mode}'"
            )
        return lm_loss(out.transpose(0, 1), y, label_smoothing)  # the model's [L, B, V] against y[B, L]

    def correct(self, out, y):
        return int((out.detach().argmax(-1).t() == y).sum()), y.numel()

    def evaluate(self, model, x, y, inputs, batch_size=256, seed=0, device="cpu", forward=None):
        return evaluate_lm(model, iterate_batches(x, y, batch_size), device=device, forward=forward)
