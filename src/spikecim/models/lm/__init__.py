"""Tiny language models of one size, side by side: a plain causal transformer, the
MatMul-free LM and SpikeGPT (byte-level; see docs/lm.md).

Each takes tokens ``[B, L]`` (``L ≤ context``) and returns logits ``[B, L, vocabulary]``,
position ``t`` seeing only tokens ``≤ t``. Built through :func:`spikecim.models.create_model`
with ``num_classes`` the vocabulary and ``input_size`` the context (a text data set gives
both).
"""

from spikecim.models.lm import matmulfree, spikegpt, transformer  # noqa: F401  (registration)
