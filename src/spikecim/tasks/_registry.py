"""Task registry: what a run learns and how it is scored.

A task is a small plug-in (an :class:`Task` subclass registered with :func:`register_task`)
that owns the parts of the pipeline that depend on what is learned: how a batch is fed to a
model (:meth:`Task.model_input`), the training loss, the share of correct decisions shown
while training, and the evaluation that turns a model and data into metrics. Training
(:func:`spikecim.train.fit`), the ``evaluate`` and ``analog`` stages and the CLI take the
task from ``RunConfig.task`` and never branch on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from spikecim.errors import SpikecimError

__all__ = ["Task", "get_task", "list_tasks", "register_task"]


class Task(ABC):
    """One kind of learning problem. Every hook is abstract: a plug-in fails when built,
    not with a silent default."""

    name: ClassVar[str] = ""
    #: the metric tables and plots lead with (its key in :meth:`evaluate`'s result)
    headline: ClassVar[str] = "accuracy"
    #: the metric crossbars (``analog`` stage) and quantised copies (``ptq`` stage) are compared
    #: in: a key of :meth:`evaluate`'s result and the first of :attr:`scalar_metrics`
    metric: ClassVar[str] = "accuracy"
    #: the scalar metrics of :meth:`evaluate` that :meth:`scores` returns
    scalar_metrics: ClassVar[tuple[str, ...]] = ("accuracy",)
    #: the data sets this task reads (their ``Dataset.task``)
    data_kind: ClassVar[str] = ""
    #: whether :meth:`loss` takes soft targets ``[B, classes]`` (mixup and CutMix give them)
    soft_targets: ClassVar[bool] = False

    @abstractmethod
    def model_input(self, timesteps: int, encoder: str, spiking: bool, frames: bool):
        """The :class:`~spikecim.train.evaluate.ModelInput` that feeds one variant."""

    @abstractmethod
    def loss(
        self, out: torch.Tensor, y: torch.Tensor, mode: str, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """The training loss of the model's raw output ``out`` for targets ``y``; the trainer
        passes ``label_smoothing`` only when ``train.label_smoothing`` is set (a task whose
        loss does not take it is refused then)."""

    @abstractmethod
    def correct(self, out: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
        """(correct decisions, decisions) of the raw output ``out`` in one batch (training progress)."""

    @abstractmethod
    def evaluate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        inputs,
        batch_size: int = 256,
        seed: int = 0,
        device: torch.device | str = "cpu",
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict:
        """Metrics of ``model`` on ``(x, y)``; always ``accuracy``, ``samples`` and ``spike_rates``."""

    def scores(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        inputs,
        batch_size: int = 256,
        seed: int = 0,
    ) -> dict[str, float]:
        """The :attr:`scalar_metrics` of :meth:`evaluate` (what the analog stage records per
        programming seed), :attr:`metric` first."""
        r = self.evaluate(model, x, y, inputs, batch_size=batch_size, seed=seed)
        return {k: float(r[k]) for k in self.scalar_metrics}


_TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register a task class by its ``name`` (class decorator)."""
    if not cls.name:
        raise TypeError(f"{cls.__name__}: a task needs a name")
    if cls.name in _TASKS:
        raise ValueError(f"task '{cls.name}' registered twice")
    if cls.scalar_metrics[:1] != (cls.metric,):
        raise TypeError(f"{cls.__name__}: scalar_metrics must start with its metric '{cls.metric}'")
    _TASKS[cls.name] = cls()
    return cls


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise SpikecimError(f"task: unknown '{name}', allowed: {', '.join(list_tasks())}")
    return _TASKS[name]
