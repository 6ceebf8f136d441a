"""Accuracy of a model, and Monte-Carlo accuracy of its analog version over programming seeds.

:func:`monte_carlo_scores` scores each seed with a task's own metrics
(:meth:`spikecim.tasks.Task.scores`: accuracy for classification; perplexity, bits per byte,
cross-entropy and next-byte accuracy for a language model); :func:`monte_carlo` is its
accuracy.

Every accuracy here is :func:`spikecim.train.evaluate` (the one evaluation path): registry
models take ``[T, B, ...]`` (the encoder builds it; the ANN twin runs T = 1) and return
``[T, B, classes]``, averaged over time; ``timesteps=None`` means a plain torch model
``[B, ...] -> [B, classes]``. ``input_seed`` seeds the encoder's generator (the run's seed in
the analog stage, so the ideal accuracy is the evaluate stage's); the read noise of each
programming seed (in the evaluation and in the drift-compensation readouts of programming
and drift) is drawn in a forked global state seeded with that seed, so a seed's accuracy
depends on nothing that ran before it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.convert import analog_layers, calibrate_adc, drift, program, to_analog
from spikecim.analog.dynamic import dynamic_layers
from spikecim.analog.parallel import map_seeds
from spikecim.errors import SpikecimError
from spikecim.train.evaluate import ModelInput, evaluate
from spikecim.train.seeding import seeded

__all__ = ["accuracy", "evaluate_analog", "monte_carlo", "monte_carlo_scores"]


def _inputs(timesteps: int | None, encoder: str | ModelInput) -> ModelInput:
    return encoder if isinstance(encoder, ModelInput) else ModelInput.from_encoder(timesteps, encoder)


def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    timesteps: int | None = 1,
    encoder: str | ModelInput = "direct",
    batch_size: int = 256,
    input_seed: int = 0,
) -> float:
    """Top-1 accuracy in [0, 1]; logits averaged over the time axis for time-major models.

    ``encoder`` is a spike encoder name, ``"frames"`` / ``"frames-mean"`` for spike-frame
    data (see :meth:`ModelInput.from_encoder`), or a :class:`ModelInput` (then ``timesteps``
    is not used)."""
    return evaluate(model, x, y, _inputs(timesteps, encoder), batch_size=batch_size, seed=input_seed)[
        "accuracy"
    ]


def monte_carlo(
    analog_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seeds: list[int],
    t_inference_s: float = 0.0,
    timesteps: int | None = 1,
    encoder: str | ModelInput = "direct",
    calibration_x: torch.Tensor | None = None,
    batch_size: int = 256,
    input_seed: int = 0,
    workers: int = 1,
    ray_address: str | None = None,
    on_seed: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Accuracy per programming seed: program, calibrate the ADC range (if so configured),
    drift to ``t_inference_s``, evaluate with the read noise seeded by the same seed.

    The ``accuracy`` of :func:`monte_carlo_scores` with the classification task (for a
    language model, the next-byte accuracy); the arguments are its own."""
    scores = monte_carlo_scores(
        analog_model, x, y, seeds, t_inference_s, timesteps, encoder, calibration_x, batch_size,
        input_seed, workers, ray_address, None if on_seed is None else lambda s, r: on_seed(s, r["accuracy"]),
        task="classification",
    )  # fmt: skip
    return [s["accuracy"] for s in scores]


