r"""Speed of a hardware-aware training step against aihwkit-lightning 2.1 and aihwkit 1.1, and of
the conversion of a trained model to its analog twin.

1. **One hardware-aware training step**, the same network and batch in every library, the
   libraries alternating in every round (each round starting one library further on:
   :func:`spikecim.timing.interleaved_times`), median of ``repeats`` rounds after a warm-up:
   forward and backward through the converters and the noisy weights, the update applied to
   the clean weights by Adam, then the weight clipping; cross-entropy of the logits averaged
   over time. The settings (:data:`SETTINGS`) are matched field by field:

   | setting | spikecim (:class:`~spikecim.analog.hwa_config.HwaConverters`) | aihwkit-lightning ``TorchInferenceRPUConfig`` | aihwkit 1.1 ``TorchInferenceRPUConfig`` |
   | --- | --- | --- | --- |
   | weight noise std × max\|W\| of the tile, drawn in each forward call (once per step here) | ``WeightModifier("add_normal", std)`` | ``modifier.noise_type = ADD_NORMAL``, ``std_dev`` | ``modifier.type = ADD_NORMAL``, ``std_dev``, ``rel_to_actual_wmax`` |
   | input DAC bits b | ``dac_bits`` | ``forward.inp_res = 2^b − 2`` | ``forward.inp_res = 2^b − 2`` |
   | output ADC bits b | ``adc_bits`` | ``forward.out_res = 2^b − 2`` | ``forward.out_res = 2^b − 2`` |
   | output bound (× input range × max\|W\|) | ``out_bound`` | ``forward.out_bound`` | ``forward.out_bound``, with ``mapping.weight_scaling_omega = 1`` (max\|W\| of a tile mapped to 1) |
   | learned input range (init 3, from 100 batches at 3 std, decay 0.001) | ``input_range = "learned"`` | ``pre_post.input_range.enable`` | ``pre_post.input_range.enable`` |
   | inputs per tile | ``tile_rows`` | ``mapping.max_input_size`` | ``mapping.max_input_size`` |
   | weight clipping at σ·std(W) after each step | ``weight_clip_sigma`` | ``clip.type = LAYER_GAUSSIAN``, ``clip.sigma`` (``AnalogOptimizer``) | ``clip.type = LAYER_GAUSSIAN``, ``clip.sigma`` (``AnalogAdam``) |

   aihwkit 1.1 runs with ``forward.is_perfect = False`` and its own noise terms and
   managements off, so the arithmetic is the same: ``inp_noise = out_noise = w_noise = 0``,
   ``ir_drop = 0``, ``out_nonlinearity = 0``, ``noise_management = bound_management = NONE``,
   ``inp_bound = 1``, no stochastic rounding. aihwkit-lightning's forward equals spikecim's to
   1e-6 (tests/test_hwa_converters.py).
2. **ANN-to-analog conversion**: spikecim's ``to_analog(model, "pcm-aihwkit")`` (the copy,
   the tiles and their programming) against aihwkit 1.1's ``convert_to_analog`` on
   ``TorchInferenceRPUConfig`` followed by ``program_analog_weights``, and
   aihwkit-lightning's ``convert_to_analog`` (a training simulator: nothing to program).

A peer that is not installed is skipped with a note.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from spikecim.timing import interleaved_times, quiet_stderr, range_text, round_ratios, torch_threads

if TYPE_CHECKING:
    from spikecim.analog.hwa_config import HwaConverters

__all__ = ["HWA_LIBRARIES", "HwaBenchReport", "format_report", "lightning_rpu_config", "run_hwa_benchmark"]

HWA_LIBRARIES = {"spikecim": None, "aihwkit-lightning": "aihwkit_lightning", "aihwkit": "aihwkit"}
NOISE_STD = 0.05
SETTINGS = {
    "dac_bits": 8,
    "adc_bits": 8,
    "out_bound": 10.0,
    "input_range": "learned",
    "tile_rows": 256,
    "weight_clip_sigma": 2.5,
}
MISSING = "—"


@dataclass(frozen=True)
class HwaRow:
    model: str
    library: str
    median_ms: float
    min_ms: float
    spikecim_speedup: float | None  # this library's median / spikecim's
    round_ms: tuple[float, ...] = ()  # every timed step, in the order of the rounds
    # the least and the most of this library's step / spikecim's step in the same round
    round_speedups: tuple[float, float] | None = None


@dataclass(frozen=True)
class ConversionRow:
    model: str
    spikecim_s: float
    aihwkit_lightning_s: float | None
    aihwkit_s: float | None


@dataclass
class HwaBenchReport:
    noise_std: float
    settings: dict
    repeats: int
    threads: int
    torch_version: str
    rows: list[HwaRow] = field(default_factory=list)
    conversion: list[ConversionRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def _models(quick: bool) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(name, model, input [T, B, ...]: one image repeated over T, direct encoding)."""
    from spikecim.models import create_model

    torch.manual_seed(0)
    if quick:
        return [
            (
                "MLP 64-32-10, batch 8",
                create_model("mlp", spiking=False, hidden=(32,)),
                _repeat(torch.rand(8, 1, 8, 8), 1),
            ),
            (
                "convnet SNN width 0.25, T=2, batch 4",
                create_model("convnet", spiking=True, width=0.25),
                _repeat(torch.rand(4, 1, 8, 8), 2),
            ),
        ]
    return [
        (
            "convnet ANN (digits), batch 64",
            create_model("convnet", spiking=False),
            _repeat(torch.rand(64, 1, 8, 8), 1),
        ),
        (
            "convnet SNN T=4 (digits), batch 64",
            create_model("convnet", spiking=True),
            _repeat(torch.rand(64, 1, 8, 8), 4),
        ),
        (
            "VGG-9 ANN (3x32x32), batch 32",
            create_model("vgg9", spiking=False),
            _repeat(torch.rand(32, 3, 32, 32), 1),
        ),
    ]


