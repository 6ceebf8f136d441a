"""``trace(model, inputs) -> Workload``: run a model on data and record what hardware sees.

Every module the operator registry recognises (:func:`spikecim.ops.find`: linear, conv1d,
conv2d, matmul of two activations, and their subclasses) gets a forward hook that records,
per step and per sample, the non-zero entries of its streamed input, the accumulates
they trigger (the operator's own count, :meth:`spikecim.ops.Op.accumulates`) and those of
them on non-zero weights (:meth:`spikecim.ops.Op.weighted_accumulates`). A hook on the
neuron that follows each operator (the next LIF/IF/ReLU in module order, before the next
operator) records its output spikes and membrane width; a pooling layer right after it
gives the pooled output size. A neuron module used after several operators (shared state)
puts them in one ``neuron_group``, and so do the cells of a
:class:`~spikecim.nn.SharedStage` (one per layer, all stepping the one neuron they name as
``membrane_owner``). A neuron whose ``channel_groups`` chunks share one membrane
(:class:`~spikecim.nn.SharedLIF`) stores ``membrane_size = out_size / channel_groups``.
The digital functions of a transformer, ``nn.Softmax``, ``nn.LayerNorm`` and ``nn.GELU``
modules, are recorded as the Workload's ``digital`` entries: output elements per sample
per step and the row length a softmax or LayerNorm normalises (the digital unit's work,
:mod:`spikecim.hw.digital_unit`). A bare ``torch.matmul`` / ``@`` / ``torch.bmm`` of two
activations in a forward is captured too (:mod:`spikecim.trace.bare_matmul`) and recorded
like the ``MatMul`` module, right after the operator that ran before it.

Early exit (:class:`~spikecim.nn.DynamicTimesteps`): a sample that stopped after step e costs
nothing at later steps. The wrapped model computes all T steps, so the tracer counts each
batch's activity per step and per sample, then keeps only the (step, sample) pairs still
running. The convention: ``running_per_step[t]`` is the fraction of the traced samples that
run step t, and every per-step activity (``in_nonzero_per_step``, ``acs_per_step``,
``acs_nonzero_weights_per_step``, ``out_spikes_per_step``) is the mean over the samples that
run step t (0 where none does).
A per-sample total is then Σ_t running_per_step[t]·activity[t], the weighting every estimator
applies. ``in_nonzero_per_sample`` holds 0 at the steps a sample did not run. Without early
exit every sample runs every step and ``running_per_step`` is 1.0 throughout.

The time/batch layout of each call is read explicitly, never guessed from element counts:

- inside ``with at_step(t)`` (:mod:`spikecim.trace.steps`; recurrent graphs run so) the call
  is ``[B, ...]`` at step ``t``, and calls at ``REST`` are not counted;
- otherwise a call whose leading dimensions are ``(T, B)`` (time-major) or ``T·B``
  (time-folded) covers every step; one whose leading dimension is ``B`` is one step, the
  layer's n-th call in the forward being step n mod T. An operator whose sample has a fixed
  number of dimensions (a convolution) says so, which settles ``[T, B, ...]`` against
  ``[T·B, ...]``; a linear layer takes any trailing dimensions (tokens ``[T, B, S, F]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.nn.dynamic import DynamicTimesteps
from spikecim.ops._bits import dtype_bits
from spikecim.trace.bare_matmul import MatMulCapture
from spikecim.trace.steps import REST, current_step
from spikecim.trace.workload import (
    ENTRY_KINDS,
    SCHEMA_VERSION,
    DigitalOpWorkload,
    ExitTest,
    OpWorkload,
    RecurrentStateWorkload,
    Workload,
)

__all__ = ["accumulates", "trace"]

DIGITAL_KINDS: dict[type[nn.Module], str] = {
    nn.Softmax: "softmax",
    nn.LayerNorm: "layernorm",
    nn.GELU: "gelu",
}
_POOLS = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d, nn.AvgPool1d, nn.MaxPool1d)


def accumulates(layer: nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """Accumulates triggered by the non-zero entries of ``x[N, ...]``, per sample ``[N]``."""
    op = ops.find(layer)
    if op is None:
        raise SpikecimError(f"accumulates: {type(layer).__name__} is not a registered operator")
    return op.accumulates(layer, inputs)


def _is_neuron(m: nn.Module) -> bool:
    from spikecim.nn import is_spiking_neuron

    return isinstance(m, nn.ReLU) or is_spiking_neuron(m)


@dataclass
class _Record:
    name: str
    module: nn.Module
    op: ops.Op
    in_shapes: list[tuple[int, ...]] | None = None
    out_shape: tuple[int, ...] = ()
    calls: int = 0
    nonzero: list[float] = field(default_factory=list)
    acs: list[float] = field(default_factory=list)
    acs_nonzero_weights: list[float] = field(default_factory=list)
    per_sample: list[list[float]] | None = None  # [sample][step]
    batch: dict[str, torch.Tensor] = field(default_factory=dict)  # this batch's [T, B] counts
    binary: list[bool] = field(default_factory=list)  # per activation input: all values 0/1
    neuron: str | None = None
    neuron_group: str | None = None
    membrane_bits: int | None = None
    neuron_states: int = 1  # state variables per neuron (Neuron.state_words)
    channel_groups: int = 1
    out_spikes: list[float] | None = None
    pooled_hw: tuple[int, int] | None = None
    origin: str | None = None  # file:line of a captured bare matmul (module None)
    first_call: int | None = None  # order of the first recorded call among all operators


@dataclass
class _DigitalRecord:
    """A softmax, LayerNorm or GELU module: its elements per sample and the steps it ran."""

    name: str
    kind: str
    elements: int = 0
    row_length: int = 1
    calls: int = 0
    steps: set[int] = field(default_factory=set)


def _row_length(mod: nn.Module, out: torch.Tensor) -> int:
    if isinstance(mod, nn.Softmax):
        return int(out.shape[mod.dim if mod.dim is not None else -1])
    if isinstance(mod, nn.LayerNorm):
        return math.prod(mod.normalized_shape)
    return 1


@dataclass
class _Layout:
    """How a call's tensors map onto (steps, batch): ``lead`` leading dims to read as such."""

    steps: list[int]
    lead: int  # 1: [n·B, ...] (folded or one step), 2: [T, B, ...]

    def view(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """``t`` as ``[n_steps, B, *sample]``."""
        return t.reshape(len(self.steps), batch, *t.shape[self.lead :])


def _layout(t: torch.Tensor, T: int, B: int, sample_ndim: int | None, call: int, what: str) -> _Layout | None:
    step = current_step()
    if step == REST:
        return None
    if step is not None:
        return _Layout([step], 1)
    lead = t.dim() - sample_ndim if sample_ndim is not None else None
    if lead in (None, 2) and t.dim() >= 3 and tuple(t.shape[:2]) == (T, B):
        return _Layout(list(range(T)), 2)
    if lead in (None, 1) and t.dim() >= 2 and t.shape[0] == T * B:
        return _Layout(list(range(T)), 1)
    if lead in (None, 1) and t.dim() >= 2 and t.shape[0] == B:
        return _Layout([call % T], 1)
    raise SpikecimError(
        f"trace: {what} was called on shape {list(t.shape)}; expected leading dimensions "
        f"[T, B] = [{T}, {B}], [T*B] = [{T * B}] or one step [B] = [{B}]"
    )


def _first(out):
    """A module's main output (a neuron may return ``(spikes, state)``)."""
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def trace(
    model: nn.Module,
    inputs: Iterable[torch.Tensor],
    *,
    model_name: str | None = None,
    dataset: str | None = None,
    weight_bits: int | None = None,
    input_bits: int = 8,
    spiking: bool | None = None,
    per_sample: bool = False,
) -> Workload:
    """Run ``model`` on each time-major batch ``x[T, B, ...]`` of ``inputs``; return its Workload.

    ``weight_bits`` overrides the stored weight precision (default: read from the model, a
    quantiser's ``weight_bits`` or the weight dtype, 32 for float32); ``input_bits`` is the
    precision assumed for an input that is not all 0/1 (binary inputs are 1-bit spikes).
    ``per_sample`` also records each sample's non-zero inputs per step.
    """
    spiking = bool(getattr(model, "spiking", True)) if spiking is None else spiking
    records, neuron_of, pool_of = _walk(model)
    was_training = model.training
    model.eval()
    batch = {"T": 0, "B": 0}
    neuron_calls: dict[int, int] = {}
    hooks = []

    def on_op(mod, args, out, rec: _Record):
        T, B = batch["T"], batch["B"]
        xs = args[: rec.op.operands_in]
        what = f"layer '{rec.name}'" + (f" (a matmul at {rec.origin})" if rec.origin else "")
        layout = _layout(xs[0], T, B, rec.op.sample_ndim(mod), rec.calls, what)
        if layout is None:
            return
        xs = _checked_operands(xs, layout, what)
        if rec.origin and rec.calls and len(layout.steps) == T:
            raise SpikecimError(
                f"trace: {what} ran again over all {T} steps in one forward (a loop?); one call "
                "site is one operator: write each product on its own line or use spikecim.ops.MatMul"
            )
        rec.calls += 1
        if rec.first_call is None:
            rec.first_call = len(first_calls)
            first_calls.append(rec)
        views = [layout.view(x, B) for x in xs]
        if rec.in_shapes is None:
            rec.in_shapes = [tuple(v.shape[2:]) for v in views]
            rec.out_shape = tuple(layout.view(_first(out), B).shape[2:])
            rec.binary = [True] * len(xs)
        n = len(layout.steps)
        rows = tuple(v.reshape(n * B, *v.shape[2:]) for v in views)
        acs = rec.op.accumulates(mod, rows).reshape(n, B).to(torch.float64)
        acs_nz = rec.op.weighted_accumulates(mod, rows).reshape(n, B).to(torch.float64)
        nnz = (views[0] != 0).flatten(2).sum(2).to(torch.float64)
        for i, x in enumerate(xs):
            if rec.binary[i] and not bool(((x == 0) | (x == 1)).all()):
                rec.binary[i] = False
        for j, t in enumerate(layout.steps):
            rec.batch["nonzero"][t] += nnz[j].cpu()
            rec.batch["acs"][t] += acs[j].cpu()
            rec.batch["acs_nz"][t] += acs_nz[j].cpu()

    def on_neuron(mod, args, out):
        recs = neuron_of[id(mod)]
        k = neuron_calls.get(id(mod), 0)
        neuron_calls[id(mod)] = k + 1
        rec = recs[k % len(recs)]
        spikes = _first(out)
        rec.membrane_bits = getattr(mod, "membrane_bits", None) or dtype_bits(spikes.dtype)
        rec.neuron_states = int(getattr(mod, "state_words", 1))
        rec.channel_groups = int(getattr(mod, "channel_groups", 1))
        if rec.out_spikes is None:
            return
        layout = _layout(spikes, batch["T"], batch["B"], None, k // len(recs), f"neuron after '{rec.name}'")
        if layout is None:
            return
        counts = (layout.view(spikes, batch["B"]) != 0).flatten(2).sum(2).to(torch.float64)
        for j, t in enumerate(layout.steps):
            rec.batch["spikes"][t] += counts[j].cpu()

    def on_pool(mod, args, out, rec: _Record):
        out = _first(out)
        rec.pooled_hw = tuple(out.shape[-2:]) if out.dim() >= 3 else (out.shape[-1], 1)

    captured: dict[str, _Record] = {}
    first_calls: list[_Record] = []
    digital = [
        _DigitalRecord(name, DIGITAL_KINDS[type(m)])
        for name, m in model.named_modules()
        if type(m) in DIGITAL_KINDS
    ]

    def on_digital(mod, args, out, rec: _DigitalRecord):
        out = _first(out)
        layout = _layout(out, batch["T"], batch["B"], None, rec.calls, f"{rec.kind} '{rec.name}'")
        if layout is None:
            return
        rec.calls += 1
        rec.elements = math.prod(layout.view(out, batch["B"]).shape[2:])
        rec.row_length = _row_length(mod, out)
        rec.steps.update(layout.steps)

    def on_matmul(site, origin, a, b, out):
        rec = captured.get(site)
        if rec is None:
            rec = captured[site] = _Record(site, None, ops.get_op("matmul"), origin=origin)
            _start(rec, steps, spiking, per_sample, samples, batch["B"])
        on_op(None, (a, b), out, rec)

    for rec in records:
        hooks.append(rec.module.register_forward_hook(lambda m, a, o, r=rec: on_op(m, a, o, r)))
    for _, m in model.named_modules():
        if id(m) in neuron_of:
            hooks.append(m.register_forward_hook(on_neuron))
        pool_rec = pool_of.get(id(m))
        if pool_rec is not None:
            hooks.append(m.register_forward_hook(lambda mm, a, o, r=pool_rec: on_pool(mm, a, o, r)))
    modules = dict(model.named_modules())
    for rec in digital:
        hooks.append(modules[rec.name].register_forward_hook(lambda m, a, o, r=rec: on_digital(m, a, o, r)))
    capture = MatMulCapture(model, on_matmul)
    hooks += capture.hooks(rec.module for rec in records)  # after the operators' hooks

    exits = model if isinstance(model, DynamicTimesteps) else None
    samples, steps, sample_shape, classes = 0, None, None, 0
    running: torch.Tensor | None = None  # per step: samples that ran it
    try:
        for x in inputs:
            if steps is None:
                steps, sample_shape = x.shape[0], list(x.shape[2:])
                running = torch.zeros(steps, dtype=torch.float64)
                for rec in records:
                    _start(rec, steps, spiking, per_sample, 0, x.shape[1])
            elif x.shape[0] != steps:
                raise SpikecimError(f"trace: every batch needs {steps} steps, got {x.shape[0]}")
            T, B = batch["T"], batch["B"] = x.shape[0], x.shape[1]
            neuron_calls.clear()
            for rec in [*records, *captured.values()]:
                rec.calls = 0
                rec.batch = _zeros(rec, T, B)
            for rec in digital:
                rec.calls = 0
            capture.new_batch()
            with capture:
                if exits is not None:
                    out, ran = exits.forward_with_exits(x)
                    ran_mask = torch.arange(T).view(T, 1) < ran.cpu().view(1, B)
                    classes = out.shape[-1]
                else:
                    model(x)
                    ran_mask = torch.ones(T, B, dtype=torch.bool)
            _add_batch([*records, *captured.values()], ran_mask.to(torch.float64))
            running += ran_mask.sum(1).to(torch.float64)
            samples += B
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if steps is None or running is None:
        raise ValueError("trace: no input batches were given")
    layers = [
        _entry(rec, steps, running.tolist(), weight_bits, input_bits)
        for rec in _in_order(records, list(captured.values()))
        if rec.in_shapes is not None
    ]
    if not layers:
        raise SpikecimError(f"trace: {type(model).__name__} has no operator ({', '.join(ops.list_ops())})")
    return Workload(
        schema_version=SCHEMA_VERSION,
        model=model_name or getattr(model, "model_name", type(model).__name__),
        spiking=spiking,
        timesteps=steps,
        samples=samples,
        dataset=dataset,
        input_shape=sample_shape or [],
        running_per_step=[float(n) / max(1, samples) for n in running],
        exit_test=ExitTest(rule=exits.rule, threshold=exits.threshold, classes=classes) if exits else None,
        layers=layers,
        digital=[
            DigitalOpWorkload(
                name=r.name, kind=r.kind, elements=r.elements, row_length=r.row_length, timesteps=len(r.steps)
            )
            for r in digital
            if r.steps
        ],
        recurrent_state=_recurrent_state(model, steps),
    )


def _recurrent_state(model: nn.Module, steps: int) -> list[RecurrentStateWorkload]:
    """One entry per module that carries a recurrent state across the steps, marked by
    ``recurrent_state = (kind, values per sample)`` (the MLGRU, WKV's time mix); the values'
    bits are those of the module's parameters' dtype (32 for float32)."""
    out = []
    for name, m in model.named_modules():
        state = getattr(m, "recurrent_state", None)
        if not isinstance(state, tuple):
            continue
        kind, elements = state
        p = next(m.parameters(), None)
        bits = torch.finfo(p.dtype).bits if p is not None and p.is_floating_point() else 32
        out.append(
            RecurrentStateWorkload(name=name, kind=kind, elements=elements, bits=bits, timesteps=steps)
        )
    return out


def _start(rec: _Record, steps: int, spiking: bool, per_sample: bool, samples: int, batch: int) -> None:
    """Empty counters for a record; ``samples`` already traced count as silent for it."""
    rec.nonzero, rec.acs, rec.acs_nonzero_weights = [0.0] * steps, [0.0] * steps, [0.0] * steps
    rec.out_spikes = [0.0] * steps if rec.neuron and spiking else None
    rec.per_sample = [[0.0] * steps for _ in range(samples)] if per_sample else None
    rec.batch = _zeros(rec, steps, batch)


def _zeros(rec: _Record, steps: int, batch: int) -> dict[str, torch.Tensor]:
    """Empty per-(step, sample) counters of one batch for a record."""
    keys = ("nonzero", "acs", "acs_nz") + (("spikes",) if rec.out_spikes is not None else ())
    return {k: torch.zeros(steps, batch, dtype=torch.float64) for k in keys}


def _add_batch(records: list[_Record], ran: torch.Tensor) -> None:
    """Add one batch's per-(step, sample) counts of each record, kept where ``ran[T, B]`` is 1."""
    for rec in records:
        if not rec.calls:
            continue
        kept = {k: v * ran for k, v in rec.batch.items()}
        for t in range(ran.shape[0]):
            rec.nonzero[t] += float(kept["nonzero"][t].sum())
            rec.acs[t] += float(kept["acs"][t].sum())
            rec.acs_nonzero_weights[t] += float(kept["acs_nz"][t].sum())
            if rec.out_spikes is not None:
                rec.out_spikes[t] += float(kept["spikes"][t].sum())
        if rec.per_sample is not None:
            rec.per_sample.extend(kept["nonzero"].T.tolist())


def _checked_operands(xs: tuple[torch.Tensor, ...], layout: _Layout, what: str) -> tuple[torch.Tensor, ...]:
    """Both operands of a matmul carry the call's leading (time, batch) dimensions and a matrix;
    an operand of size 1 there is the same at every step or sample (broadcast, as ``a @ b``
    takes it) and is returned expanded (a view)."""
    if len(xs) < 2:
        return xs
    lead = tuple(xs[0].shape[: layout.lead])
    if all(x.dim() >= layout.lead + 2 and all(n in (1, m) for n, m in zip(x.shape, lead)) for x in xs[1:]):
        xs = (xs[0], *(x.expand(*lead, *x.shape[layout.lead :]) for x in xs[1:]))
    if any(tuple(x.shape[: layout.lead]) != lead or x.dim() < layout.lead + 2 for x in xs):
        shapes = " and ".join(str(list(x.shape)) for x in xs)
        raise SpikecimError(
            f"trace: {what} multiplies {shapes}; both operands need the leading dimensions "
            f"{list(lead)} and a matrix per sample"
        )
    return xs


def _in_order(records: list[_Record], captured: list[_Record]) -> list[_Record]:
    """Module operators in module order, each captured matmul right after the operator whose
    first call came just before its own (those that ran before any operator first)."""
    after: dict[int, list[_Record]] = {}
    for rec in sorted(captured, key=lambda r: r.first_call if r.first_call is not None else -1):
        anchor = max(
            (r for r in records if r.first_call is not None and r.first_call < (rec.first_call or 0)),
            key=lambda r: r.first_call,
            default=None,
        )
        after.setdefault(id(anchor) if anchor is not None else 0, []).append(rec)
    out = list(after.get(0, []))
    for rec in records:
        out.append(rec)
        out += after.get(id(rec), [])
    return out


def _walk(model: nn.Module) -> tuple[list[_Record], dict[int, list[_Record]], dict[int, _Record]]:
    """Operators in module order, the neuron after each (a shared neuron module follows
    several) and the pooling layer after that neuron."""
    records: list[_Record] = []
    seen: set[int] = set()
    current: _Record | None = None
    neuron_of: dict[int, list[_Record]] = {}
    group_of: dict[int, list[_Record]] = {}  # by the module that holds the membrane
    pool_of: dict[int, _Record] = {}
    names: dict[int, str] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        op = ops.find(m)
        if op is not None:
            if id(m) in seen:
                current = None
                continue
            seen.add(id(m))
            current = _Record(name, m, op)
            records.append(current)
        elif current is not None and _is_neuron(m) and current.neuron is None:
            current.neuron = type(getattr(m, "membrane_owner", m)).__name__
            neuron_of.setdefault(id(m), []).append(current)
            owner = getattr(m, "membrane_owner", m)  # the cells of a SharedStage step one neuron
            group_of.setdefault(id(owner), []).append(current)
            names.setdefault(id(owner), name)
        elif (
            current is not None
            and isinstance(m, _POOLS)
            and current.neuron is not None
            and current.pooled_hw is None
            and id(m) not in pool_of
        ):
            pool_of[id(m)] = current
            current.pooled_hw = (0, 0)
    for key, recs in group_of.items():
        if len(recs) > 1:
            for rec in recs:
                rec.neuron_group = names[key]
    return records, neuron_of, pool_of


def _entry(
    rec: _Record, steps: int, running: list[float], weight_bits: int | None, input_bits: int
) -> OpWorkload:
    """The Workload entry of one record; ``running[t]`` samples ran step t (the divisor of
    every per-step mean)."""
    m, op = rec.module, rec.op
    fields = op.describe(m, rec.in_shapes, rec.out_shape)
    for name, operand in fields["operands"].items():
        if operand["kind"] == "static" and weight_bits is not None:
            operand["bits"] = weight_bits
        elif operand["kind"] == "dynamic":
            idx = getattr(op, "dynamic_inputs", {}).get(name)
            binary = idx is not None and rec.binary[idx]
            operand["bits"] = 1 if binary else input_bits

    def per_running(values: list[float]) -> list[float]:
        return [v / n if n else 0.0 for v, n in zip(values, running, strict=True)]

    pooled = rec.pooled_hw if rec.pooled_hw and rec.pooled_hw != (0, 0) else None
    if pooled is not None and op.kind in ("conv1d", "conv2d"):
        fields["pooled_out_hw"] = pooled
    binary = rec.binary[0]
    entry = ENTRY_KINDS[op.kind](
        name=rec.name,
        kind=op.kind,
        input_bits=1 if binary else input_bits,
        timesteps=steps,
        spiking_input=binary,
        has_neuron=rec.neuron is not None,
        neuron_kind=rec.neuron,
        membrane_bits=rec.membrane_bits or 32,
        neuron_states=rec.neuron_states,
        neuron_group=rec.neuron_group,
        in_nonzero_per_step=per_running(rec.nonzero),
        acs_per_step=per_running(rec.acs),
        acs_nonzero_weights_per_step=per_running(rec.acs_nonzero_weights),
        out_spikes_per_step=per_running(rec.out_spikes) if rec.out_spikes is not None else None,
        in_nonzero_per_sample=rec.per_sample,
        **fields,
    )
    if rec.channel_groups > 1:  # G channel chunks share one membrane of out_size/G neurons
        entry = entry.model_copy(update={"membrane_size": entry.out_size // rec.channel_groups})
    return entry
