"""Model registry: every architecture as a spiking model and an ANN twin of identical topology.

``create_model(name, spiking=True, num_classes=, in_channels=, input_size=, width=, neuron=,
neuron_kw=)``; models take ``[T, B, C, H, W]`` and return logits ``[T, B, classes]``.
The language models (:mod:`spikecim.models.lm`: ``transformer-tiny``, ``matmulfree-tiny``,
``spikegpt-tiny``) take tokens ``[B, L]`` and return logits ``[B, L, vocabulary]``.
"""

from spikecim.models import convnet, lm, mlp, resnet19, spikformer, vgg, vit  # noqa: F401  (registration)
from spikecim.models._registry import (
    create_model,
    has_float_weights,
    has_spiking_form,
    list_models,
    make_activation,
    model_task,
    register_model,
)

__all__ = [
    "create_model",
    "has_float_weights",
    "has_spiking_form",
    "list_models",
    "make_activation",
    "model_task",
    "register_model",
]
