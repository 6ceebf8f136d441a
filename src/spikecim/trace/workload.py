"""The Workload: what a network asks of hardware, measured on real data (schema version 2).

It is the one contract between the algorithm side (models, training) and the hardware
side (``spikecim.hw``): estimators read a :class:`Workload` and never a torch model. It
can come from :func:`spikecim.trace.trace` on a model, from a NIR file, or from a YAML
layer list written by hand (activity given or assumed dense).

One entry per operator, tagged by ``kind`` and dispatched by it to one class per kind
(:data:`ENTRY_KINDS`: ``linear``, ``conv1d``, ``conv2d``, ``matmul``). Every entry holds

- its **operands**: the matrix the array holds, by name — ``weight`` (``kind: static``,
  programmed once) for linear and convolution layers, ``b`` (``kind: dynamic``, written at
  every step) for a matmul of two activations — with its ``bits`` and the fraction of
  exactly-zero entries (``sparsity``);
- its **geometry** (kind-specific; derived figures such as ``macs`` are computed, never
  stored): a linear layer's ``positions`` is the number of tokens it acts on per step;
- its **neuron**: ``has_neuron``, ``neuron_kind``, ``membrane_bits`` (the neuron's
  quantiser, else the width of its dtype: 32 for float32), ``neuron_group`` (operators
  whose neurons share one membrane state carry the same group; it is stored once) and
  ``membrane_size`` (neurons of the stored membrane when fewer than ``out_size``: G channel
  groups sharing one membrane store out_size/G);
- its **activity**, per sample, averaged over the traced samples:
  ``in_nonzero_per_step[t]`` non-zero inputs at step t, ``acs_per_step[t]`` accumulates
  they trigger (each non-zero input times its fan-out), ``acs_nonzero_weights_per_step[t]``
  those of them on a non-zero weight (``None`` when not measured: older files, layer lists;
  :meth:`OpWorkload.acs_on_nonzero_weights` then assumes ``acs·(1 − weight sparsity)``),
  ``out_spikes_per_step[t]`` spikes of the neuron that follows (``None`` when none follows
  or for an ANN); optionally ``in_nonzero_per_sample[s][t]`` per traced sample
  (``trace(..., per_sample=True)``).

The workload holds ``running_per_step[t]``: the fraction of samples still running at step
t (early exit; ``None`` means 1.0 at every step). With early exit every per-step activity is
the mean over the samples that run step t, so a sample's expected work is
Σ_t running_per_step[t]·activity[t] (what :meth:`Workload.metrics` and every estimator
compute). ``exit_test`` describes the test that decides the exits (its rule and the K classes
it runs over), which the cost side charges once per running sample per step.

Validation (a reliability requirement; a bad file is one line naming the layer and the
field): every number finite; fractions in [0, 1], ``running_per_step`` never rising; non-zero inputs ≤ inputs, accumulates ≤
dense MACs, accumulates on non-zero weights ≤ accumulates, spikes ≤ neurons at every step; geometry consistent (sizes, kernel, stride ≥ 1,
padding ≥ 0, groups dividing the channels, ``out_hw`` equal to
``⌊(in + 2·padding − dilation·(kernel − 1) − 1)/stride⌋ + 1``).

Schema version 1 files (one flat ``LayerWorkload`` per synaptic layer, ``macs`` stored)
still load: :func:`upgrade_v1_layer` turns each layer into its v2 entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_validator

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping

SCHEMA_VERSION = 2

__all__ = [
    "ENTRY_KINDS",
    "SCHEMA_VERSION",
    "Conv1dWorkload",
    "Conv2dWorkload",
    "DigitalOpWorkload",
    "ExitTest",
    "LayerWorkload",
    "LinearWorkload",
    "MatMulWorkload",
    "OpWorkload",
    "Operand",
    "RecurrentStateWorkload",
    "Workload",
    "register_entry",
    "upgrade_v1_layer",
]

_MAX = 2**31  # bound on every size: keeps products of sizes finite in float64
Size = Annotated[int, Field(ge=1, le=_MAX)]
Count = Annotated[float, Field(ge=0)]
Pair = tuple[Size, Size]
_EPS = 1e-9  # relative slack for averaged counts compared with their bounds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Operand(_Strict):
    """A matrix the array holds: programmed once (``static``) or written at run time (``dynamic``)."""

    kind: Literal["static", "dynamic"]
    bits: int = Field(ge=1, le=64)
    sparsity: float = Field(0.0, ge=0.0, le=1.0, description="fraction of exactly-zero entries")


class OpWorkload(_Strict):
    """Fields every operator entry has; subclasses add the geometry of one kind."""

    mapped: ClassVar[str] = "weight"  # the operand the array holds

    name: str
    kind: str
    timesteps: int = Field(gt=0, le=_MAX)
    input_bits: int = Field(1, ge=1, le=64, description="1 for spikes, the activation precision otherwise")
    spiking_input: bool = True
    has_neuron: bool = Field(True, description="a neuron (LIF/IF/...) or ReLU follows the operator")
    neuron_kind: str | None = Field(None, description="e.g. 'LIF', 'IF', 'ReLU'; None at the output")
    membrane_bits: int = Field(32, ge=1, le=64, description="bits of one membrane (neuron state)")
    neuron_states: int = Field(
        1,
        ge=1,
        le=8,
        description="state variables each neuron stores (LIF, IF: 1; synaptic: current and membrane, 2)",
    )
    neuron_group: str | None = Field(None, description="operators sharing one membrane state")
    membrane_size: Size | None = Field(
        None,
        description="neurons of the stored membrane; None: out_size (smaller when channel groups share one)",
    )
    operands: dict[str, Operand]
    in_nonzero_per_step: list[Count] = Field(description="per step: mean non-zero inputs per sample")
    acs_per_step: list[Count] = Field(description="per step: accumulates triggered by non-zero inputs")
    acs_nonzero_weights_per_step: list[Count] | None = Field(
        None,
        description="per step: the accumulates whose weight is non-zero too (None: not measured)",
    )
    out_spikes_per_step: list[Count] | None = Field(None, description="per step: spikes of the neuron")
    in_nonzero_per_sample: list[list[Count]] | None = Field(
        None, description="optional: [sample][step] non-zero inputs"
    )

    # ---- geometry every estimator reads: in_ch, out_ch, groups, kernel, stride, padding,
    # in_hw, out_hw, pooled_out_hw (fields of a convolution, fixed for the others) ---------
    @property
    def n_mvm(self) -> int:
        """Matrix-vector products per step and group (output positions)."""
        raise NotImplementedError

    @property
    def in_size(self) -> int:
        """Input elements of one step."""
        raise NotImplementedError

    @property
    def out_size(self) -> int:
        """Output elements (neurons) of one step."""
        raise NotImplementedError

    @property
    def rows(self) -> int:
        """Inputs feeding one output: the rows one group unrolls onto."""
        return (self.in_ch // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def weights(self) -> int:
        """Entries of the mapped matrix (all groups)."""
        return self.out_ch * self.rows

    @property
    def macs(self) -> int:
        """Dense MACs of one step, one sample."""
        return self.weights * self.n_mvm

    # ---- derived figures (never stored) ------------------------------------------------
    @property
    def stored_membrane(self) -> int:
        """Neurons of the membrane stored for this operator (``membrane_size``, else ``out_size``)."""
        return self.membrane_size or self.out_size

    @property
    def stored_states(self) -> int:
        """State values stored for this operator's neurons: ``stored_membrane · neuron_states``."""
        return self.stored_membrane * self.neuron_states

    @property
    def operand(self) -> Operand:
        return self.operands[self.mapped]

    @property
    def weight_bits(self) -> int:
        return self.operand.bits

    @property
    def weight_sparsity(self) -> float:
        return self.operand.sparsity

    @property
    def dynamic(self) -> bool:
        """The mapped matrix is written at run time (every step)."""
        return self.operand.kind == "dynamic"

    @property
    def cell_writes_per_step(self) -> int:
        """Entries of the mapped matrix written at every step, per sample: all of them for a
        dynamic operand (``b`` of a matmul: ``batch·k·n``), none for a static one. A
        cost model multiplies by the cells one entry takes (bit slices)."""
        return self.weights if self.dynamic else 0

    @property
    def params(self) -> int:
        """Stored parameters: static weights + biases (0 for a dynamic operand)."""
        return 0 if self.dynamic else self.weights + (self.out_ch if getattr(self, "has_bias", False) else 0)

    @property
    def in_activity(self) -> float:
        """Mean fraction of non-zero inputs over all steps (1 - activation sparsity)."""
        return sum(self.in_nonzero_per_step) / (self.timesteps * self.in_size)

    @property
    def total_acs(self) -> float:
        return sum(self.acs_per_step)

    def acs_on_nonzero_weights(self, t: int) -> float:
        """Accumulates at step ``t`` whose input and weight are both non-zero: the measured
        ``acs_nonzero_weights_per_step[t]``, else ``acs_per_step[t]·(1 − weight_sparsity)``
        (zero weights met as often as the others: a workload written before the field, or
        by hand)."""
        if self.acs_nonzero_weights_per_step is not None:
            return self.acs_nonzero_weights_per_step[t]
        return self.acs_per_step[t] * (1.0 - self.weight_sparsity)

    @property
    def total_macs(self) -> int:
        """Dense MACs over all steps."""
        return self.macs * self.timesteps

    # ---- validation --------------------------------------------------------------------
    @model_validator(mode="after")
    def _consistent(self) -> OpWorkload:
        if self.mapped not in self.operands:
            raise ValueError(f"operands: needs '{self.mapped}' for a {self.kind} operator")
        self._check_geometry()
        if self.membrane_size is not None and self.membrane_size > self.out_size:
            raise ValueError(
                f"membrane_size {self.membrane_size} exceeds the {self.out_size} neurons (out_size)"
            )
        bounds = {
            "in_nonzero_per_step": self.in_size,
            "acs_per_step": self.macs,
            "acs_nonzero_weights_per_step": self.macs,
            "out_spikes_per_step": self.out_size,
        }
        for field, bound in bounds.items():
            v = getattr(self, field)
            if v is None:
                continue
            if len(v) != self.timesteps:
                raise ValueError(f"{field} has {len(v)} entries, timesteps is {self.timesteps}")
            _bounded(field, v, bound)
        for t, (a, acs) in enumerate(zip(self.acs_nonzero_weights_per_step or (), self.acs_per_step)):
            if a > acs * (1 + _EPS):
                raise ValueError(
                    f"acs_nonzero_weights_per_step.{t}: {a:g} is more than the {acs:g} accumulates "
                    f"of that step (acs_per_step.{t})"
                )
        for s, v in enumerate(self.in_nonzero_per_sample or ()):
            if len(v) != self.timesteps:
                raise ValueError(
                    f"in_nonzero_per_sample.{s} has {len(v)} entries, timesteps is {self.timesteps}"
                )
            _bounded(f"in_nonzero_per_sample.{s}", v, self.in_size)
        return self

    def _check_geometry(self) -> None:
        """Kind-specific consistency checks (sizes themselves are bounded by their types)."""