def _repeat(image: torch.Tensor, steps: int) -> torch.Tensor:
    return image.expand(steps, *image.shape).contiguous()


def _converters():
    from spikecim.analog.hwa_config import HwaConverters

    return HwaConverters(**SETTINGS)


def _spikecim_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    import copy

    from spikecim.analog.hwa import hwa_layers
    from spikecim.analog.mitigation import WeightModifier, hwa_optimizer, hwa_step
    from spikecim.train.evaluate import ModelInput

    converters = _converters()
    modifier = WeightModifier(kind="add_normal", std=NOISE_STD)
    gen = torch.Generator().manual_seed(0)
    model = copy.deepcopy(model)
    model = hwa_layers(model, converters, modifier, gen).train()
    opt = hwa_optimizer(list(model.parameters()), 1e-3)  # Adam as hwa_train runs it
    inputs = ModelInput.from_encoder(x.shape[0], "direct")
    image = x[0]  # direct encoding repeats it over the T steps (no draw: no generator)
    # the layers hold the modifier and the generator of the weight noise
    return lambda: hwa_step(model, opt, image, y, None, inputs, None, converters)


def _peer_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> Callable[[], None]:
    model.train()

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x).mean(0), y).backward()
        opt.step()

    return step


def _lightning_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    from aihwkit_lightning.optim import AnalogOptimizer

    analog = _lightning(model)
    opt = AnalogOptimizer(torch.optim.Adam, analog.analog_layers, analog.parameters(), lr=1e-3)
    return _peer_step(analog, opt, x, y)


def _aihwkit_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    with quiet_stderr():
        from aihwkit.optim import AnalogAdam

    analog = _aihwkit(model)
    opt = AnalogAdam(analog.parameters(), lr=1e-3)
    opt.regroup_param_groups(analog)
    return _peer_step(analog, opt, x, y)


