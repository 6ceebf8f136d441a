"""Model registry: every architecture as a spiking model and an ANN twin of identical topology.

``create_model(name, spiking=True, num_classes=, in_channels=, input_size=, width=, neuron=,
neuron_kw=)``; models take ``[T, B, C, H, W]`` and return logits ``[T, B, classes]``.
"""

from spikecim.models import convnet, mlp, resnet19, spikformer, vgg, vit  # noqa: F401  (registration)
from spikecim.models._registry import create_model, list_models, make_activation, register_model

__all__ = ["create_model", "list_models", "make_activation", "register_model"]
