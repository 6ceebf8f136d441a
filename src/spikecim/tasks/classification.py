"""``classification``: one label per sample (images, event frames).

The model takes ``[T, B, ...]`` and returns logits per step ``[T, B, classes]``; the loss is
:func:`~spikecim.train.losses.classification_loss` (``mean`` or ``per_step``), the decision
the argmax of the mean logits, the metric top-1 accuracy (:func:`spikecim.train.evaluate`).
"""

from __future__ import annotations

from spikecim.tasks._registry import Task, register_task
from spikecim.train.evaluate import ModelInput, evaluate, predict
from spikecim.train.losses import classification_loss

__all__ = ["Classification"]


@register_task
class Classification(Task):
    name = "classification"
    headline = "accuracy"
    data_kind = "classification"
    soft_targets = True

    def model_input(self, timesteps, encoder, spiking, frames):
        return ModelInput(timesteps, encoder, spiking, frames)

    def loss(self, out, y, mode, label_smoothing=0.0):
        return classification_loss(out, y, mode, label_smoothing)

    def correct(self, out, y):
        return int((predict(out.detach()) == y).sum()), len(y)

    def evaluate(self, model, x, y, inputs, batch_size=256, seed=0, device="cpu", forward=None):
        return evaluate(model, x, y, inputs, batch_size=batch_size, seed=seed, device=device, forward=forward)
