"""Settings of the ``ptq`` stage of ``spikecim run``: weight-only post-training quantisation
of every trained variant (pydantic only, so the run config reads it without torch)."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, field_validator

from spikecim.schema import MAX_LR, Schema

__all__ = ["PtqStageConfig"]


class PtqStageConfig(Schema):
    enabled: bool = True
    methods: list[Literal["rtn", "adaround", "tesseraq"]] = Field(
        default_factory=lambda: ["rtn", "adaround", "tesseraq"],
        description="rtn (round to nearest), adaround (reconstruction without the schedule), tesseraq",
    )
    bits: list[int] = Field(default_factory=lambda: [2, 3, 4], description="weight bits, each 2 to 8")
    group_size: int | None = Field(
        32, ge=1, description="inputs sharing one step (null: one per output channel)"
    )
    symmetric: bool = Field(False, description="symmetric integers (default: asymmetric, as TesseraQ)")
    calibration_samples: int = Field(256, ge=1, description="training samples the reconstruction fits")
    batch_size: int | None = Field(
        32, ge=1, description="calibration samples per Adam step, drawn at random (null: all of them)"
    )
    steps: int = Field(50, ge=0, le=100_000, description="Adam steps per stage of the schedule (paper: 250)")
    lr: float = Field(1e-3, gt=0, le=MAX_LR, description="Adam learning rate, in (0, 10]")
    thresholds: list[float] | None = Field(
        None, description="soft fraction after each stage, non-increasing in [0, 1) (null: the paper's 20)"
    )
    learn_scale: bool = Field(True, description="TesseraQ's dequantisation-scale factor 2σ(φ) per group")
    variants: list[str] | None = Field(None, description="variants to quantise (null: all)")
    analog: bool = Field(
        False, description="also score each quantised model on the analog stage's crossbar (lm: perplexity)"
    )

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give one or more of rtn, adaround, tesseraq, each once")
        return v

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if not v or any(not 2 <= b <= 8 for b in v) or len(set(v)) != len(v):
            raise ValueError("give one or more weight bit widths between 2 and 8, each once")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (
            not v or any(not 0 <= q < 1 for q in v) or any(b > a for a, b in itertools.pairwise(v))
        ):
            raise ValueError("must be a non-empty, non-increasing list of fractions in [0, 1)")
        return v
