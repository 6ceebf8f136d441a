"""Model registry: every architecture as a spiking model and an ANN twin of identical topology."""

from spikecim.models._registry import create_model, list_models, make_activation, register_model
from spikecim.models import convnet, mlp  # noqa: F401  (registration)

__all__ = ["create_model", "list_models", "register_model", "make_activation"]
