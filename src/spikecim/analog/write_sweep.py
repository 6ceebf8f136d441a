"""Accuracy against the write-noise factor γ of the crossbars written at run time, with and
without ClipFormer, and with and without variation-aware (hardware-aware) training.

The sweep of ClipFormer (Bhattacharjee, Moitra, Panda, IEEE TCAD 2024;
docs/references.md#clipformer): every :class:`spikecim.ops.MatMul` of the model is put on
written crossbars (``dynamic.unit: crossbar`` unless the config names another non-digital
unit), γ takes each value of ``gammas``, ClipFormer is off then on (the config's α, β), and
each point is the Monte-Carlo accuracy over programming seeds
(:func:`spikecim.analog.evaluate.monte_carlo`: the write noise is drawn at every call from
the RNG seeded with the seed). ``models`` maps a training label (``plain``, ``hwa``) to the
digital model evaluated. ``task`` names the task whose metric scores each point
(:attr:`spikecim.tasks.Task.metric`: accuracy, or a language model's perplexity).
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from spikecim import ops
from spikecim.analog.config import CrossbarConfig
from spikecim.analog.convert import to_analog
from spikecim.analog.evaluate import monte_carlo_scores
from spikecim.errors import SpikecimError
from spikecim.train.evaluate import ModelInput

__all__ = ["has_dynamic_products", "sweep_config", "write_noise_sweep"]


def has_dynamic_products(model: nn.Module) -> bool:
    """Whether ``model`` has a product of two activations (a :class:`spikecim.ops.MatMul`)."""
    return any(isinstance(m, ops.MatMul) for m in model.modules())


def sweep_config(config: CrossbarConfig, gamma: float, clip: bool) -> CrossbarConfig:
    """``config`` with the products on written crossbars, write-noise factor ``gamma`` and
    ClipFormer switched ``clip``."""
    unit = "crossbar" if config.dynamic.unit == "digital" else config.dynamic.unit
    return config.with_updates(
        dynamic={
            "unit": unit,
            "write_noise_gamma": gamma,
            "clipformer": {**config.dynamic.clipformer.model_dump(), "enabled": clip},
        }
    )


def write_noise_sweep(
    models: dict[str, nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    config: CrossbarConfig,
    gammas: list[float],
    seeds: list[int],
    inputs: ModelInput,
    calibration_x: torch.Tensor | None = None,
    t_inference_s: float = 0.0,
    input_seed: int = 0,
    task: str = "classification",
) -> dict:
    """Accuracy per (training, ClipFormer, γ): ``{"gamma": [...], "curves": [{"training",
    "clipformer", "mean": [...], "std": [...]}, ...]}`` (module docstring)."""
    if not gammas:
        raise SpikecimError("write_noise_gammas: give at least one γ")
    if any(not g >= 0 for g in gammas):
        raise SpikecimError(f"write_noise_gammas: every γ must be >= 0, got {gammas}")
    for label, model in models.items():
        if not has_dynamic_products(model):
            raise SpikecimError(
                f"write_noise_gammas: model '{label}' has no MatMul of two activations to write"
            )
    from spikecim.tasks import get_task

    metric = get_task(task).metric
    curves = []
    for label, model in models.items():
        model.eval()
        for clip in (False, True):
            means, stds = [], []
            for gamma in gammas:
                am = to_analog(model, sweep_config(config, gamma, clip))
                scores = monte_carlo_scores(
                    am,
                    x,
                    y,
                    seeds,
                    t_inference_s,
                    None,
                    inputs,
                    calibration_x,
                    input_seed=input_seed,
                    task=task,
                )
                accs = [s[metric] for s in scores]
                means.append(statistics.fmean(accs))
                stds.append(statistics.stdev(accs) if len(accs) > 1 else 0.0)
            curves.append({"training": label, "clipformer": clip, "mean": means, "std": stds})
    return {"gamma": list(gammas), "curves": curves}


def plot_write_noise_sweep(
    sweep: dict, ideal: dict[str, float], path, title: str = "", metric: str = "accuracy"
) -> None:
    """Accuracy (%) against γ, one line per (training, ClipFormer), the digital accuracy dashed
    (``metric`` other than accuracy, e.g. perplexity, as it is)."""
    from spikecim.report.fmt import metric_axis
    from spikecim.report.plots import plt, save_figure

    scale, _, ylabel = metric_axis(metric)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    labels = list(dict.fromkeys(c["training"] for c in sweep["curves"]))
    for c in sweep["curves"]:
        color = f"C{labels.index(c['training'])}"
        ax.errorbar(
            sweep["gamma"],
            [v * scale for v in c["mean"]],
            yerr=[v * scale for v in c["std"]],
            marker="o" if c["clipformer"] else "s",
            ms=3,
            capsize=3,
            color=color,
            ls="-" if c["clipformer"] else ":",
            label=f"{c['training']}, ClipFormer {'on' if c['clipformer'] else 'off'}",
        )
    for label, acc in ideal.items():
        ax.axhline(acc * scale, ls="--", lw=1, color=f"C{labels.index(label)}" if label in labels else "k")
    ax.set_xlabel("write-noise factor γ")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"written K/V: {metric} vs γ", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)
