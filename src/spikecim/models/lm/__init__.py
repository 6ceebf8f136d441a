"""Tiny language models of one size, side by side: a plain causal transformer, the
MatMul-free LM and SpikeGPT (byte-level; see docs/lm.md).

Each is time-major, tokens as time: it takes token ids ``[L, B]`` (``L ≤ context``) and
returns logits ``[L, B, vocabulary]``, position ``t`` seeing only tokens ``≤ t``. Every layer
runs on ``[L, B, ...]``, so the tracer counts a step per token (its costs are per token). Built through :func:`spikecim.models.create_model`
with ``num_classes`` the vocabulary and ``input_size`` the context (a text data set gives
both).
"""

from spikecim.models.lm import matmulfree, spikegpt, transformer  # noqa: F401  (registration)
