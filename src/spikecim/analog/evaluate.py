"""Accuracy of a model, and Monte-Carlo accuracy of its analog version over programming seeds.

``accuracy`` is a small batched loop (no dependency on ``spikecim.train``): registry models
take ``[T, B, ...]`` (the encoder builds it; the ANN twin runs T = 1) and return
``[T, B, classes]``, averaged over time; ``timesteps=None`` means a plain torch model
``[B, ...] -> [B, classes]``.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import nn

from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.analog.convert import analog_layers, calibrate_adc, drift, program, to_analog
from spikecim.errors import SpikecimError

__all__ = ["accuracy", "evaluate_analog", "model_inputs", "monte_carlo"]


def model_inputs(x: torch.Tensor, timesteps: int | None, encoder: str = "direct") -> torch.Tensor:
    """What the model takes: ``x[B, ...]`` encoded to ``[T, B, ...]``, or ``x`` as is.

    Spike-frame data sets (``x[B, T, ...]``) use ``encoder="frames"`` (time moved first) or
    ``"frames-mean"`` (one frame, the mean over time, for the ANN twin)."""
    if timesteps is None:
        return x
    if encoder == "frames":
        return x.float().transpose(0, 1)
    if encoder == "frames-mean":
        return x.float().mean(1).unsqueeze(0)
    from spikecim.data.encode import get_encoder

    return get_encoder(encoder)(x, timesteps, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    timesteps: int | None = 1,
    encoder: str = "direct",
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy in [0, 1]; logits averaged over the time axis for time-major models."""
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for i in range(0, len(x), batch_size):
            out = model(model_inputs(x[i : i + batch_size], timesteps, encoder))
            logits = out.mean(0) if timesteps is not None else out
            correct += int((logits.argmax(-1) == y[i : i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(len(x), 1)


def monte_carlo(
    analog_model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    seeds: list[int],
    t_inference_s: float = 0.0,
    timesteps: int | None = 1,
    encoder: str = "direct",
    calibration_x: torch.Tensor | None = None,
    batch_size: int = 256,
) -> list[float]:
    """Accuracy per programming seed: program, calibrate the ADC range (if so configured),
    drift to ``t_inference_s``, evaluate with the read noise seeded by the same seed.

    A layer whose ADC range is ``calibrated`` needs ``calibration_x``: without it the model
    is refused rather than evaluated with an uncalibrated range."""
    if calibration_x is None or len(calibration_x) == 0:
        calibrated = [
            layer for layer in analog_layers(analog_model)
            if layer.config.adc.enabled and layer.config.adc.range == "calibrated"
        ]  # fmt: skip
        if calibrated:
            raise SpikecimError(
                "calibration_samples: the crossbar's adc.range is 'calibrated' but no calibration "
                "samples were given; give some, or set adc.range to 'max' or a number"
            )
    accs = []
    for s in seeds:
        program(analog_model, s)
        if calibration_x is not None:
            calibrate_adc(analog_model, [model_inputs(calibration_x, timesteps, encoder)])
        drift(analog_model, t_inference_s)
        torch.manual_seed(s)
        accs.append(accuracy(analog_model, x, y, timesteps, encoder, batch_size))
    return accs


def evaluate_analog(
    model: nn.Module,
    dataset: Any,
    config: CrossbarConfig | str | dict | None = "pcm-aihwkit",
    timesteps: int | None = 1,
    n_seeds: int = 5,
    t_inference_s: float = 0.0,
    encoder: str | None = None,
    max_samples: int | None = None,
    calibration_samples: int = 256,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Digital accuracy and analog accuracy (mean ± std over ``n_seeds`` programming seeds)
    of ``model`` on ``dataset`` (a :class:`spikecim.data.Dataset`: test split evaluated,
    the first ``calibration_samples`` training samples calibrate the ADC range).

    ``encoder`` None: ``"frames"`` for a spike-frame data set, ``"direct"`` otherwise."""
    if encoder is None:
        encoder = "frames" if getattr(dataset, "frames", False) else "direct"
    if n_seeds < 1:
        raise SpikecimError(f"analog.n_seeds: must be >= 1, got {n_seeds}")
    cfg = load_crossbar_config(config)
    x, y = dataset.x_test, dataset.y_test
    if max_samples is not None:
        x, y = x[:max_samples], y[:max_samples]
    calib = dataset.x_train[:calibration_samples] if calibration_samples > 0 else None
    ideal = accuracy(model, x, y, timesteps, encoder, batch_size)
    am = to_analog(model, cfg)
    seeds = [seed + k for k in range(n_seeds)]
    accs = monte_carlo(am, x, y, seeds, t_inference_s, timesteps, encoder, calib, batch_size)
    return {
        "ideal": ideal,
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "accuracies": accs,
        "n_seeds": n_seeds,
        "t_inference_s": t_inference_s,
        "n_samples": len(x),
    }


def variant_inputs(model: nn.Module, run_config: Any, dataset: Any) -> tuple[int, str]:
    """Timesteps and encoder of a run's variant: the run's T and encoder for a spiking
    model, T = 1 and ``direct`` for its ANN twin (``frames`` / ``frames-mean`` for frame data)."""
    spiking = bool(getattr(model, "spiking", True))
    frames = bool(getattr(dataset, "frames", False))
    if spiking:
        return run_config.data.timesteps, "frames" if frames else run_config.data.encoder
    return 1, "frames-mean" if frames else "direct"


def evaluate_run_analog(
    ctx: Any,
    config: CrossbarConfig | str | dict | None = "pcm-aihwkit",
    n_seeds: int = 5,
    t_inference_s: float | None = None,
    max_samples: int | None = None,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_analog` for every variant of a loaded run (``ctx.models``,
    ``ctx.data``, ``ctx.config``); ``t_inference_s`` None takes the run's
    ``analog.t_inference_s``."""
    cfg = load_crossbar_config(config)
    if t_inference_s is None:
        t_inference_s = float(getattr(getattr(ctx.config, "analog", None), "t_inference_s", 0.0))
    out = {}
    for name, model in ctx.models.items():
        timesteps, encoder = variant_inputs(model, ctx.config, ctx.data)
        out[name] = evaluate_analog(
            model,
            ctx.data,
            cfg,
            timesteps,
            n_seeds,
            t_inference_s,
            encoder,
            max_samples,
            seed=ctx.config.seed,
        )
    return out
