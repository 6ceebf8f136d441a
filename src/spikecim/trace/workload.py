"""The Workload: what a network asks of hardware, measured on real data.

It is the one contract between the algorithm side (models, training) and the hardware
side (``spikecim.hw``): estimators read a :class:`Workload` and never a torch model. It
can come from :func:`spikecim.trace.trace` on a model, from a NIR file, or from a YAML
layer list written by hand (activity given or assumed dense).

Units and conventions (all activity figures are *per sample*):

- ``in_nonzero_per_step[t]``: mean number of non-zero input elements at step ``t``
  (spikes for a spiking layer, non-zero activations for an ANN layer).
- ``out_spikes_per_step[t]``: mean number of spikes of the neuron that follows the layer
  (``None`` when no neuron follows, e.g. the output layer or an ANN).
- ``macs`` is the dense multiply-accumulate count of one step (one sample);
  ``acs_per_step[t]`` the accumulates actually triggered by the non-zero inputs at step t
  (each non-zero input element times its fan-out).
- ``fan_out``: how many outputs (MACs) one input element feeds: ``out_ch * k_h * k_w /
  (stride_h * stride_w)`` for a convolution (exact count for the recorded shape is used
  when traced), ``out_features`` for a linear layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION", "LayerWorkload", "Workload"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class LayerWorkload(_Strict):
    """One synaptic layer (Linear / Conv1d / Conv2d) and the neuron after it."""

    name: str
    kind: Literal["linear", "conv1d", "conv2d"]
    in_ch: int = Field(gt=0, description="input channels, or input features for a linear layer")
    out_ch: int = Field(gt=0, description="output channels, or output features")
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = Field(1, gt=0)
    in_hw: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    pooled_out_hw: tuple[int, int] | None = Field(
        None, description="spatial size after a pooling layer that directly follows, if any"
    )
    params: int = Field(ge=0, description="weights + biases")
    has_bias: bool = False
    weight_bits: int = Field(32, ge=1, le=64)
    input_bits: int = Field(1, ge=1, le=64, description="1 for spikes, the activation precision otherwise")
    timesteps: int = Field(gt=0)
    spiking_input: bool = True
    has_neuron: bool = Field(True, description="a neuron (LIF/IF/...) or ReLU follows the layer")
    neuron_kind: str | None = Field(None, description="e.g. 'LIF', 'IF', 'ReLU'; None at the output")
    weight_sparsity: float = Field(0.0, ge=0.0, le=1.0, description="fraction of exactly-zero weights")
    macs: int = Field(ge=0, description="dense MACs of one step, one sample")
    in_nonzero_per_step: list[float] = Field(description="per step: mean non-zero inputs per sample")
    acs_per_step: list[float] = Field(description="per step: accumulates triggered by non-zero inputs")
    out_spikes_per_step: list[float] | None = Field(
        None, description="per step: spikes of the following neuron"
    )

    @model_validator(mode="after")
    def _lengths(self) -> LayerWorkload:
        for field in ("in_nonzero_per_step", "acs_per_step", "out_spikes_per_step"):
            v = getattr(self, field)
            if v is not None and len(v) != self.timesteps:
                raise ValueError(f"{field} has {len(v)} entries, timesteps is {self.timesteps}")
            if v is not None and any(a < 0 for a in v):
                raise ValueError(f"{field} must be >= 0")
        return self

    # ---- derived figures (never stored) ---------------------------------------------
    @property
    def in_size(self) -> int:
        """Input elements of one step: in_ch * H * W."""
        return self.in_ch * self.in_hw[0] * self.in_hw[1]

    @property
    def out_size(self) -> int:
        """Output elements (neurons) of one step: out_ch * H' * W'."""
        return self.out_ch * self.out_hw[0] * self.out_hw[1]

    @property
    def weights(self) -> int:
        return self.out_ch * (self.in_ch // self.groups) * self.kernel[0] * self.kernel[1]

    @property
    def in_activity(self) -> float:
        """Mean fraction of non-zero inputs over all steps (1 - activation sparsity)."""
        return sum(self.in_nonzero_per_step) / (self.timesteps * self.in_size)

    @property
    def total_acs(self) -> float:
        return sum(self.acs_per_step)

    @property
    def total_macs(self) -> int:
        """Dense MACs over all steps."""
        return self.macs * self.timesteps


class Workload(_Strict):
    """A traced network: its synaptic layers in execution order, with measured activity."""

    schema_version: int = SCHEMA_VERSION
    model: str = "unknown"
    spiking: bool = True
    timesteps: int = Field(gt=0)
    samples: int = Field(0, ge=0, description="samples the activity was averaged over (0: assumed)")
    dataset: str | None = None
    input_shape: list[int] = Field(default_factory=list, description="one sample, without T and B")
    layers: list[LayerWorkload]

    @model_validator(mode="after")
    def _version(self) -> Workload:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {self.schema_version} is not supported (expected {SCHEMA_VERSION})"
            )
        if not self.layers:
            raise ValueError("layers: at least one layer is needed")
        return self

    # ---- NeuroBench-style metrics ---------------------------------------------------
    def metrics(self) -> dict[str, float]:
        """Per-sample totals over all steps: dense MACs, effective ACs, sparsity, footprint."""
        dense = sum(layer.total_macs for layer in self.layers)
        acs = sum(layer.total_acs for layer in self.layers)
        inputs = sum(layer.in_size * layer.timesteps for layer in self.layers)
        nonzero = sum(sum(layer.in_nonzero_per_step) for layer in self.layers)
        params = sum(layer.params for layer in self.layers)
        weight_bytes = sum(layer.params * layer.weight_bits / 8 for layer in self.layers)
        neurons = sum(layer.out_size for layer in self.layers if layer.has_neuron and self.spiking)
        return {
            "dense_macs": float(dense),
            "effective_acs": float(acs),
            "activation_sparsity": 1.0 - nonzero / inputs if inputs else 0.0,
            "params": float(params),
            "weight_bytes": float(weight_bytes),
            "membrane_bytes": float(neurons * 4),
            "footprint_bytes": float(weight_bytes + neurons * 4),
            "neurons": float(neurons),
        }

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1))
        return path

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
