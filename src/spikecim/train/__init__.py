"""Training (BPTT) and evaluation loops, losses and checkpoints."""

from spikecim.train.checkpoint import load_checkpoint, load_variant_weights, load_weights, save_checkpoint
from spikecim.train.evaluate import ModelInput, evaluate, predict
from spikecim.train.losses import classification_loss
from spikecim.train.trainer import FitSpec, fit, resolve_device

__all__ = [
    "FitSpec",
    "ModelInput",
    "classification_loss",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_variant_weights",
    "load_weights",
    "predict",
    "resolve_device",
    "save_checkpoint",
]