def _bounded(field: str, values: list[float], bound: float) -> None:
    for t, a in enumerate(values):
        if a > bound * (1 + _EPS):
            raise ValueError(f"{field}.{t}: {a:g} is more than the {bound} possible (fraction above 1)")


class _NoWindow:
    """The window geometry of an operator without a spatial window (linear, matmul)."""

    kernel = stride = (1, 1)
    padding = (0, 0)
    in_hw = out_hw = (1, 1)
    pooled_out_hw = None


class LinearWorkload(_NoWindow, OpWorkload):
    """``y = x·Wᵀ (+ b)`` at ``positions`` positions (tokens) per step."""

    kind: Literal["linear"] = "linear"
    in_ch: Size = Field(description="input features")
    out_ch: Size = Field(description="output features")
    positions: Size = Field(1, description="positions (tokens) the layer acts on per step")
    has_bias: bool = False

    @property
    def groups(self) -> int:
        return 1

    @property
    def n_mvm(self) -> int:
        return self.positions

    @property
    def in_size(self) -> int:
        return self.in_ch * self.positions

    @property
    def out_size(self) -> int:
        return self.out_ch * self.positions


class _ConvWorkload(OpWorkload):
    in_ch: Size
    out_ch: Size
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: tuple[Annotated[int, Field(ge=0, le=_MAX)], Annotated[int, Field(ge=0, le=_MAX)]] = (0, 0)
    dilation: Pair = (1, 1)
    groups: Size = 1
    in_hw: Pair = (1, 1)
    out_hw: Pair = (1, 1)
    pooled_out_hw: Pair | None = Field(None, description="spatial size after a pooling layer right after")
    has_bias: bool = False

    @property
    def n_mvm(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    @property
    def in_size(self) -> int:
        return self.in_ch * self.in_hw[0] * self.in_hw[1]

    @property
    def out_size(self) -> int:
        return self.out_ch * self.out_hw[0] * self.out_hw[1]

    def _check_geometry(self) -> None:
        if self.in_ch % self.groups or self.out_ch % self.groups:
            raise ValueError(
                f"groups: {self.groups} does not divide in_ch {self.in_ch} and out_ch {self.out_ch}"
            )
        for d in range(2):
            span = self.in_hw[d] + 2 * self.padding[d] - self.dilation[d] * (self.kernel[d] - 1) - 1
            expected = span // self.stride[d] + 1
            if span < 0 or self.out_hw[d] != expected:
                raise ValueError(
                    f"out_hw: {list(self.out_hw)} does not follow from in_hw {list(self.in_hw)}, kernel "
                    f"{list(self.kernel)}, stride {list(self.stride)}, padding {list(self.padding)}"
                    + (f", dilation {list(self.dilation)}" if self.dilation != (1, 1) else "")
                    + (
                        f" (expected {expected} on axis {d})"
                        if span >= 0
                        else " (kernel larger than the input)"
                    )
                )
        if self.pooled_out_hw is not None and any(p > o for p, o in zip(self.pooled_out_hw, self.out_hw)):
            raise ValueError(
                f"pooled_out_hw: {list(self.pooled_out_hw)} larger than out_hw {list(self.out_hw)}"
            )


class Conv1dWorkload(_ConvWorkload):
    """A 1-D convolution: ``in_hw = (L, 1)``, ``kernel = (k, 1)``."""

    kind: Literal["conv1d"] = "conv1d"


class Conv2dWorkload(_ConvWorkload):
    kind: Literal["conv2d"] = "conv2d"


class MatMulWorkload(_NoWindow, OpWorkload):
    """``a[batch, m, k] @ b[batch, k, n]``, both activations: ``b`` is written at every step and
    the ``m`` rows of ``a`` streamed through it (a grouped linear layer with a written weight)."""

    mapped: ClassVar[str] = "b"
    kind: Literal["matmul"] = "matmul"
    batch: Size = Field(1, description="independent products per sample (heads, ...)")
    m: Size
    k: Size
    n: Size

    @property
    def groups(self) -> int:
        return self.batch

    @property
    def in_ch(self) -> int:
        return self.batch * self.k

    @property
    def out_ch(self) -> int:
        return self.batch * self.n

    @property
    def n_mvm(self) -> int:
        return self.m

    @property
    def in_size(self) -> int:
        return self.batch * self.m * self.k

    @property
    def out_size(self) -> int:
        return self.batch * self.m * self.n


class RecurrentStateWorkload(_Strict):
    """The state a recurrence carries from one step (token) to the next and reads and writes
    once per step: the MLGRU's hidden state ``h`` (``d`` values per layer) or WKV's ``a``,
    ``b``, ``p`` (``3d``). Element-wise, not an operator: its cost is the memory traffic,
    ``2 · elements · bits`` per sample per step (docs/workload.md)."""

    name: str
    kind: str = Field(description="e.g. 'mlgru', 'wkv'")
    elements: Size = Field(description="state values per sample")
    bits: int = Field(32, ge=1, le=64, description="bits of one stored value")
    timesteps: Size = 1


class DigitalOpWorkload(_Strict):
    """An elementwise or row-wise function a digital unit computes (never a crossbar): softmax
    over rows of ``row_length``, LayerNorm over rows of ``row_length`` (its normalised shape),
    GELU per element. ``elements`` per sample per step, on ``timesteps`` steps."""

    name: str
    kind: Literal["softmax", "layernorm", "gelu"]
    elements: Size = Field(description="output elements per sample per step")
    row_length: Size = Field(1, description="elements a softmax or LayerNorm normalises together")
    timesteps: Size = 1

    @model_validator(mode="after")
    def _rows(self) -> DigitalOpWorkload:
        if self.elements % self.row_length:
            raise ValueError(f"row_length: {self.row_length} does not divide the {self.elements} elements")
        return self

    @property
    def rows(self) -> int:
        return self.elements // self.row_length


class ExitTest(_Strict):
    """The early-exit test run after every step a sample runs but the last (DT-SNN:
    docs/references.md#dt-snn): over the K output classes, stop when the normalised entropy of
    softmax(mean logits) is below ``threshold`` (``entropy``) or its top probability reaches it
    (``confidence``)."""

    rule: Literal["entropy", "confidence"]
    threshold: float = Field(ge=0.0, le=1.0)
    classes: int = Field(ge=2, le=_MAX, description="K, the classes the test runs over")


ENTRY_KINDS: dict[str, type[OpWorkload]] = {}


def register_entry(cls: type[OpWorkload]) -> type[OpWorkload]:
    """Register the Workload entry class of an operator kind (its ``kind`` default is the tag)."""
    ENTRY_KINDS[cls.model_fields["kind"].default] = cls
    return cls


for _cls in (LinearWorkload, Conv1dWorkload, Conv2dWorkload, MatMulWorkload):
    register_entry(_cls)


def _entry(i: int, data) -> OpWorkload:
    """Layer ``i`` as the class its ``kind`` names; errors are one line naming the layer."""
    if isinstance(data, OpWorkload):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"layers.{i}: must be a mapping, got {type(data).__name__}")  # noqa: TRY004 (pydantic reports ValueError)
    label = f"layers.{i} ({data['name']})" if isinstance(data.get("name"), str) else f"layers.{i}"
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in ENTRY_KINDS:
        raise ValueError(f"{label}.kind: unknown kind {kind!r}, allowed: {', '.join(sorted(ENTRY_KINDS))}")
    try:
        return ENTRY_KINDS[kind].model_validate(data)
    except ValidationError as e:
        raise ValueError(one_line_validation_error(e, prefix=f"{label}.").replace(".: ", ": ")) from None


