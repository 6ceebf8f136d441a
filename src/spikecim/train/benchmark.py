"""Speed of one whole-network SNN training step against SpikingJelly and snnTorch.

The workload: spiking VGG-9 and ResNet-19 (:mod:`spikecim.models`) on ``x[T, B, 3, 32, 32]``
(the image repeated over T, direct encoding), one training step = zero the gradients,
forward, cross-entropy of the logits averaged over T, backward, SGD step (momentum 0.9).
Every library runs the same topology with the same weights at the start and the same LIF:
beta 0.9 (SpikingJelly ``tau = 10``, ``decay_input=False``), threshold 1, subtract reset
in the same step, arctan surrogate (alpha 2), BatchNorm over ``T*B`` (tdBN).

| name | what runs |
| --- | --- |
| ``spikecim`` | the model of :func:`spikecim.models.create_model` (LIF ``reset_delay=False``; every LIF in place, ``inplace=True``, as the built-in models build it: its spikes overwrite the BatchNorm, Linear or residual-sum output it reads, an option neither peer has; its convolutions of spikes event-driven, :class:`spikecim.nn.Conv2d`; its linear layers' products on oneDNN's GEMM, :class:`spikecim.nn.Linear`) |
| ``spikingjelly`` | the same layers, each stateless one in ``layer.SeqToANNContainer`` (what its multi-step ``layer.Conv2d`` does), ``neuron.LIFNode(step_mode="m")`` (its multi-step function, torch on CPU), ``functional.reset_net`` before every step |
| ``snntorch`` | the same stateless layers run once over ``T*B``, each neuron an ``snn.Leaky(reset_delay=False)`` stepped in a Python loop (snnTorch has no multi-step layers) |

Both peers' copies hold torch's ``nn.Conv2d``, ``nn.Linear``, pooling and BatchNorm layers where
the model holds spikecim's (:func:`spikecim.nn.twins.torch_layers`). The libraries alternate in every
round (one step each, each round starting one library further on:
:func:`spikecim.timing.interleaved_times`); the median of ``repeats`` rounds after ``warmup`` rounds is reported,
with every round's time and, per library, the least and the most of its step over spikecim's
in the same round. Peak memory: the highest total of torch CPU
allocations during one training step, from the torch profiler's allocation and free
events (the weights, gradients and optimiser state that exist before the step excluded).
A peer that is not installed is skipped with a note.

``device="cuda"`` runs every library's step on the GPU (spikecim's LIF then takes its
Triton kernel where Triton is installed, else the reference loop; SpikingJelly its torch
multi-step path, as its ``backend`` default): each timed step waits for the GPU before the
clock is read, and the peak is torch's CUDA allocator's.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import torch
from torch import nn

from spikecim.memory import available_bytes, release_freed_memory, reset_resident_peak, resident_bytes
from spikecim.timing import (
    bench_device,
    device_name,
    interleaved_times,
    peak_mib,
    range_text,
    round_ratios,
    torch_threads,
)

__all__ = [
    "PROBE_BATCH",
    "PROBE_MARGIN",
    "TRAIN_LIBRARIES",
    "TRAIN_MODELS",
    "TrainBenchReport",
    "TrainBenchRow",
    "format_report",
    "run_train_benchmark",
]

BETA, THRESHOLD = 0.9, 1.0
TRAIN_MODELS = ("vgg9", "resnet19")
# A model's first block above this batch: its memory estimated from one step of each library
# at it, in proportion to the batch and times PROBE_MARGIN. One step understates a block's
# growth (interleaved rounds leave more of each library's freed memory unused by the
# others): with the three libraries on the Zen 4 machine of BENCHMARKS.md, a block's growth
# was 1.44 (VGG-9, B = 16, 7 rounds), 1.14 (VGG-9, B = 64, 3 rounds) and 1.20 (ResNet-19,
# B = 16, 3 rounds) times the probe's scaled by batch.
PROBE_BATCH, PROBE_MARGIN = 4, 1.5
_T = TypeVar("_T")
# name -> module that must be importable (None: always runs)
TRAIN_LIBRARIES: dict[str, str | None] = {
    "spikecim": None,
    "spikingjelly": "spikingjelly",
    "snntorch": "snntorch",
}


@dataclass(frozen=True)
class TrainBenchRow:
    model: str
    library: str
    batch: int
    median_ms: float
    min_ms: float
    spikecim_speedup: float | None  # this library's median / spikecim's (how much faster spikecim is)
    peak_mib: float | None
    round_ms: tuple[float, ...] = ()  # every timed step, in the order of the rounds
    # the least and the most of this library's step / spikecim's step in the same round
    round_speedups: tuple[float, float] | None = None


@dataclass
class TrainBenchReport:
    timesteps: int
    input_size: int
    width: float
    repeats: int
    threads: int
    torch_version: str
    device: str = "cpu"
    rows: list[TrainBenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def spikecim_model(name: str, width: float, input_size: int) -> nn.Module:
    """The spikecim SNN of the benchmark (same-step subtract reset, as SpikingJelly's)."""
    from spikecim.models import create_model

    kw = {"width": width, "input_size": input_size} if name.startswith("vgg") else {"width": width}
    return create_model(
        name,
        spiking=True,
        in_channels=3,
        neuron_kw={"beta": BETA, "threshold": THRESHOLD, "reset_delay": False},
        **kw,
    )


class _SnnTorchLIF(nn.Module):
    """``snn.Leaky`` stepped over ``x[T, ...]`` (a TemporalModule subclass is set below)."""

    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn

        self.leaky = snn.Leaky(beta=BETA, threshold=THRESHOLD, reset_delay=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem, out = self.leaky.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = self.leaky(x[t], mem)
            out.append(spk)
        return torch.stack(out)


def snntorch_model(model: nn.Module) -> nn.Module:
    """A copy of a spikecim model with every LIF replaced by a stepped ``snn.Leaky``."""
    from spikecim.nn import LIF, TemporalModule
    from spikecim.nn.twins import torch_layers

    class SnnTorchLIF(_SnnTorchLIF, TemporalModule):
        pass

    peer = torch_layers(copy.deepcopy(model))
    _replace(peer, lambda m: isinstance(m, LIF), lambda m: SnnTorchLIF())
    return peer


def spikingjelly_model(model: nn.Module) -> nn.Module:
    """The spikecim model's layers rebuilt in SpikingJelly's multi-step form (same weights)."""
    from spikingjelly.activation_based import layer, neuron, surrogate

    from spikecim.models._resnet import BasicBlock
    from spikecim.nn import LIF, Sequential
    from spikecim.nn.twins import torch_layers

    def lif() -> nn.Module:
        return neuron.LIFNode(
            tau=1.0 / (1.0 - BETA),
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=None,
            surrogate_function=surrogate.ATan(alpha=2.0),
            step_mode="m",
        )

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, Sequential):
            return nn.Sequential(*(convert(c) for c in m))
        if isinstance(m, LIF):
            return lif()
        if isinstance(m, BasicBlock):
            return _SpikingJellyBlock(m, lif, layer.SeqToANNContainer)
        return layer.SeqToANNContainer(copy.deepcopy(m))

    return torch_layers(convert(model))


class _SpikingJellyBlock(nn.Module):
    """:class:`spikecim.models._resnet.BasicBlock` in SpikingJelly's multi-step idiom."""

    def __init__(self, block: nn.Module, lif: Callable[[], nn.Module], seq: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.conv_bn1 = seq(copy.deepcopy(block.conv1), copy.deepcopy(block.bn1))
        self.act1 = lif()
        self.conv_bn2 = seq(copy.deepcopy(block.conv2), copy.deepcopy(block.bn2))
        self.shortcut = seq(copy.deepcopy(block.shortcut))
        self.act2 = lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_bn2(self.act1(self.conv_bn1(x)))
        return self.act2(h + self.shortcut(x))


def _replace(
    module: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> None:
    for name, child in module.named_children():
        if match(child):
            setattr(module, name, make(child))
        else:
            _replace(child, match, make)


def _build(library: str, model: nn.Module) -> tuple[nn.Module, Callable[[nn.Module], None]]:
    """(the network, what runs before every forward)."""
    if library == "spikecim":
        return copy.deepcopy(model), lambda net: None
    if library == "snntorch":
        return snntorch_model(model), lambda net: None
    from spikingjelly.activation_based import functional

    return spikingjelly_model(model), functional.reset_net


def _on(dev: torch.device, net: nn.Module, before: Callable[[nn.Module], None]):
    """``(net moved to dev, before)``."""
    return net.to(dev), before


def _step_fn(net: nn.Module, before: Callable[[nn.Module], None], x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        before(net)
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
        loss.backward()
        opt.step()

    return step


def run_train_benchmark(
    models: tuple[str, ...] = TRAIN_MODELS,
    batches: tuple[int, ...] = (16, 64),
    timesteps: int = 4,
    input_size: int = 32,
    width: float = 1.0,
    repeats: int = 5,
    warmup: int = 1,
    libraries: tuple[str, ...] | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    on_rows: Callable[[list[TrainBenchRow]], None] | None = None,
    memory_budget: int | None = None,
) -> TrainBenchReport:
    """Time one training step of every model in every library; see the module docstring.
    ``device``: ``cpu`` or ``cuda[:N]`` (a one-line error where torch sees no such GPU).
    ``on_rows``: called with each block's rows (one model at one batch, every library) as
    soon as they are timed, so a run stopped later keeps them.

    The libraries' steps interleaved in one process, each keeping its freed memory, need
    several times their peak allocation in resident memory (21 GiB for ResNet-19 at B = 64,
    BENCHMARKS.md): a block whose need, scaled by batch from the model's block before it,
    reaches ``memory_budget`` bytes (default: the memory the kernel reports available,
    ``MemAvailable``) is not run, and a note says so. The first block of a model, above
    :data:`PROBE_BATCH`, is estimated from one step of every library at that batch (after one
    not counted), in proportion to the batch and times :data:`PROBE_MARGIN`.
    The growth is read from the
    process's resident peak (``VmHWM``), which each block and probe starts again after
    handing freed memory back (:func:`spikecim.memory.reset_resident_peak`): afterwards the
    process's maximum resident size (``getrusage``, ``/usr/bin/time``) covers the last block
    only."""
    dev = bench_device(device)
    with torch_threads(threads):
        report = TrainBenchReport(
            timesteps,
            input_size,
            width,
            repeats,
            torch.get_num_threads(),
            torch.__version__,
            device_name(dev),
        )
        names = []
        for name in libraries or TRAIN_LIBRARIES:
            requires = TRAIN_LIBRARIES[name]
            if requires and importlib.util.find_spec(requires) is None:
                report.notes.append(f"{name}: skipped, not installed (pip install 'spikecim[peers]')")
            else:
                names.append(name)
        for model_name in models:
            torch.manual_seed(seed)
            model = spikecim_model(model_name, width, input_size)
            nets = {name: _on(dev, *_build(name, model)) for name in names}
            grown: tuple[int, int] | None = None  # (batch, resident growth in bytes) of the last block
            steps_at = functools.partial(_steps, nets, timesteps, input_size, seed, dev)
            probed: int | None = None  # the probe's growth, once per model
            for batch in batches:
                if grown is None and batch > PROBE_BATCH:
                    probed = _probe(steps_at) if probed is None else probed
                    skip = _too_large_by_probe(model_name, batch, probed, memory_budget)
                else:
                    skip = _too_large(model_name, batch, grown, memory_budget)
                if skip:
                    report.notes.append(skip)
                    continue
                rows, growth = _resident_growth(_block, model_name, batch, steps_at, repeats, warmup, dev)
                report.rows += rows
                if growth is not None:
                    grown = (batch, growth)
                release_freed_memory()  # the next batch's or model's tensors have other sizes
                if on_rows is not None and rows:  # no rows: no library installed of those asked for
                    on_rows(rows)
        return report


def _steps(
    nets: dict, timesteps: int, input_size: int, seed: int, dev: torch.device, batch: int
) -> dict[str, Callable[[], None]]:
    """Every library's training step on ``batch`` images from ``seed``, each repeated over T
    (direct encoding), and their labels."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, input_size, input_size, generator=gen)
    x = image.expand(timesteps, *image.shape).contiguous().to(dev)
    y = torch.randint(0, 10, (batch,), generator=gen).to(dev)
    return {name: _step_fn(net, before, x, y) for name, (net, before) in nets.items()}


def _block(
    model: str,
    batch: int,
    steps_at: Callable[[int], dict[str, Callable[[], None]]],
    repeats: int,
    warmup: int,
    dev: torch.device,
) -> list[TrainBenchRow]:
    """Every library's row of one model at one batch: its steps timed in interleaved rounds."""
    steps = steps_at(batch)
    rounds = interleaved_times(list(steps.values()), repeats, device=dev, warmup=warmup)
    times = dict(zip(steps, rounds, strict=True))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    ours = medians.get("spikecim")
    return [
        TrainBenchRow(
            model=model,
            library=name,
            batch=batch,
            median_ms=medians[name] * 1e3,
            min_ms=min(times[name]) * 1e3,
            spikecim_speedup=medians[name] / ours if ours else None,
            peak_mib=peak_mib(step, dev),
            round_ms=tuple(t * 1e3 for t in times[name]),
            round_speedups=round_ratios(times[name], times["spikecim"]) if ours else None,
        )
        for name, step in steps.items()
    ]


def _resident_growth(run: Callable[..., _T], *args) -> tuple[_T, int | None]:
    """``run(*args)``'s result and the growth in bytes of the process's resident peak while it
    ran, from freed memory handed back first (a block's or a probe's: what the one before kept
    would hide it); None for the growth off Linux."""
    release_freed_memory()
    start = resident_bytes() if reset_resident_peak() else None
    result = run(*args)
    peak = resident_bytes(peak=True)
    return result, None if start is None or peak is None else max(0, peak - start)


def _probe(steps_at: Callable[[int], dict[str, Callable[[], None]]]) -> int | None:
    """The resident growth in bytes of one step of every library at :data:`PROBE_BATCH`, after
    one such step not counted (its one-time costs: caches, compiled kernels); None off Linux."""
    steps = list(steps_at(PROBE_BATCH).values())
    _each(steps)
    return _resident_growth(_each, steps)[1]


def _each(steps: list[Callable[[], None]]) -> None:
    for step in steps:
        step()


def _probe_estimate(growth: int, batch: int) -> float:
    """A block's resident growth at ``batch`` from the probe's at :data:`PROBE_BATCH`: in
    proportion to the batch, times :data:`PROBE_MARGIN`."""
    return PROBE_MARGIN * growth * batch / PROBE_BATCH


_GIB = 1 << 30


def _too_large_by_probe(model: str, batch: int, growth: int | None, budget: int | None) -> str | None:
    """:func:`_skip_note` for a model's first block, its need from the probe
    (:func:`_probe_estimate`)."""
    if growth is None:
        return None
    basis = (
        f"{PROBE_MARGIN:g} x {batch}/{PROBE_BATCH} of the {growth / _GIB:.2f} GiB one step of each "
        f"library took at B={PROBE_BATCH}"
    )
    return _skip_note(model, batch, _probe_estimate(growth, batch), basis, budget)


def _too_large(model: str, batch: int, grown: tuple[int, int] | None, budget: int | None) -> str | None:
    """:func:`_skip_note` for a block whose need is scaled by batch from the growth of the
    model's block before it (``grown``)."""
    if grown is None:
        return None
    before, growth = grown
    basis = f"{batch}/{before} of the {growth / _GIB:.1f} GiB B={before} took"
    return _skip_note(model, batch, growth * batch / before, basis, budget)


def _skip_note(model: str, batch: int, need: float, basis: str, budget: int | None) -> str | None:
    """The note for a block not run because ``need`` bytes of resident memory (estimated as
    ``basis`` says) would reach ``budget`` (None: what the kernel reports available); None to
    run it."""
    budget = available_bytes() if budget is None else budget
    if budget is None or need < budget:
        return None
    return (
        f"{model} B={batch}: not run: it would need about {need / _GIB:.1f} GiB more resident memory "
        f"({basis}), {budget / _GIB:.1f} GiB available; fewer libraries (--library) need less"
    )


def format_report(report: TrainBenchReport) -> str:
    """A Markdown table with every column, then the columns' meaning and any notes."""

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        (
            f"SNN training step (forward + backward + SGD step), T = {report.timesteps}, "
            f"3x{report.input_size}x{report.input_size} input, width {report.width:g}, median of "
            f"{report.repeats} interleaved steps; torch {report.torch_version}, threads: {report.threads}, "
            f"device: {report.device}"
        ),
        "",
        "| model | library | B | median ms | min ms | spikecim speed-up | per round | peak MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        spread = range_text(r.round_speedups, "n/a")
        lines.append(
            f"| {r.model} | {r.library} | {r.batch} | {r.median_ms:.1f} | {r.min_ms:.1f} | "
            f"{num(r.spikecim_speedup, '.2f')} | {spread} | {num(r.peak_mib, '.1f')} |"
        )
    lines += [
        "",
        (
            "spikecim speed-up: this library's median / spikecim's. per round: the least and the most of "
            "this library's step / spikecim's step in the same round. peak MiB: highest total of torch's "
            "allocations during one step (CPU: profiler memory events; CUDA: the caching allocator's peak): "
            "activations and gradients, not the weights or optimiser state."
        ),
        "spikecim's neurons run in place (LIF(inplace=True), as the built-in models build them); the peers have no such option.",
    ]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
