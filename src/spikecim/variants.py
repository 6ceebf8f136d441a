"""The variants a run compares: one network in several versions, listed in the run config.

A variant is data: a name, whether it spikes, its timesteps, neuron settings and training
settings over the run's, and a list of method transforms (:mod:`spikecim.methods`) applied
when its model is built. The default is the spiking model ``snn`` and its ANN twin ``ann``
(same topology with ReLU, T = 1); ratios are reported against the run's ``baseline``
variant as ``<variant>_over_<baseline>``.

This module is pydantic only (no torch), so reading a config stays light.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from spikecim.schema import Schema

__all__ = [
    "MethodConfig",
    "VariantConfig",
    "default_variants",
    "legacy_variants",
    "ratio_key",
    "resolve_variants",
    "workload_filename",
]


class MethodConfig(Schema):
    """One method transform of a variant: a registered name and its options.

    In YAML either a bare name (``- quantise``) or a mapping (``- {name: quantise, bits: 4}``):
    every key but ``name`` is passed to the method as a keyword argument.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class VariantConfig(Schema):
    """One variant of the run's network (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="names files and table rows: letters, digits, _ -",
    )
    spiking: bool = Field(True, description="the spiking model, or its ANN twin (ReLU, T = 1)")
    timesteps: int | None = Field(
        None, gt=0, le=10000, description="T of this variant; None: data.timesteps (spiking) or 1 (ANN)"
    )
    neuron: dict[str, Any] = Field(
        default_factory=dict, description="model.neuron fields this variant sets otherwise (spiking only)"
    )
    methods: list[MethodConfig] = Field(
        default_factory=list, description="method transforms applied in order when the model is built"
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="train fields this variant sets otherwise"
    )

    @model_validator(mode="after")
    def _ann(self) -> VariantConfig:
        if not self.spiking:
            if self.timesteps not in (None, 1):
                raise ValueError(
                    f"variant '{self.name}': an ANN variant runs T = 1, got timesteps {self.timesteps}"
                )
            if self.neuron:
                raise ValueError(f"variant '{self.name}': neuron settings apply to spiking variants only")
        return self


def default_variants() -> list[VariantConfig]:
    """The spiking model ``snn`` and its ANN twin ``ann``."""
    return [VariantConfig(name="snn"), VariantConfig(name="ann", spiking=False)]


def legacy_variants(data: dict) -> dict:
    """Rewrite a raw config dict that uses the deprecated ``train.ann_twin``.

    ``ann_twin: false`` drops the ``ann`` variant (from the default list when ``variants`` is
    not given); ``ann_twin: true`` is today's default and is dropped. A warning names the
    replacement. Configs without the key are returned unchanged.
    """
    train = data.get("train")
    if not isinstance(train, dict) or "ann_twin" not in train:
        return data
    data = {**data, "train": {k: v for k, v in train.items() if k != "ann_twin"}}
    if train["ann_twin"] is False:
        warnings.warn(
            "train.ann_twin is deprecated: list the variants instead (variants: [{name: snn}])",
            DeprecationWarning,
            stacklevel=3,
        )
        listed = data.get("variants")
        if listed is None:
            listed = [v.model_dump() for v in default_variants()]
        data["variants"] = [v for v in listed if not (isinstance(v, dict) and v.get("name") == "ann")]
    return data


def resolve_variants(config: dict | None) -> list[VariantConfig]:
    """The variants of a raw ``config.yaml`` dict (older folders without ``variants`` too)."""
    data = legacy_variants(dict(config or {}))
    listed = data.get("variants")
    if listed is None:
        return default_variants()
    return [VariantConfig.model_validate(v) for v in listed]


def workload_filename(variants: list[VariantConfig], name: str) -> str:
    """The traced workload's file in the run folder: ``workload.json`` for the first spiking
    variant (what older tools read), ``workload_<name>.json`` for every other."""
    first = next((v.name for v in variants if v.spiking), None)
    return "workload.json" if name == first else f"workload_{name}.json"


def ratio_key(variant: str, baseline: str) -> str:
    """The key of a ratio table: ``snn_over_ann``."""
    return f"{variant}_over_{baseline}"
