"""Tasks: what a run learns and how it is scored (``classification``, ``lm``).

``get_task(name)`` returns the plug-in (:class:`Task`) that the trainer, the evaluation
stages and the CLI call; see :mod:`spikecim.tasks._registry`. Each task exposes its own
evaluation function: :func:`spikecim.train.evaluate` for classification,
:func:`evaluate_lm` (``evaluate_lm(model, loader) -> metrics``) for language modelling.
"""

from spikecim.tasks import classification, lm  # noqa: F401  (registration)
from spikecim.tasks._registry import Task, get_task, list_tasks, register_task
from spikecim.tasks.lm import evaluate_lm, generate

__all__ = ["Task", "evaluate_lm", "generate", "get_task", "list_tasks", "register_task"]