# ---- schema version 1 --------------------------------------------------------------------
_V1_FIELDS = {
    "name", "kind", "in_ch", "out_ch", "kernel", "stride", "padding", "groups", "in_hw", "out_hw",
    "pooled_out_hw", "params", "has_bias", "weight_bits", "input_bits", "timesteps", "spiking_input",
    "has_neuron", "neuron_kind", "weight_sparsity", "macs", "in_nonzero_per_step", "acs_per_step",
    "out_spikes_per_step",
}  # fmt: skip


def upgrade_v1_layer(layer: dict) -> dict:
    """A schema-1 layer (flat, ``macs`` and ``params`` stored) as its schema-2 entry fields.

    ``macs`` must agree with the geometry (for a linear layer it gives ``positions``);
    ``params`` is derived in v2. 1-D convolutions had their second axis written as (k, 1)
    with padding 1; it is normalised to padding 0 (no estimator read it)."""
    if not isinstance(layer, dict):
        return layer
    unknown = sorted(set(layer) - _V1_FIELDS)
    if unknown:
        raise ValueError(f"layer {layer.get('name', '?')}: unknown key '{unknown[0]}' (schema version 1)")
    d = {k: v for k, v in layer.items() if k not in ("params", "macs", "weight_bits", "weight_sparsity")}
    d["operands"] = {
        "weight": {
            "kind": "static",
            "bits": layer.get("weight_bits", 32),
            "sparsity": layer.get("weight_sparsity", 0.0),
        }
    }
    kind = layer.get("kind")
    macs = layer.get("macs")
    if kind == "linear":
        for k in ("kernel", "stride", "padding", "groups", "in_hw", "out_hw", "pooled_out_hw"):
            d.pop(k, None)
        dense = _int(layer.get("in_ch")) * _int(layer.get("out_ch"))
        if isinstance(macs, int) and dense > 0 and macs >= dense and macs % dense == 0:
            d["positions"] = macs // dense
    elif kind == "conv1d":
        for k, fill in (("kernel", 1), ("stride", 1), ("padding", 0), ("in_hw", 1), ("out_hw", 1)):
            v = d.get(k)
            if isinstance(v, (list, tuple)) and len(v) == 2:
                d[k] = [v[0], fill]
    if isinstance(macs, int) and kind in ENTRY_KINDS:
        try:
            derived = ENTRY_KINDS[kind].model_validate(d).macs
        except ValidationError:
            return d  # the v2 validation reports the field
        if derived != macs:
            raise ValueError(
                f"layer {layer.get('name', '?')}.macs: {macs} does not match the geometry ({derived})"
            )
    return d


