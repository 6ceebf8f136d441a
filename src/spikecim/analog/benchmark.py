"""Speed of analog inference against IBM aihwkit 1.1, and of the IR-drop solvers.

1. Noisy inference, the ``pcm-aihwkit`` preset against aihwkit 1.1's pure-torch inference
   tile (``TorchInferenceRPUConfig``: PCMLikeNoiseModel, IO defaults, 512×512 tiles), same
   model and batch, measured side by side in one process: median time of one noisy forward,
   and of a Monte-Carlo loop (5 × program, drift to 1 h, forward), and their ratios.
   spikecim draws read noise afresh at every forward; aihwkit draws it once per
   ``drift_analog_weights`` call, so the same work on its side (a fresh read-noise draw for
   every forward) is ``drift_analog_weights`` + forward: both are timed. The callables are
   interleaved in every round, each round starting one callable further on
   (:func:`spikecim.timing.interleaved_times`), so a change of load on a shared machine hits
   all of them alike. The same model's digital forward is timed in the same
   rounds: the noisy forward's cost over the digital floor (``times_digital``, and the least and
   the most of that ratio in one round over the rounds, ``times_digital_per_round``). vit-tiny
   (untrained, 8×8 inputs) runs with K and V written into crossbars at every inference
   (``VIT_CROSSBAR``: write noise, ClipFormer, PCM read noise); aihwkit has no such
   crossbars, so its columns read "—" there. The models are untrained; before timing, their
   BatchNorm layers take the running statistics of the benchmark's own input
   (:func:`batchnorm_statistics`), as a trained network's hold those of its data. With
   BatchNorm's initial statistics (mean 0, variance 1) the untrained spiking VGG-9's
   layers after the second convolution never fire, and its digital forward, event-driven,
   has almost nothing to add. ``input_spike_rate`` is the share of ones among the binary
   inputs of the crossbar layers in one noisy forward. What the Gaussian draws cost: the
   same model on the same crossbars (the same programming and drift) without its output
   noise, then without its read (and write) noise too, timed in the same rounds
   (``without_s``, ``times_digital_without``; :data:`PARTS`, :func:`parts_off`).
2. Exact IR drop: one factorisation plus 1000 input vectors for 128×128 and 256×256 arrays,
   and the factorisation of a 128×128 array by SuperLU for comparison.
3. The fast IR-drop model: its relative error against the exact solver (``kappa``
   calibrated on a 64×64 corner of the array), and its time.

``quick=True`` runs a tiny MLP and convnet and one 32×32 array with 100 vectors, in
seconds. Without aihwkit the spikecim times are still measured; its columns read "—".

``device="cuda"`` runs the models and their inputs on that GPU: the crossbars are programmed
and drifted on the CPU, as always, and the layers move their tiles to the input's device at
the next read; every timed call waits for the GPU before the clock is read. aihwkit 1.1's
CPU build and the IR-drop solvers (scipy) run on the CPU only, so on a GPU the suite times
spikecim's noisy and digital forwards and its Monte-Carlo loop, and says so in its notes.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from spikecim.analog.config import CrossbarConfig, load_crossbar_config
from spikecim.config import written_over
from spikecim.timing import (
    bench_device,
    device_name,
    interleaved_times,
    quiet_stderr,
    range_text,
    round_ratios,
    torch_threads,
)

__all__ = [
    "AnalogBenchReport",
    "IRDropRow",
    "InferenceRow",
    "batchnorm_statistics",
    "format_report",
    "run_analog_benchmark",
]

DRIFT_S = 3600.0  # both libraries read the weights 1 h after programming
MC_DRAWS = 5  # program, drift, forward: this many times per Monte-Carlo loop
MISSING = "—"
# vit-tiny's four activation products on crossbars written at every inference: write noise
# γ = 5 and ClipFormer (as benchmarks/bench_attention.py's speed run), PCM static layers
VIT_CROSSBAR = {
    "preset": "pcm-aihwkit",
    "dynamic": {"unit": "crossbar", "write_noise_gamma": 5.0, "clipformer": {"enabled": True}},
}
# The noise a forward draws, switched off one after the other (the second column keeps the
# first off), as column headers: what the Gaussian draws cost over the rest of the forward
# (the DAC, the tiles' products, the ADC). The DAC and ADC stay on: without them a layer
# takes other paths (a convolution of analog inputs the direct one), which would not time
# the converters alone.
PARTS = (
    ("without output noise", {"out_noise_std": 0.0}),
    (
        "also without read (and write) noise",
        {"device": {"read_noise_enabled": False}, "dynamic": {"write_noise_gamma": 0.0}},
    ),
)


@dataclass(frozen=True)
class InferenceRow:
    model: str
    spikecim_s: float  # one noisy forward, median
    aihwkit_s: float | None  # one forward reusing aihwkit's read-noise draw
    speedup: float | None  # aihwkit_s / spikecim_s
    aihwkit_fresh_read_s: float | None  # drift_analog_weights + forward: a fresh draw, the same work
    speedup_fresh_read: float | None  # aihwkit_fresh_read_s / spikecim_s
    mc_spikecim_s: float  # MC_DRAWS × (program, drift, forward), median
    mc_aihwkit_s: float | None
    mc_speedup: float | None  # mc_aihwkit_s / mc_spikecim_s
    digital_s: float  # the same model's digital forward, same input, median
    times_digital: float  # spikecim_s / digital_s: what the noisy crossbar costs over the digital floor
    input_spike_rate: float | None = None  # ones ÷ entries of the crossbar layers' binary inputs (None: none)
    noisy_round_s: tuple[float, ...] = ()  # every timed noisy forward, in the order of the rounds
    digital_round_s: tuple[float, ...] = ()  # every timed digital forward, the same rounds
    # the least and the most of the noisy forward / the digital one in the same round
    times_digital_per_round: tuple[float, float] | None = None
    # the noisy forward with the PARTS switched off, the first k + 1 of them at entry k, median,
    # timed in the same rounds; and each over the digital forward
    without_s: tuple[float, ...] = ()
    times_digital_without: tuple[float, ...] = ()


@dataclass(frozen=True)
class IRDropRow:
    array: str
    vectors: int
    exact_s: float  # factorise + ``vectors`` input vectors
    fast_s: float | None = None  # the fast model on the same vectors (None: SuperLU comparison row)
    fast_rel_error: float | None = None  # ‖I_fast − I_exact‖ / ‖I_exact‖
    ideal_rel_error: float | None = None  # the same for no IR drop at all (v @ G)
    kappa: float | None = None  # the fast model's calibrated factor


@dataclass
class AnalogBenchReport:
    machine: str
    torch_version: str
    threads: int
    repeats: int
    device: str = "cpu"  # where the models ran: cpu, or cuda:N (the card's name)
    rows: list[InferenceRow] = field(default_factory=list)
    ir_drop: list[IRDropRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def run_analog_benchmark(
    repeats: int = 5, threads: int | None = 1, quick: bool = False, device: str = "cpu"
) -> AnalogBenchReport:
    """Time noisy inference against aihwkit and the IR-drop solvers; see the module docstring.

    ``repeats``: timed rounds of one forward (the Monte-Carlo loop gets ``repeats // 3``,
    at least 1); ``quick`` uses 2. ``threads`` sets ``torch.set_num_threads`` for both
    libraries during the run (restored after); None keeps it. ``device``: ``cpu`` or
    ``cuda``/``cuda:N`` (a GPU torch sees; a one-line error naming ``--device`` otherwise).
    """
    dev = bench_device(device)
    with torch_threads(threads):
        return _run(repeats, quick, dev)


def format_report(report: AnalogBenchReport) -> str:
    """The Markdown tables: one noisy forward, the Monte-Carlo loop, IR drop; then any notes."""
    lines = [
        (
            f"machine: {report.machine}, {report.threads} torch threads, torch {report.torch_version}, "
            f"device: {report.device}"
        ),
        "",
        "One noisy forward (median); spikecim draws the read noise afresh in every forward:",
        "",
        (
            "| model | spikecim (s) | aihwkit 1.1, forward reusing its read-noise draw (s) | speed-up "
            "| aihwkit 1.1, drift_analog_weights + forward: fresh draw, the same work (s) | speed-up |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.model} | {_s(r.spikecim_s)} | {_s(r.aihwkit_s)} | {_x(r.speedup)} "
            f"| {_s(r.aihwkit_fresh_read_s)} | {_x(r.speedup_fresh_read)} |"
        )
    lines += [
        "",
        (
            "The noisy crossbar forward (read noise drawn in every forward, DAC and ADC on) against the same "
            "model's digital forward, same input, timed in the same rounds:"
        ),
        "",
        (
            "| model | digital forward (s) | noisy crossbar forward (s) | × digital | × digital, per round "
            "| spikes in the crossbar inputs |"
        ),
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        rate = MISSING if r.input_spike_rate is None else f"{r.input_spike_rate:.1%}"
        spread = range_text(r.times_digital_per_round, MISSING, "×")
        lines.append(
            f"| {r.model} | {_s(r.digital_s)} | {_s(r.spikecim_s)} | {r.times_digital:.2f}× | {spread} | {rate} |"
        )
    lines += [
        "",
        (
            "What the noise costs: the same model on the same crossbars with its noise switched off, "
            "over the digital forward, timed in the same rounds (DAC and ADC on):"
        ),
        "",
        "| model | × digital | " + " | ".join(name + ", × digital" for name, _ in PARTS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in PARTS) + " |",
    ]
    for r in report.rows:
        parts = " | ".join(f"{x:.2f}×" for x in r.times_digital_without)
        lines.append(f"| {r.model} | {r.times_digital:.2f}× | {parts} |")
    lines += [
        "",
        f"Monte-Carlo: {MC_DRAWS} × (program, drift to 1 h, one noisy forward):",
        "",
        "| model | spikecim (s) | aihwkit 1.1 torch tile (s) | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for r in report.rows:
        lines.append(f"| {r.model} | {_s(r.mc_spikecim_s)} | {_s(r.mc_aihwkit_s)} | {_x(r.mc_speedup)} |")
    vectors = report.ir_drop[0].vectors if report.ir_drop else 1000
    lines += [
        "",
        (
            f"| array | exact IR drop, factorise + {vectors} vectors (s) | fast model (s) "
            "| fast rel. error | no-IR-drop rel. error |"
        ),
        "| --- | --- | --- | --- | --- |",
    ]
    for r in report.ir_drop:
        if r.fast_s is None:
            lines.append(f"| {r.array} | {_s(r.exact_s)} | | | |")
        else:
            lines.append(
                f"| {r.array} | {_s(r.exact_s)} | {_s(r.fast_s)} | {r.fast_rel_error:.2e} | {r.ideal_rel_error:.2e} |"
            )
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _run(repeats: int, quick: bool, dev: torch.device) -> AnalogBenchReport:
    repeats = 2 if quick else repeats
    report = AnalogBenchReport(
        machine=platform.processor() or platform.machine(),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        repeats=repeats,
        device=device_name(dev),
    )
    on_cpu = dev.type == "cpu"
    with_aihwkit = on_cpu and importlib.util.find_spec("aihwkit") is not None
    if not on_cpu:
        report.notes.append(
            f"aihwkit: not timed on {dev} (aihwkit 1.1's CPU build); run --device cpu for its columns"
        )
    elif not with_aihwkit:
        report.notes.append("aihwkit: not installed, only spikecim timed (pip install 'spikecim[peers]')")
    for name, model, x, crossbar in _models(quick):
        batchnorm_statistics(model, x)
        peer = with_aihwkit and crossbar == "pcm-aihwkit"  # aihwkit has no crossbars written at run time
        report.rows.append(_inference_row(name, model.to(dev), x.to(dev), repeats, peer, crossbar))
    if on_cpu:
        sizes, vectors = ((32,), 100) if quick else ((128, 256), 1000)
        report.ir_drop = _ir_drop_rows(sizes, vectors)
    else:
        report.notes.append("IR drop: its solvers run on the CPU (scipy); run --device cpu for its table")
    return report


def _models(quick: bool) -> list[tuple[str, nn.Module, torch.Tensor, str | dict]]:
    """``(row name, model, input, crossbar config)`` of every timed model."""
    from spikecim.models import create_model
    from spikecim.nn import Linear  # as the built-in models' layers: the digital floor on oneDNN

    torch.manual_seed(0)
    if quick:
        mlp = nn.Sequential(nn.Flatten(), Linear(64, 32), nn.ReLU(), Linear(32, 10))
        return [
            ("MLP 64-32-10, batch 8", mlp.eval(), torch.rand(8, 1, 8, 8), "pcm-aihwkit"),
            (
                "convnet SNN T=2 (digits), batch 4",
                create_model("convnet", spiking=True).eval(),
                torch.rand(2, 4, 1, 8, 8),
                "pcm-aihwkit",
            ),
        ]
    mlp = nn.Sequential(
        nn.Flatten(), Linear(1024, 512), nn.ReLU(), Linear(512, 512), nn.ReLU(), Linear(512, 10)
    )
    conv = create_model("convnet", spiking=False)
    snn = create_model("convnet", spiking=True)
    vgg = create_model("vgg9", spiking=False)  # CIFAR-10 size: 3×32×32, 5.9 M weights
    vgg_snn = create_model("vgg9", spiking=True)
    vit = create_model("vit-tiny", spiking=False, num_classes=10, in_channels=1, input_size=8)
    pcm = "pcm-aihwkit"
    return [
        ("MLP 1024-512-512-10, batch 256", mlp.eval(), torch.rand(256, 1, 32, 32), pcm),
        ("convnet ANN (digits), batch 256", conv.eval(), torch.rand(1, 256, 1, 8, 8), pcm),
        ("convnet SNN T=4 (digits), batch 64", snn.eval(), torch.rand(4, 64, 1, 8, 8), pcm),
        ("VGG-9 ANN (CIFAR-10 size), batch 32", vgg.eval(), torch.rand(1, 32, 3, 32, 32), pcm),
        ("VGG-9 SNN T=4 (CIFAR-10 size), batch 8", vgg_snn.eval(), torch.rand(4, 8, 3, 32, 32), pcm),
        (
            "vit-tiny (digits), K/V written with write noise, batch 256",
            vit.eval(),
            torch.rand(1, 256, 1, 8, 8),
            VIT_CROSSBAR,
        ),
    ]


def _inference_row(
    name: str, model: nn.Module, x: torch.Tensor, repeats: int, with_aihwkit: bool, crossbar: str | dict
) -> InferenceRow:
    from spikecim.analog import drift, program, to_analog

    ours = to_analog(model, load_crossbar_config(crossbar))
    program(ours, 0)
    drift(ours, DRIFT_S)
    spike_rate = _input_spike_rate(ours, x)
    lighter = []  # the same crossbars with the PARTS switched off, one more each
    for config in parts_off(crossbar):
        lighter.append(to_analog(model, config))
        program(lighter[-1], 0)
        drift(lighter[-1], DRIFT_S)

    def mc_ours():
        for seed in range(MC_DRAWS):
            program(ours, seed)
            drift(ours, DRIFT_S)
            ours(x)

    forwards = [lambda: ours(x), lambda: model(x), *(functools.partial(m, x) for m in lighter)]
    loops = [mc_ours]
    if with_aihwkit:
        theirs = _aihwkit_model(model)

        def fresh_read():  # aihwkit's only way to redraw the read noise
            theirs.drift_analog_weights(DRIFT_S)
            theirs(x)

        def mc_theirs():
            for _ in range(MC_DRAWS):
                theirs.program_analog_weights()
                theirs.drift_analog_weights(DRIFT_S)
                theirs(x)

        forwards += [lambda: theirs(x), fresh_read]
        loops.append(mc_theirs)
    with torch.no_grad():
        rounds = interleaved_times(forwards, repeats, device=x.device)
        t_ours, t_digital, *t_rest = (statistics.median(ts) for ts in rounds)
        t_without, t_theirs = t_rest[: len(lighter)], t_rest[len(lighter) :]
        t_mc_ours, *t_mc_theirs = _median_times(loops, max(1, repeats // 3), x.device)
    t_reuse, t_fresh = t_theirs or (None, None)
    t_mc = t_mc_theirs[0] if t_mc_theirs else None
    return InferenceRow(
        model=name,
        spikecim_s=t_ours,
        aihwkit_s=t_reuse,
        speedup=_ratio(t_reuse, t_ours),
        aihwkit_fresh_read_s=t_fresh,
        speedup_fresh_read=_ratio(t_fresh, t_ours),
        mc_spikecim_s=t_mc_ours,
        mc_aihwkit_s=t_mc,
        mc_speedup=_ratio(t_mc, t_mc_ours),
        digital_s=t_digital,
        times_digital=t_ours / t_digital,
        input_spike_rate=spike_rate,
        noisy_round_s=tuple(rounds[0]),
        digital_round_s=tuple(rounds[1]),
        times_digital_per_round=round_ratios(rounds[0], rounds[1]),
        without_s=tuple(t_without),
        times_digital_without=tuple(t / t_digital for t in t_without),
    )


def parts_off(crossbar: str | dict) -> list[CrossbarConfig]:
    """The crossbar config ``crossbar`` with the :data:`PARTS` switched off: the first k + 1
    of them in entry k."""
    base = {"preset": crossbar} if isinstance(crossbar, str) else copy.deepcopy(crossbar)
    configs = []
    for _, off in PARTS:
        base = written_over(base, off)
        configs.append(load_crossbar_config(base))
    return configs


def batchnorm_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Set every BatchNorm layer's running mean and variance to those of ``model(x)`` (one
    training-mode forward without a gradient, averaged exactly: ``momentum=None``, torch's
    cumulative average, which after one batch is that batch's statistics) and return the
    model in eval mode. An untrained model's layers otherwise hold BatchNorm's initial
    statistics (mean 0, variance 1), which do not describe its activations."""
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in batchnorms]
    for m in batchnorms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for m, momentum in zip(batchnorms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    return model


def _input_spike_rate(model: nn.Module, x: torch.Tensor) -> float | None:
    """The share of ones among the entries of the crossbar layers' inputs that hold only
    zeros and ones, in one forward of ``model`` (None where no such input reaches a layer)."""
    from spikecim.analog.layers import AnalogLayer

    counts = [0, 0]

    def count(_module, inputs):
        v = inputs[0]
        if bool(((v == 0) | (v == 1)).all()):
            counts[0] += int(v.count_nonzero())
            counts[1] += v.numel()

    hooks = [m.register_forward_pre_hook(count) for m in model.modules() if isinstance(m, AnalogLayer)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return counts[0] / counts[1] if counts[1] else None


def _aihwkit_model(model: nn.Module) -> nn.Module:
    """aihwkit's copy of ``model`` on ``TorchInferenceRPUConfig`` tiles, drifted to 1 h."""
    with quiet_stderr():  # aihwkit's import can print warnings about its optional parts
        from aihwkit.nn.conversion import convert_to_analog
        from aihwkit.simulator.configs import TorchInferenceRPUConfig

    from spikecim.nn.twins import torch_layers

    theirs = convert_to_analog(torch_layers(copy.deepcopy(model)), TorchInferenceRPUConfig())
    theirs.eval()
    theirs.drift_analog_weights(DRIFT_S)
    return theirs


def _ir_drop_rows(sizes: tuple[int, ...], vectors: int) -> list[IRDropRow]:
    from spikecim.analog.circuit import (
        calibrate_fast,
        effective_conductance,
        effective_conductance_fast,
        solve_crossbar,
    )

    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        G = rng.uniform(0, 25e-6, (n, n))
        v = rng.uniform(0, 0.2, (vectors, n))
        t = time.perf_counter()
        I_exact = solve_crossbar(G, v, 1.0)
        t_exact = time.perf_counter() - t
        corner = min(n, 64)
        fit = calibrate_fast(G[:corner, :corner], 1.0)  # calibrated on a corner, used on the full array
        t = time.perf_counter()
        I_fast = v @ effective_conductance_fast(G, 1.0, kappa=fit.kappa)
        t_fast = time.perf_counter() - t
        norm = np.linalg.norm(I_exact)
        rows.append(
            IRDropRow(
                array=f"{n}x{n}",
                vectors=vectors,
                exact_s=t_exact,
                fast_s=t_fast,
                fast_rel_error=float(np.linalg.norm(I_fast - I_exact) / norm),
                ideal_rel_error=float(np.linalg.norm(v @ G - I_exact) / norm),
                kappa=fit.kappa,
            )
        )
    n = sizes[0]
    G = rng.uniform(0, 25e-6, (n, n))
    t = time.perf_counter()
    effective_conductance(G, 1.0, solver="splu")
    rows.append(IRDropRow(f"{n}x{n} (SuperLU, for comparison)", vectors, time.perf_counter() - t))
    return rows


def _median_times(fns: list[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each callable, the callables interleaved in every round (on a GPU,
    waited for before each clock read)."""
    return [statistics.median(ts) for ts in interleaved_times(fns, repeats, device=device)]


def _ratio(theirs: float | None, ours: float) -> float | None:
    return None if theirs is None else theirs / ours


def _s(seconds: float | None) -> str:
    """Seconds to 4 significant digits (a quick run's times are well under 1 ms)."""
    return MISSING if seconds is None else f"{seconds:.4g}"


def _x(ratio: float | None) -> str:
    return MISSING if ratio is None else f"{ratio:.1f}×"