def lightning_rpu_config(converters: HwaConverters, noise_std: float = 0.0):
    """aihwkit-lightning 2.1's ``TorchInferenceRPUConfig`` for ``converters``
    (:class:`~spikecim.analog.hwa_config.HwaConverters`, field by field as in its module
    docstring) and, with ``noise_std`` > 0, the ``add_normal`` weight noise of that std
    (× max|W| of the tile); every setting left off keeps aihwkit-lightning's default (off)."""
    with quiet_stderr():
        from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig
        from aihwkit_lightning.simulator.parameters.enums import WeightClipType, WeightNoiseInjectionType

    c = converters
    cfg = TorchInferenceRPUConfig()
    if noise_std > 0:
        cfg.modifier.noise_type, cfg.modifier.std_dev = WeightNoiseInjectionType.ADD_NORMAL, noise_std
    cfg.forward.inp_res = 2**c.dac_bits - 2 if c.dac_bits is not None else -1
    cfg.forward.out_res = 2**c.adc_bits - 2 if c.adc_bits is not None else -1
    cfg.forward.out_bound = c.out_bound if c.out_bound is not None else 0.0
    ir = cfg.pre_post.input_range
    ir.enable = c.input_range is not None
    ir.dynamic = c.input_range == "abs-max"
    ir.init_value, ir.init_from_data, ir.init_std_alpha = c.range_init, c.range_init_batches, c.range_init_std
    ir.decay, ir.input_min_percentage = c.range_decay, c.range_min_unclipped
    cfg.mapping.max_input_size = c.tile_rows if c.tile_rows is not None else -1
    if c.weight_clip_sigma is not None:
        cfg.clip.type, cfg.clip.sigma = WeightClipType.LAYER_GAUSSIAN, c.weight_clip_sigma
    return cfg


def _lightning(model: nn.Module) -> nn.Module:
    import copy

    with quiet_stderr():
        from aihwkit_lightning.nn.conversion import convert_to_analog

    from spikecim.nn.twins import torch_layers

    return convert_to_analog(
        torch_layers(copy.deepcopy(model)), lightning_rpu_config(_converters(), NOISE_STD)
    )


def _aihwkit_config(training: bool):
    with quiet_stderr():
        from aihwkit.simulator.configs import TorchInferenceRPUConfig
        from aihwkit.simulator.parameters.enums import (
            BoundManagementType,
            NoiseManagementType,
            WeightClipType,
            WeightModifierType,
        )

    cfg = TorchInferenceRPUConfig()
    if training:
        c = _converters()
        cfg.modifier.type = WeightModifierType.ADD_NORMAL
        cfg.modifier.std_dev = NOISE_STD
        cfg.modifier.rel_to_actual_wmax = True
        f = cfg.forward
        f.is_perfect = False
        f.inp_res, f.out_res, f.out_bound, f.inp_bound = (
            2**c.dac_bits - 2,
            2**c.adc_bits - 2,
            c.out_bound,
            1.0,
        )
        f.inp_noise = f.out_noise = f.w_noise = f.ir_drop = f.out_nonlinearity = 0.0
        f.noise_management, f.bound_management = NoiseManagementType.NONE, BoundManagementType.NONE
        f.inp_sto_round = f.out_sto_round = False
        cfg.pre_post.input_range.enable = True
        cfg.mapping.max_input_size = c.tile_rows
        cfg.mapping.weight_scaling_omega = 1.0
        cfg.clip.type, cfg.clip.sigma = WeightClipType.LAYER_GAUSSIAN, c.weight_clip_sigma
    return cfg


def _aihwkit(model: nn.Module, training: bool = True) -> nn.Module:
    """aihwkit 1.1's copy of ``model``: torch's layers in place of spikecim's (which aihwkit
    does not know, and would leave digital), then its analog layers."""
    import copy

    with quiet_stderr():
        from aihwkit.nn.conversion import convert_to_analog

    from spikecim.nn.twins import torch_layers

    return convert_to_analog(torch_layers(copy.deepcopy(model)), _aihwkit_config(training=training))


def _aihwkit_programmed(model: nn.Module) -> nn.Module:
    """aihwkit 1.1's inference copy of ``model``, programmed: the conversion it is timed on."""
    analog = _aihwkit(model, training=False).eval()
    analog.program_analog_weights()
    return analog