def _int(v) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def LayerWorkload(**fields) -> OpWorkload:
    """A Workload entry from the flat schema-1 fields (``macs``, ``params``, ``weight_bits``,
    ``weight_sparsity``), as layer lists and hand-built workloads write them."""
    return _entry(0, upgrade_v1_layer(fields))


class Workload(_Strict):
    """A traced network: its operators in execution order, with measured activity."""

    schema_version: Literal[2] = SCHEMA_VERSION
    model: str = "unknown"
    spiking: bool = True
    timesteps: int = Field(gt=0, le=_MAX)
    samples: int = Field(0, ge=0, description="samples the activity was averaged over (0: assumed)")
    dataset: str | None = None
    input_shape: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="one sample, without T and B"
    )
    running_per_step: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None, description="per step: fraction of samples still running (None: 1.0 at every step)"
    )
    exit_test: ExitTest | None = Field(None, description="the early-exit test (None: no early exit)")
    layers: list[SerializeAsAny[OpWorkload]]
    digital: list[DigitalOpWorkload] = Field(
        default_factory=list, description="softmax, LayerNorm and GELU: the digital unit's work"
    )
    recurrent_state: list[RecurrentStateWorkload] = Field(
        default_factory=list,
        description="optional: state of the MLGRU/WKV recurrences, read and written once per step",
    )

    @model_validator(mode="before")
    @classmethod
    def _dispatch(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        layers = data.get("layers")
        version = data.get("schema_version")
        if version is None:  # a hand-written file: v1 if its layers store macs
            v1 = isinstance(layers, list) and any(isinstance(x, dict) and "macs" in x for x in layers)
            version = 1 if v1 else SCHEMA_VERSION
        if version not in (1, SCHEMA_VERSION) or isinstance(version, bool):
            raise ValueError(f"schema_version {version!r} is not supported (expected 1 or {SCHEMA_VERSION})")
        data["schema_version"] = SCHEMA_VERSION
        if isinstance(layers, list):
            if version == 1:
                layers = [upgrade_v1_layer(x) for x in layers]
            data["layers"] = [_entry(i, x) for i, x in enumerate(layers)]
        return data

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if not self.layers:
            raise ValueError("layers: at least one layer is needed")
        running = self.running_per_step
        if running is not None and len(running) != self.timesteps:
            raise ValueError(f"running_per_step has {len(running)} entries, timesteps is {self.timesteps}")
        for t in range(1, len(running or [])):
            if running[t] > running[t - 1]:
                raise ValueError(
                    f"running_per_step.{t}: {running[t]} is more than step {t - 1}'s {running[t - 1]}; "
                    "a sample that exits runs no later step, so the fraction never rises"
                )
        entries = [("layers", i, x) for i, x in enumerate(self.layers)]
        for where, i, layer in entries + [("digital", i, x) for i, x in enumerate(self.digital)]:
            if layer.timesteps > self.timesteps:
                raise ValueError(
                    f"{where}.{i} ({layer.name}).timesteps: {layer.timesteps} is more than the workload's {self.timesteps}"
                )
        return self

    def running(self, t: int) -> float:
        """Fraction of samples still running at step ``t`` (early exit)."""
        return 1.0 if self.running_per_step is None else self.running_per_step[t]

    def steps_run(self, layer: OpWorkload) -> float:
        """Σ_t running(t) over the layer's steps: the steps a sample runs on average."""
        return float(sum(self.running(t) for t in range(layer.timesteps)))

    # ---- NeuroBench-style metrics ---------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """Per-sample totals over the steps run: dense MACs, effective ACs (those on non-zero
        weights too), sparsity of the activations and of the programmed (static) weights,
        footprint (step t weighted by ``running(t)``). Membrane memory: each neuron's
        ``neuron_states`` state variables at its recorded bits, a shared group once;
        ``footprint_reduction_vs_fp32``: 1 − footprint / (the same weights and states at 32
        bits), 0.9375 when everything is held at 2 bits."""
        dense = sum(layer.macs * self.steps_run(layer) for layer in self.layers)
        acs = sum(self._run_sum(layer.acs_per_step) for layer in self.layers)
        acs_nonzero_weights = sum(
            self._run_sum([layer.acs_on_nonzero_weights(t) for t in range(layer.timesteps)])
            for layer in self.layers
        )
        inputs = sum(layer.in_size * self.steps_run(layer) for layer in self.layers)
        nonzero = sum(self._run_sum(layer.in_nonzero_per_step) for layer in self.layers)
        params = sum(layer.params for layer in self.layers)
        weight_bytes = sum(layer.params * layer.weight_bits / 8 for layer in self.layers)
        static = [layer for layer in self.layers if not layer.dynamic]
        weights = sum(layer.weights for layer in static)
        zero_weights = sum(layer.weights * layer.weight_sparsity for layer in static)
        states = self.membrane_states()
        neurons = sum(n for n, _, _ in states.values())
        values = sum(n * words for n, _, words in states.values())
        membrane_bytes = sum(n * words * bits / 8 for n, bits, words in states.values())
        return {
            "dense_macs": float(dense),
            "effective_acs": float(acs),
            "effective_acs_on_nonzero_weights": float(acs_nonzero_weights),
            "activation_sparsity": 1.0 - nonzero / inputs if inputs else 0.0,
            "weight_sparsity": zero_weights / weights if weights else 0.0,
            "params": float(params),
            "weight_bytes": float(weight_bytes),
            "membrane_bytes": float(membrane_bytes),
            "footprint_bytes": float(weight_bytes + membrane_bytes),
            # the same weights and membranes at 32 bits (spikecim.quant.mint.memory_footprint)
            "footprint_reduction_vs_fp32": 1.0 - (weight_bytes + membrane_bytes) / (4.0 * (params + values))
            if params + values
            else 0.0,
            "neurons": float(neurons),
        }

    def _run_sum(self, per_step: list[float]) -> float:
        return float(sum(self.running(t) * v for t, v in enumerate(per_step)))

    def membrane_states(self) -> dict[str, tuple[int, int, int]]:
        """(neurons, bits, state variables per neuron) of each stored membrane: one per
        spiking operator, or one per sharing group (its largest stored membrane, at its widest
        bits and most state variables)."""
        out: dict[str, tuple[int, int, int]] = {}
        if not self.spiking:
            return out
        for i, layer in enumerate(self.layers):
            if not layer.has_neuron:
                continue
            key = layer.neuron_group or f"#{i}"
            n, bits, words = out.get(key, (0, 0, 0))
            out[key] = (
                max(n, layer.stored_membrane),
                max(bits, layer.membrane_bits),
                max(words, layer.neuron_states),
            )
        return out

    def shares_membrane(self, index: int) -> bool:
        """True when operator ``index`` shares its membrane with an earlier operator."""
        group = self.layers[index].neuron_group
        return group is not None and any(
            x.neuron_group == group and x.has_neuron for x in self.layers[:index]
        )

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the workload as JSON (parent folders made; in a run folder, recorded in its
        manifest: :func:`spikecim.pipeline.folder.write_file`)."""
        from spikecim.pipeline import folder

        return folder.write_file(Path(path), self.model_dump_json(indent=1).encode())

    @classmethod
    def load(cls, path: str | Path) -> Workload:
        """Load a workload from JSON or YAML, or from a run folder (its ``workload.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "workload.json"
        return cls.from_dict(read_mapping(path, "workload", "with 'layers'"), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "workload") -> Workload:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SpikecimError(one_line_validation_error(e, prefix=f"{source}: ")) from None
        except (TypeError, OverflowError, RecursionError) as e:  # malformed input pydantic did not catch
            raise SpikecimError(f"{source}: not a valid workload ({type(e).__name__})") from None
