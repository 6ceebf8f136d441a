"""Workloads without a model: a YAML layer list, or the SpikeSim layer format.

Layer list (``workload_from_layers``)::

    model: vgg-small
    timesteps: 4
    spiking: true            # false: an ANN (timesteps 1, multi-bit inputs)
    weight_bits: 8
    input_bits: 8            # precision of real-valued inputs (first SNN layer, ANN layers)
    activity: 1.0            # default fraction of non-zero inputs (1.0 = dense)
    in_hw: 32                # first layer's input size; later layers chain
    layers:
      - {kind: conv2d, in_ch: 3, out_ch: 64, kernel: 3, padding: 1}
      - {kind: conv2d, in_ch: 64, out_ch: 64, kernel: 3, padding: 1, pool: 2, activity: 0.2}
      - {kind: linear, in_ch: 4096, out_ch: 10, has_neuron: false}

Geometry is checked when the list is read, with one line naming the field: channels, sizes,
kernels and strides are integers from 1 to 2**24 (``kernel``, ``stride``, ``padding``,
``in_hw`` one integer or a pair), ``padding`` from 0, ``groups`` divides ``in_ch`` and
``out_ch``, ``timesteps`` is 1 to 10000, and the kernel fits the padded input.

Per layer: ``out_hw = ⌊(in + 2·padding − kernel)/stride⌋ + 1``, ``pooled_out_hw = out_hw // pool``,
``macs = out_ch·(in_ch/groups)·k²·out_h·out_w`` (``in_ch·out_ch`` for linear), and at every
step ``in_nonzero = activity·in_size``, ``acs = activity·macs``. In an SNN the first layer
takes real-valued input (direct encoding) unless ``spiking_input: true`` is given.

SpikeSim format (``spikesim_from_spec``): ``xbar_size``, ``pe_per_tile``, ``timesteps``,
``clock_mhz``, ``device`` (``rram`` | ``sram``), ``kernel``,
``layers: [{in_ch, out_ch, in_dim, out_dim}]`` (``out_dim`` after pooling, as in the script).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from spikecim.errors import SpikecimError
from spikecim.hw.units import first_error
from spikecim.readers import read_mapping, read_settings
from spikecim.schema import Schema
from spikecim.trace.workload import LayerWorkload, Workload

__all__ = ["LayerSpec", "NetworkSpec", "load_workload", "spikesim_from_spec", "workload_from_layers"]

MAX_SIZE = 2**24  # channels, feature-map sides, kernels: far beyond any network, and products stay finite
MAX_TIMESTEPS = 10000  # as data.timesteps of the run config


def _pair(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _geometry_pair(v, info: ValidationInfo):
    """``kernel``/``stride``/``padding``/``in_hw``: one integer or a pair, each in range."""
    if v is None:
        return v
    low = 0 if info.field_name == "padding" else 1
    values = list(v) if isinstance(v, (list, tuple)) else [v, v]
    ok = len(values) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in values)
    if not ok or not all(low <= x <= MAX_SIZE for x in values):
        raise ValueError(f"must be an integer or a pair of integers, each from {low} to 2**24, got {v!r}")
    return tuple(values)


class _Spec(Schema):
    """Unknown keys, nan/inf and numbers beyond 1e12 are refused (:mod:`spikecim.schema`)."""


class LayerSpec(_Spec):
    name: str | None = None
    kind: Literal["conv2d", "conv1d", "linear"] = "conv2d"
    in_ch: int = Field(gt=0, le=MAX_SIZE)
    out_ch: int = Field(gt=0, le=MAX_SIZE)
    kernel: int | tuple[int, int] = 1
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] = 0
    groups: int = Field(1, gt=0, le=MAX_SIZE)
    in_hw: int | tuple[int, int] | None = None
    pool: int = Field(1, gt=0, le=MAX_SIZE)
    bias: bool = False
    activity: float | None = Field(None, ge=0, le=1)
    spiking_input: bool | None = None
    has_neuron: bool = True
    weight_bits: int | None = Field(None, ge=1, le=64)
    weight_sparsity: float = Field(0.0, ge=0, le=1)

    _pairs = field_validator("kernel", "stride", "padding", "in_hw", mode="before")(_geometry_pair)

    @field_validator("groups")
    @classmethod
    def _groups(cls, v: int, info: ValidationInfo) -> int:
        in_ch, out_ch = info.data.get("in_ch"), info.data.get("out_ch")
        if in_ch is not None and out_ch is not None and (in_ch % v or out_ch % v):
            raise ValueError(f"{v} must divide in_ch {in_ch} and out_ch {out_ch}")
        return v


class NetworkSpec(_Spec):
    model: str = "layers"
    timesteps: int = Field(1, gt=0, le=MAX_TIMESTEPS)
    spiking: bool = True
    weight_bits: int = Field(8, ge=1, le=64)
    input_bits: int = Field(8, ge=1, le=64)
    activity: float = Field(1.0, ge=0, le=1)
    in_hw: int | tuple[int, int] = 1
    layers: list[LayerSpec] = Field(min_length=1)

    _pairs = field_validator("in_hw", mode="before")(_geometry_pair)


def workload_from_layers(spec: dict, source: str = "layers") -> Workload:
    """Build a :class:`Workload` from a layer list (see the module docstring)."""
    try:
        net = NetworkSpec.model_validate(spec)
    except ValidationError as e:
        raise SpikecimError(first_error(e, prefix=f"{source}: ")) from None
    T = net.timesteps if net.spiking else 1
    hw = _pair(net.in_hw)
    layers = []
    for i, s in enumerate(net.layers):
        k, st, pad = _pair(s.kernel), _pair(s.stride), _pair(s.padding)
        if s.kind == "linear":
            in_hw, out_hw = (1, 1), (1, 1)
            macs = s.in_ch * s.out_ch
        else:
            in_hw = _pair(s.in_hw) if s.in_hw is not None else hw
            out_hw = tuple((in_hw[d] + 2 * pad[d] - k[d]) // st[d] + 1 for d in range(2))
            if min(out_hw) < 1:
                raise SpikecimError(f"{source}: layers.{i}.kernel: {k} larger than the padded input {in_hw}")
            macs = s.out_ch * (s.in_ch // s.groups) * k[0] * k[1] * out_hw[0] * out_hw[1]
        pooled = (out_hw[0] // s.pool, out_hw[1] // s.pool) if s.pool > 1 else None
        if pooled is not None and min(pooled) < 1:
            raise SpikecimError(f"{source}: layers.{i}.pool: {s.pool} larger than the output {out_hw}")
        hw = pooled or out_hw
        spiking_input = (i > 0) if s.spiking_input is None else s.spiking_input
        spiking_input = spiking_input and net.spiking
        a = net.activity if s.activity is None else s.activity
        in_size = s.in_ch * in_hw[0] * in_hw[1]
        weights = s.out_ch * (s.in_ch // s.groups) * k[0] * k[1] if s.kind != "linear" else s.in_ch * s.out_ch
        layers.append(
            LayerWorkload(
                name=s.name or f"{s.kind}{i}",
                kind=s.kind,
                in_ch=s.in_ch,
                out_ch=s.out_ch,
                kernel=k if s.kind != "linear" else (1, 1),
                stride=st if s.kind != "linear" else (1, 1),
                padding=pad if s.kind != "linear" else (0, 0),
                groups=s.groups,
                in_hw=in_hw,
                out_hw=out_hw,
                pooled_out_hw=pooled,
                params=weights + (s.out_ch if s.bias else 0),
                has_bias=s.bias,
                weight_bits=s.weight_bits or net.weight_bits,
                input_bits=1 if spiking_input else net.input_bits,
                timesteps=T,
                spiking_input=spiking_input,
                has_neuron=s.has_neuron,
                neuron_kind=("LIF" if net.spiking else "ReLU") if s.has_neuron else None,
                weight_sparsity=s.weight_sparsity,
                macs=macs,
                in_nonzero_per_step=[a * in_size] * T,
                acs_per_step=[a * macs] * T,
                out_spikes_per_step=None,
            )
        )
    return Workload(
        model=net.model,
        spiking=net.spiking,
        timesteps=T,
        samples=0,
        input_shape=[net.layers[0].in_ch, *layers[0].in_hw],
        layers=layers,
    )


class SpikeSimLayer(_Spec):
    in_ch: int = Field(gt=0, le=MAX_SIZE)
    out_ch: int = Field(gt=0, le=MAX_SIZE)
    in_dim: int = Field(gt=0, le=MAX_SIZE)
    out_dim: int = Field(gt=0, le=MAX_SIZE)


class SpikeSimSpec(_Spec):
    xbar_size: int = Field(64, gt=0, le=MAX_SIZE)
    pe_per_tile: int = Field(8, gt=0, le=MAX_SIZE)
    timesteps: int = Field(5, gt=0, le=MAX_TIMESTEPS)
    clock_mhz: float = Field(250.0, gt=0)
    device: Literal["rram", "sram"] = "rram"
    kernel: int = Field(3, gt=0, le=MAX_SIZE)
    layers: list[SpikeSimLayer] = Field(min_length=1)

    @model_validator(mode="after")
    def _pooled_within_the_convolution(self) -> SpikeSimSpec:
        """``out_dim`` is after pooling: at most the 'same' convolution's output."""
        k = self.kernel
        for i, layer in enumerate(self.layers):
            conv_dim = layer.in_dim + 2 * (k // 2) - k + 1
            if layer.out_dim > conv_dim:
                raise ValueError(
                    f"layers.{i}.out_dim: {layer.out_dim} is larger than the convolution's output "
                    f"{conv_dim} (in_dim {layer.in_dim}, kernel {k}): out_dim is after pooling"
                )
        return self


def spikesim_from_spec(spec: dict, source: str = "spikesim"):
    """(Workload, Architecture) for the SpikeSim layer format (see the module docstring)."""
    from spikecim.hw.arch import load_architecture

    try:
        s = SpikeSimSpec.model_validate(spec)
    except ValidationError as e:
        raise SpikecimError(first_error(e, prefix=f"{source}: ")) from None
    k = s.kernel
    layers = [
        LayerWorkload(
            name=f"conv{i}",
            kind="conv2d",
            in_ch=l.in_ch,
            out_ch=l.out_ch,
            kernel=(k, k),
            padding=(k // 2, k // 2),
            in_hw=(l.in_dim, l.in_dim),
            # the script's out_dim is after pooling; the convolution itself keeps in_dim ('same')
            out_hw=(conv_dim := l.in_dim + 2 * (k // 2) - k + 1, conv_dim),
            pooled_out_hw=(l.out_dim, l.out_dim) if l.out_dim != conv_dim else None,
            params=l.in_ch * l.out_ch * k * k,
            timesteps=s.timesteps,
            spiking_input=i > 0,
            macs=l.out_ch * l.in_ch * k * k * conv_dim**2,
            in_nonzero_per_step=[float(l.in_ch * l.in_dim**2)] * s.timesteps,
            acs_per_step=[float(l.out_ch * l.in_ch * k * k * conv_dim**2)] * s.timesteps,
        )
        for i, l in enumerate(s.layers)
    ]
    wl = Workload(model="spikesim-layers", spiking=True, timesteps=s.timesteps, layers=layers)
    arch = load_architecture(
        f"spikesim-{s.device}-65nm", xbar_size=s.xbar_size, pes_per_tile=s.pe_per_tile, clock_mhz=s.clock_mhz
    )
    return wl, arch


def _read(path: Path) -> dict:
    return read_settings(path, "workload", "with 'layers'", "give a traced workload or a layer list")


def load_workload(path: str | Path, variant: str | None = None) -> Workload:
    """A workload from a run folder (one of its variants; None: the first spiking one), a
    traced JSON/YAML, or a layer list (one network each: ``variant`` is refused)."""
    path = Path(path)
    if path.is_dir():
        path = path / _run_workload_file(path, variant)
    elif variant is not None:
        raise SpikecimError(f"variant: applies to a run folder only; {path} holds one network")
    if not path.exists():
        raise SpikecimError(f"workload: file not found: {path}")
    data = _read(path)
    layers = data.get("layers")
    traced = "schema_version" in data or (
        isinstance(layers, list) and layers and isinstance(layers[0], dict) and "macs" in layers[0]
    )
    if traced:
        return Workload.from_dict(data, source=str(path))
    if "xbar_size" in data:
        raise SpikecimError(
            f"workload: {path} is a SpikeSim layer file; cost it with: spikecim hw spikesim {path}"
        )
    return workload_from_layers(data, source=str(path))


def _run_workload_file(run_dir: Path, variant: str | None) -> str:
    from spikecim.variants import resolve_variants, workload_filename

    config = run_dir / "config.yaml"
    variants = resolve_variants(read_mapping(config, "config") if config.exists() else None)
    names = [v.name for v in variants]
    if variant is None:
        variant = next((v.name for v in variants if v.spiking), names[0])
    if variant not in names:
        raise SpikecimError(f"variant: unknown variant '{variant}', allowed: {', '.join(names)}")
    return workload_filename(variants, variant)