def monte_carlo_scores(
    analog_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seeds: list[int],
    t_inference_s: float = 0.0,
    timesteps: int | None = 1,
    encoder: str | ModelInput = "direct",
    calibration_x: torch.Tensor | None = None,
    batch_size: int = 256,
    input_seed: int = 0,
    workers: int = 1,
    ray_address: str | None = None,
    on_seed: Callable[[int, dict[str, float]], None] | None = None,
    task: str = "classification",
) -> list[dict[str, float]]:
    """The scalar metrics of ``task`` (:meth:`spikecim.tasks.Task.scores`) per programming
    seed: program, calibrate the ADC range (if so configured), drift to ``t_inference_s``,
    score with the read noise seeded by the same seed.

    A layer whose ADC range is ``calibrated`` needs ``calibration_x``: without it the model
    is refused rather than evaluated with an uncalibrated range.

    ``workers`` > 1 runs the seeds in that many worker processes, ``ray_address`` as Ray
    tasks (:mod:`spikecim.analog.parallel`): the scores are the serial loop's, bit for
    bit; ``analog_model`` is then left as it was (the serial loop leaves it programmed with
    the last seed). ``on_seed(seed, scores)`` is called after each seed, in order."""
    from spikecim.tasks import get_task

    get_task(task)  # an unknown task fails here, not in a worker
    if calibration_x is None or len(calibration_x) == 0:
        calibrated = [
            layer for layer in analog_layers(analog_model)
            if layer.config.adc.enabled and layer.config.adc.range == "calibrated"
        ]  # fmt: skip
        calibrated += [
            m for m in dynamic_layers(analog_model) if m.config.dynamic.operand_range == "calibrated"
        ]
        if calibrated:
            raise SpikecimError(
                "calibration_samples: the crossbar's adc.range or dynamic.operand_range is 'calibrated' "
                "but no calibration samples were given; give some, or set adc.range to 'max' or a "
                "number and dynamic.operand_range to 'tile'"
            )
    job = _SeedScores(
        analog_model,
        x,
        y,
        t_inference_s,
        _inputs(timesteps, encoder),
        calibration_x,
        batch_size,
        input_seed,
        task,
    )
    return map_seeds(job, seeds, workers, ray_address, on_seed)


@dataclass
class _SeedScores:
    """One seed of :func:`monte_carlo_scores` (a picklable callable, for worker processes)."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    t_inference_s: float
    inputs: ModelInput
    calibration_x: torch.Tensor | None
    batch_size: int
    input_seed: int
    task: str

    def __call__(self, seed: int) -> dict[str, float]:
        from spikecim.tasks import get_task

        # the drift-compensation readouts of program and drift read with noise too: every
        # draw of the seed comes from the seeded global state, none from what ran before
        with seeded(seed):
            program(self.model, seed)
            if self.calibration_x is not None:
                calib = self.inputs.encode(self.calibration_x, torch.Generator().manual_seed(self.input_seed))
                calibrate_adc(self.model, [calib])
            drift(self.model, self.t_inference_s)
            task = get_task(self.task)
            return task.scores(self.model, self.x, self.y, self.inputs, self.batch_size, self.input_seed)


def evaluate_analog(
    model: nn.Module,
    dataset: Any,
    config: CrossbarConfig | str | dict | None = "pcm-aihwkit",
    timesteps: int | None = 1,
    n_seeds: int = 5,
    t_inference_s: float = 0.0,
    encoder: str | ModelInput | None = None,
    max_samples: int | None = None,
    calibration_samples: int = 256,
    batch_size: int = 256,
    seed: int = 0,
    input_seed: int = 0,
    task: str = "classification",
) -> dict[str, Any]:
    """Digital accuracy and analog accuracy (mean ± std over ``n_seeds`` programming seeds)
    of ``model`` on ``dataset`` (a :class:`spikecim.data.Dataset`: test split evaluated,
    the first ``calibration_samples`` training samples calibrate the ADC range).

    ``encoder`` None: ``"frames"`` for a spike-frame data set, ``"direct"`` otherwise; a
    :class:`~spikecim.train.evaluate.ModelInput` says everything (``timesteps`` unused).
    ``task`` scores the model (:meth:`spikecim.tasks.Task.scores`): the figures are of its
    ``metric``, named in the result (``lm``: perplexity)."""
    from spikecim.tasks import get_task

    if encoder is None:
        encoder = "frames" if getattr(dataset, "frames", False) else "direct"
    if n_seeds < 1:
        raise SpikecimError(f"analog.n_seeds: must be >= 1, got {n_seeds}")
    cfg = load_crossbar_config(config)
    x, y = dataset.x_test, dataset.y_test
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    calib = dataset.x_train[:calibration_samples] if calibration_samples > 0 else None
    scorer = get_task(task)
    ideal = scorer.scores(model, x, y, _inputs(timesteps, encoder), batch_size, input_seed)[scorer.metric]
    am = to_analog(model, cfg)
    seeds = [seed + k for k in range(n_seeds)]
    scores = monte_carlo_scores(
        am, x, y, seeds, t_inference_s, timesteps, encoder, calib, batch_size, input_seed, task=task
    )
    accs = [s[scorer.metric] for s in scores]
    return {
        "metric": scorer.metric,
        "ideal": ideal,
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "accuracies": accs,
        "n_seeds": n_seeds,
        "t_inference_s": t_inference_s,
        "n_samples": len(x),
    }
