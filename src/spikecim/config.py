"""The run configuration: one YAML file, validated by pydantic, overridable from the CLI.

``spikecim run`` with no file uses :class:`RunConfig` defaults: the spiking ``convnet``
and its ANN twin on scikit-learn's digits. A YAML file gives any subset of the fields;
``--set section.field=value`` overrides one field. Unknown keys, wrong types and values
out of range fail with one line naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spikecim.analog.stage_config import AnalogStageConfig
from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.hw.stage_config import HardwareStageConfig
from spikecim.readers import read_mapping

__all__ = [
    "DataConfig",
    "ModelConfig",
    "NeuronConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    name: str = Field("digits", description="digits | mnist | fashion-mnist | cifar10 | cifar100 | nmnist")
    root: str | None = Field(None, description="folder holding the data set files (not needed for digits)")
    encoder: Literal["direct", "rate", "latency", "frames"] = Field(
        "direct", description="spike encoder; frame data sets (nmnist) take direct or frames"
    )
    timesteps: int = Field(4, gt=0, le=10000, description="T of the spiking model (the ANN twin runs T = 1)")
    batch_size: int = Field(64, gt=0)
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0, description="digits only: held-out share")
    limit: int | None = Field(None, gt=0, description="use at most this many training samples")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from spikecim.data import list_datasets

        if v not in list_datasets():
            raise ValueError(f"unknown data set '{v}', allowed: {', '.join(list_datasets())}")
        return v


class NeuronConfig(_Section):
    kind: Literal["lif", "if", "synaptic"] = "lif"
    beta: float = Field(0.5, ge=0.0, le=1.0)
    threshold: float = Field(1.0, gt=0.0)
    reset: Literal["subtract", "zero"] = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    surrogate: str = "atan"
    learn_beta: bool = False
    learn_threshold: bool = False

    def module_kwargs(self) -> dict[str, Any]:
        kw = self.model_dump(exclude={"kind"})
        if self.kind == "if":
            kw.pop("beta")
            kw.pop("learn_beta")
        return kw


class ModelConfig(_Section):
    name: str = "convnet"
    neuron: NeuronConfig = NeuronConfig()
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra builder arguments")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from spikecim.models import list_models

        if v not in list_models():
            raise ValueError(f"unknown model '{v}', allowed: {', '.join(list_models())}")
        return v


class TrainConfig(_Section):
    epochs: int = Field(15, ge=0)
    lr: float = Field(2e-3, gt=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    schedule: Literal["cosine", "none"] = "cosine"
    loss: Literal["mean", "per_step"] = Field("mean", description="CE on mean logits, or at every step")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    ann_twin: bool = Field(True, description="also train the ANN twin of the same topology")


class ReportConfig(_Section):
    enabled: bool = True


RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
DEFAULT_STAGES = ["train", "evaluate", "trace", "analog", "hardware", "report"]


class RunConfig(_Section):
    name: str | None = Field(
        None, description="run folder output_dir/<name>; None: '<data.name>-<model.name>'"
    )
    seed: int = Field(0, ge=0)
    output_dir: str = Field("runs", description="folder that holds the run folders")
    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES))
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    analog: AnalogStageConfig = AnalogStageConfig()
    hardware: HardwareStageConfig = HardwareStageConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("name") is None:
            data, model = _section_name(v.get("data"), "digits"), _section_name(v.get("model"), "convnet")
            v = dict(v, name=f"{data}-{model}")
        return v

    @field_validator("name")
    @classmethod
    def _run_name(cls, v: str) -> str:
        # One folder directly inside output_dir: no separators, no '.'/'..', not hidden.
        if not RUN_NAME.fullmatch(v):
            raise ValueError(
                f"'{v}' is not a run name: letters, digits, '.', '_' and '-', not starting with '.'"
            )
        return v

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[str]) -> list[str]:
        from spikecim.pipeline import list_stages

        known = list_stages()
        for s in v:
            if s not in known:
                raise ValueError(f"unknown stage '{s}', allowed: {', '.join(known)}")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _section_name(section: Any, default: str) -> str:
    """The ``name`` of a data or model section given as a dict or a built section."""
    if isinstance(section, dict):
        return str(section.get("name", default))
    return str(getattr(section, "name", default))


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.field=value`` strings to a plain config dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise SpikecimError(f"--set: expected section.field=value, got '{item}'")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SpikecimError(f"--set: '{key}' does not name a field")
        node[parts[-1]] = _parse_value(value)
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config (or the defaults), apply overrides, validate."""
    data: dict = {}
    if path is not None:
        data = read_mapping(path, "config", "of sections")
    data = apply_overrides(data, overrides or [])
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="config.")) from None
