"""Settings of the ``analog`` stage of ``spikecim run`` (kept import-light for the config:
pydantic only; the crossbar itself is validated when the stage runs)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo, field_validator, model_validator

from spikecim.analog.hwa_config import HwaConverters
from spikecim.errors import one_line_validation_error
from spikecim.schema import MAX_INT, MAX_LR, Schema

_PRESET_DIR = Path(__file__).parent / "presets"
_YEAR_S = 365 * 24 * 3600.0
_HWA_FIELDS = ("dac_bits", "adc_bits", "out_bound", "input_range", "tile_rows", "weight_clip_sigma")


class AnalogStageConfig(Schema):
    enabled: bool = True
    preset: str = Field(
        "pcm-aihwkit",
        description="a preset name (ideal, pcm-aihwkit, rram-65nm, sram-digital) or a YAML file",
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="crossbar fields over the preset")
    n_seeds: int = Field(3, ge=1, le=1000, description="programming seeds of the Monte-Carlo evaluation")
    seed: int = Field(0, ge=0, lt=MAX_INT, description="first programming seed, 0 <= seed < 2**63")
    t_inference_s: float = Field(
        3600.0, ge=0, description="time since programming of the headline accuracy, s"
    )
    drift_times_s: list[float] = Field(
        default_factory=lambda: [1.0, 3600.0, 86400.0, 30 * 86400.0, _YEAR_S],
        description="times since programming of the drift sweep, s (1 s to 1 year; empty: no sweep)",
    )
    adc_bits_sweep: list[int] = Field(
        default_factory=lambda: [4, 6, 8, 10], description="ADC resolutions of the sweep (empty: no sweep)"
    )
    write_noise_gammas: list[float] = Field(
        default_factory=list,
        description="write-noise factors γ of the sweep over written K/V crossbars, with and without "
        "ClipFormer (and after HWA training when hwa is on); only for models with a MatMul (empty: no sweep)",
    )
    max_samples: int | None = Field(None, gt=0, description="evaluate on at most this many test samples")
    calibration_samples: int = Field(
        256,
        ge=0,
        description="training samples for ADC range and BN fine-tuning; >= 1 when the ADC range is calibrated",
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description=(
            "processes for the Monte-Carlo loop over seeds, kept for all the stage's passes (1: serial); "
            "the same results for any count"
        ),
    )
    ray_address: str | None = Field(
        None,
        min_length=1,
        description="run the seeds as Ray tasks on this cluster ('local': start one here); needs ray",
    )
    hwa: bool = Field(True, description="hardware-aware training (weight noise) of a copy, then re-evaluate")
    hwa_modifier: Literal["add_normal", "mult_normal", "pcm"] = "pcm"
    hwa_noise_std: float = Field(1.0, ge=0, description="noise scale of the modifier (1.0: PCM noise as is)")
    hwa_epochs: int = Field(2, ge=0)
    hwa_lr: float = Field(5e-4, gt=0, le=MAX_LR, description="learning rate, in (0, 10]")
    # the converters of the HWA training forward, flat in the run config; HwaConverters
    # (spikecim.analog.hwa_config) declares their bounds and checks them (_hwa_field, _hwa)
    hwa_dac_bits: int | None = Field(
        None, description="input DAC bits in the HWA training forward (None: off)"
    )
    hwa_adc_bits: int | None = Field(
        None, description="output ADC bits in the HWA training forward (None: off); needs hwa_out_bound"
    )
    hwa_out_bound: float | None = Field(
        None, description="HWA output bound, in input range x max|W| of the tile (None: unbounded)"
    )
    hwa_input_range: str | None = Field(
        None, description="HWA input range: learned or abs-max (None: learned when a DAC or bound is on)"
    )
    hwa_tile_rows: int | None = Field(None, description="inputs per tile in the HWA forward (None: one tile)")
    hwa_weight_clip_sigma: float | None = Field(
        None, description="clip weights to ±sigma·std(W) after each HWA step (None: off)"
    )
    bn_finetune: bool = Field(True, description="retrain only BatchNorm on the programmed crossbar")
    bn_epochs: int = Field(3, ge=0)
    bn_lr: float = Field(1e-2, gt=0, le=MAX_LR, description="learning rate, in (0, 10]")

    @field_validator("preset")
    @classmethod
    def _preset(cls, v: str) -> str:
        names = sorted(p.stem for p in _PRESET_DIR.glob("*.yaml"))
        if v in names or v.endswith((".yaml", ".yml")):
            return v
        raise ValueError(f"unknown preset '{v}', allowed: {', '.join(names)} or a .yaml file")

    @field_validator("drift_times_s")
    @classmethod
    def _times(cls, v: list[float]) -> list[float]:
        if any(t < 0 for t in v):
            raise ValueError("times must be >= 0 seconds")
        return v

    @field_validator("write_noise_gammas")
    @classmethod
    def _gammas(cls, v: list[float]) -> list[float]:
        if any(not 0 <= g <= 1e3 for g in v):
            raise ValueError("every γ must be between 0 and 1000")
        return v

    @field_validator("adc_bits_sweep")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if any(not 1 <= b <= 16 for b in v):
            raise ValueError("ADC bits must be between 1 and 16")
        return v

    @field_validator(*(f"hwa_{name}" for name in _HWA_FIELDS), mode="before")
    @classmethod
    def _hwa_field(cls, v: Any, info: ValidationInfo) -> Any:
        """The value checked by the matching field of HwaConverters (its bounds, its choices)."""
        name = info.field_name.removeprefix("hwa_")
        try:
            return _converter_field(name).validate_python(v)
        except ValidationError as e:
            raise ValueError(one_line_validation_error(e)) from None

    @model_validator(mode="after")
    def _hwa(self) -> AnalogStageConfig:
        """The settings together, as HwaConverters checks them (adc_bits needs out_bound),
        its message naming the run config's keys."""
        try:
            self.hwa_converters()
        except ValidationError as e:
            msg = one_line_validation_error(e)
            raise ValueError(re.sub(rf"\b({'|'.join(_HWA_FIELDS)})\b", r"hwa_\1", msg)) from None
        return self

    def hwa_converters(self):
        """The converters of the hardware-aware training forward
        (:class:`~spikecim.analog.hwa_config.HwaConverters`)."""
        return HwaConverters(**{name: getattr(self, f"hwa_{name}") for name in _HWA_FIELDS})

    @model_validator(mode="after")
    def _crossbar(self) -> AnalogStageConfig:
        """Build the crossbar once, so a bad preset file or override fails before training;
        a calibrated ADC range needs calibration data."""
        if self.enabled:
            from spikecim.analog.config import load_crossbar_config

            crossbar = load_crossbar_config(self.preset)
            if self.overrides:
                crossbar = crossbar.with_updates(**self.overrides)
            check_calibration(crossbar, self)
        return self


@functools.cache
def _converter_field(name: str) -> TypeAdapter:
    """A validator of HwaConverters's field ``name`` alone (its type and bounds)."""
    field = HwaConverters.model_fields[name]
    return TypeAdapter(Annotated[field.annotation, field])


def check_calibration(crossbar, stage: AnalogStageConfig) -> None:
    """Refuse an ADC whose range is ``calibrated`` (switched on, or switched on by the
    ``adc_bits_sweep``) with no calibration samples: it would run with an uncalibrated range
    and give chance-level accuracy without a word."""
    from spikecim.errors import SpikecimError

    adc, calibration_samples, preset = crossbar.adc, stage.calibration_samples, stage.preset
    used = adc.enabled or bool(stage.adc_bits_sweep)
    if used and adc.range == "calibrated" and calibration_samples < 1:
        raise SpikecimError(
            f"calibration_samples: is {calibration_samples}, but adc.range of the crossbar "
            f"'{preset}' is 'calibrated'; give calibration_samples >= 1, "
            "or set overrides.adc.range to 'max' or a number"
        )