def run_hwa_benchmark(repeats: int = 5, threads: int | None = 1, quick: bool = False) -> HwaBenchReport:
    """Time the hardware-aware training step and the conversion; see the module docstring.
    ``quick``: two tiny models, 2 rounds."""
    # what the peers print while they run (aihwkit-lightning's layers, imported without Triton,
    # print a line: aihwkit_lightning/nn/modules/linear.py, conv.py) goes to stderr: the report
    # is returned, and --json prints it on stdout alone
    with torch_threads(threads), contextlib.redirect_stdout(sys.stderr):
        repeats = 2 if quick else repeats
        report = HwaBenchReport(
            NOISE_STD, dict(SETTINGS), repeats, torch.get_num_threads(), torch.__version__
        )
        peers = []
        for name, module in HWA_LIBRARIES.items():
            if module is None:
                continue
            if importlib.util.find_spec(module) is None:
                report.notes.append(f"{name}: not installed, skipped (pip install 'spikecim[peers]')")
            else:
                peers.append(name)
        for name, model, x in _models(quick):
            y = torch.randint(0, 10, (x.shape[1],), generator=torch.Generator().manual_seed(0))
            steps = {"spikecim": _spikecim_step(model, x, y)}
            if "aihwkit-lightning" in peers:
                steps["aihwkit-lightning"] = _lightning_step(model, x, y)
            if "aihwkit" in peers:
                steps["aihwkit"] = _aihwkit_step(model, x, y)
            times = interleaved_times(list(steps.values()), repeats)
            ours = statistics.median(times[0])
            for library, ts in zip(steps, times, strict=True):
                med = statistics.median(ts)
                report.rows.append(
                    HwaRow(
                        name,
                        library,
                        med * 1e3,
                        min(ts) * 1e3,
                        med / ours,
                        tuple(t * 1e3 for t in ts),
                        round_ratios(ts, times[0]),
                    )
                )
            report.conversion.append(_conversion_row(name, model.eval(), peers, repeats))
        return report


def _conversion_row(name: str, model: nn.Module, peers: list[str], repeats: int) -> ConversionRow:
    from spikecim.analog import to_analog

    fns: list[Callable[[], object]] = [lambda: to_analog(model, "pcm-aihwkit")]
    if "aihwkit-lightning" in peers:
        fns.append(lambda: _lightning(model))
    if "aihwkit" in peers:
        fns.append(lambda: _aihwkit_programmed(model))
    medians = [statistics.median(ts) for ts in interleaved_times(fns, repeats)]
    ours, rest = medians[0], iter(medians[1:])
    return ConversionRow(
        name,
        ours,
        next(rest) if "aihwkit-lightning" in peers else None,
        next(rest) if "aihwkit" in peers else None,
    )


def _settings(settings: dict) -> str:
    return (
        f"DAC {settings['dac_bits']} b, ADC {settings['adc_bits']} b, output bound {settings['out_bound']:g}, "
        f"{settings['input_range']} input range, {settings['tile_rows']} inputs per tile, "
        f"weight clipping at {settings['weight_clip_sigma']:g} std"
    )


def format_report(report: HwaBenchReport) -> str:
    """The two Markdown tables, then the columns' meaning and any notes."""

    def ratio(v: float | None, ours: float) -> str:
        return MISSING if v is None else f"{v / ours:.2f}"

    def sec(v: float | None) -> str:
        return MISSING if v is None else f"{v:.4g}"

    lines = [
        (
            f"Hardware-aware training step (weight noise {report.noise_std:g} x max|W|, "
            f"{_settings(report.settings)}; forward + backward + Adam + clipping), median of {report.repeats} "
            f"interleaved steps; torch {report.torch_version}, threads: {report.threads}"
        ),
        "",
        "| model | library | median ms | min ms | spikecim speed-up | per round |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        speedup = MISSING if r.spikecim_speedup is None else f"{r.spikecim_speedup:.2f}"
        spread = range_text(r.round_speedups, MISSING)
        lines.append(
            f"| {r.model} | {r.library} | {r.median_ms:.2f} | {r.min_ms:.2f} | {speedup} | {spread} |"
        )
    lines += [
        "",
        "Conversion of the trained model to its analog twin (median):",
        "",
        (
            "| model | spikecim to_analog, programmed (s) | aihwkit-lightning convert_to_analog (s) | speed-up "
            "| aihwkit 1.1 convert_to_analog + program_analog_weights (s) | speed-up |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in report.conversion:
        lines.append(
            f"| {c.model} | {sec(c.spikecim_s)} | {sec(c.aihwkit_lightning_s)} | "
            f"{ratio(c.aihwkit_lightning_s, c.spikecim_s)} | {sec(c.aihwkit_s)} | {ratio(c.aihwkit_s, c.spikecim_s)} |"
        )
    lines += [
        "",
        (
            "spikecim speed-up: the library's median / spikecim's. Every library runs the same DAC, ADC, "
            "output bound, learned input range, tiles and weight clipping (hwa_benchmark's docstring)."
        ),
    ]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
