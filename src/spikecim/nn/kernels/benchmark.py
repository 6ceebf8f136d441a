"""Speed of one Linear + LIF layer against the peer libraries (docs/references.md#peer-speed).

The workload: ``Linear(F -> F)`` over a whole sequence ``x[T, B, F]`` followed by a LIF
neuron (beta 0.9, threshold 1, subtract reset), forward and backward of ``spikes.sum()``,
for each library in one process, interleaved (one run of each library per round, each
round starting one library further on: :func:`spikecim.timing.interleaved_times`), median
of ``repeats`` rounds after ``warmup`` rounds. ``linear-floor`` is the Linear alone: no
neuron can make the layer faster than it.

| name | what runs |
| --- | --- |
| ``spikecim`` | ``torch.nn.Linear`` + ``spikecim.nn.LIF(inplace=True)`` (the fused kernel when available; the spikes overwrite the Linear output, an option none of the peers has) |
| ``snntorch`` | ``torch.nn.Linear`` on the sequence, then ``snn.Leaky`` stepped in a Python loop |
| ``spikingjelly`` | ``layer.Linear`` + ``neuron.LIFNode(tau=10, decay_input=False, v_reset=None)``, step_mode ``m`` |
| ``norse`` | ``torch.nn.Linear`` on the sequence, then ``LIFBoxCell`` stepped in a Python loop |
| ``linear-floor`` | ``torch.nn.Linear`` alone |

Memory, two figures per run, both excluding the input and the weights that exist before:

- ``peak_mib``: the highest total of torch CPU allocations during one forward + backward,
  from the torch profiler's allocation and free events;
- ``saved_mib``: the bytes of the distinct tensors autograd keeps for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``), the part of memory that grows with T.

A peer that is not installed is skipped with a note.

``device="cuda"`` runs every library on the GPU (spikecim's LIF then takes its Triton
kernel where Triton is installed, else the reference loop): each timed run waits for the
GPU before the clock is read, and the peak is torch's CUDA allocator's.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from spikecim.timing import (
    bench_device,
    device_name,
    interleaved_times,
    peak_mib,
    range_text,
    round_ratios,
    torch_threads,
)

__all__ = ["LIBRARIES", "BenchReport", "BenchRow", "format_report", "run_lif_benchmark"]

Forward = Callable[[torch.Tensor], torch.Tensor]
# name -> (module that must be importable, or None; builder(features) -> (forward, parameters));
# the runner calls a builder inside the device's context, so its modules are made there
LIBRARIES: dict[str, tuple[str | None, Callable[[int], tuple[Forward, list[torch.Tensor]]]]] = {}


def _library(name: str, requires: str | None = None):
    def register(build):
        LIBRARIES[name] = (requires, build)
        return build

    return register


@_library("spikecim")
def _spikecim(features: int):
    from spikecim.nn import LIF

    lin, neuron = torch.nn.Linear(features, features), LIF(beta=0.9, threshold=1.0, inplace=True)
    return (lambda x: neuron(lin(x))), list(lin.parameters())


@_library("snntorch", requires="snntorch")
def _snntorch(features: int):
    import snntorch as snn

    lin, leaky = torch.nn.Linear(features, features), snn.Leaky(beta=0.9, threshold=1.0)

    def forward(x):
        cur, mem, out = lin(x), leaky.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = leaky(cur[t], mem)
            out.append(spk)
        return torch.stack(out)

    return forward, list(lin.parameters())


@_library("spikingjelly", requires="spikingjelly")
def _spikingjelly(features: int):
    from spikingjelly.activation_based import functional, layer, neuron

    net = torch.nn.Sequential(
        layer.Linear(features, features, step_mode="m"),
        neuron.LIFNode(tau=10.0, decay_input=False, v_threshold=1.0, v_reset=None, step_mode="m"),
    )

    def forward(x):
        functional.reset_net(net)
        return net(x)

    return forward, list(net.parameters())


@_library("norse", requires="norse")
def _norse(features: int):
    from norse.torch import LIFBoxCell

    lin, cell = torch.nn.Linear(features, features), LIFBoxCell()

    def forward(x):
        cur, state, out = lin(x), None, []
        for t in range(x.shape[0]):
            z, state = cell(cur[t], state)
            out.append(z)
        return torch.stack(out)

    return forward, list(lin.parameters())


@_library("linear-floor")
def _floor(features: int):
    lin = torch.nn.Linear(features, features)
    return lin, list(lin.parameters())


@dataclass(frozen=True)
class BenchRow:
    library: str
    batch: int
    median_ms: float
    min_ms: float
    times_floor: float | None  # median / median of linear-floor at this batch
    spikecim_speedup: float | None  # this library's median / spikecim's (how much faster spikecim is)
    peak_mib: float | None
    saved_mib: float | None
    round_ms: tuple[float, ...] = ()  # every timed run, in the order of the rounds
    # the least and the most of this library's run / linear-floor's run in the same round
    floor_per_round: tuple[float, float] | None = None


@dataclass
class BenchReport:
    timesteps: int
    features: int
    repeats: int
    threads: int
    torch_version: str
    device: str = "cpu"
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def run_lif_benchmark(
    batches: tuple[int, ...] = (16, 64),
    timesteps: int = 100,
    features: int = 512,
    repeats: int = 7,
    warmup: int = 2,
    libraries: tuple[str, ...] | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str = "cpu",
) -> BenchReport:
    """Time every library on the Linear + LIF workload; see the module docstring.

    ``threads`` sets ``torch.set_num_threads`` for the run (restored after); None keeps it.
    ``device``: ``cpu`` or ``cuda[:N]`` (a one-line error where torch sees no such GPU).
    """
    dev = bench_device(device)
    with torch_threads(threads):
        return _run(batches, timesteps, features, repeats, warmup, libraries, seed, dev)


def _run(batches, timesteps, features, repeats, warmup, libraries, seed, dev) -> BenchReport:
    names = list(libraries or LIBRARIES)
    report = BenchReport(
        timesteps, features, repeats, torch.get_num_threads(), torch.__version__, device_name(dev)
    )
    cases = {}
    for name in names:
        requires, build = LIBRARIES[name]
        if requires and importlib.util.find_spec(requires) is None:
            report.notes.append(f"{name}: skipped, not installed (pip install 'spikecim[peers]')")
            continue
        torch.manual_seed(seed)
        with dev:  # the modules' parameters and buffers are made on the device
            cases[name] = build(features)
    for batch in batches:
        x = torch.rand(timesteps, batch, features, generator=torch.Generator().manual_seed(seed)).to(dev)
        runs = [functools.partial(_run_once, forward, params, x) for forward, params in cases.values()]
        times = dict(zip(cases, interleaved_times(runs, repeats, device=dev, warmup=warmup), strict=True))
        medians = {name: statistics.median(ts) for name, ts in times.items()}
        floor, ours = medians.get("linear-floor"), medians.get("spikecim")
        for name, (forward, params) in cases.items():
            peak, saved = _memory(forward, params, x, dev)
            report.rows.append(
                BenchRow(
                    library=name,
                    batch=batch,
                    median_ms=medians[name] * 1e3,
                    min_ms=min(times[name]) * 1e3,
                    times_floor=medians[name] / floor if floor else None,
                    spikecim_speedup=medians[name] / ours if ours else None,
                    peak_mib=peak,
                    saved_mib=saved,
                    round_ms=tuple(t * 1e3 for t in times[name]),
                    floor_per_round=round_ratios(times[name], times["linear-floor"]) if floor else None,
                )
            )
    return report


def format_report(report: BenchReport) -> str:
    """A Markdown table with every column, then the ratios' meaning and any notes."""

    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    lines = [
        (
            f"Linear({report.features}->{report.features}) + LIF, T = {report.timesteps}, forward + backward, "
            f"median of {report.repeats} interleaved runs; torch {report.torch_version}, threads: {report.threads}, "
            f"device: {report.device}"
        ),
        "",
        "| library | B | median ms | min ms | x floor | x floor, per round | spikecim speed-up | peak MiB | saved MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.rows:
        spread = range_text(r.floor_per_round, "n/a")
        lines.append(
            f"| {r.library} | {r.batch} | {r.median_ms:.2f} | {r.min_ms:.2f} | {num(r.times_floor, '.2f')} | "
            f"{spread} | {num(r.spikecim_speedup, '.2f')} | {num(r.peak_mib, '.2f')} | {num(r.saved_mib, '.2f')} |"
        )
    lines += [
        "",
        (
            "x floor: median / Linear-alone median; per round: the least and the most of this library's run / "
            "the Linear-alone run in the same round. spikecim speed-up: this library's median / spikecim's."
        ),
        "spikecim's LIF runs in place (LIF(inplace=True): the spikes overwrite the Linear output); the peers have no such option.",
        (
            "peak MiB: highest total of torch's allocations in one forward+backward (CPU: profiler events; "
            "CUDA: the caching allocator's peak); saved MiB: tensors kept for backward."
        ),
    ]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _run_once(forward: Forward, params: list[torch.Tensor], x: torch.Tensor) -> None:
    for p in params:
        p.grad = None
    forward(x).sum().backward()


def _memory(
    forward: Forward, params: list[torch.Tensor], x: torch.Tensor, dev: torch.device
) -> tuple[float | None, float | None]:
    for p in params:
        p.grad = None
    storages: dict[int, int] = {}
    before = {x.untyped_storage().data_ptr()} | {p.untyped_storage().data_ptr() for p in params}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in before:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward(x)
    saved = sum(storages.values()) / 2**20
    del out
    for p in params:
        p.grad = None
    return peak_mib(lambda: forward(x).sum().backward(), dev), saved
