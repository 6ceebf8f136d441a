"""``CrossbarConfig``: one typed description of an analog crossbar, loadable from YAML.

Presets live in ``analog/presets/<name>.yaml`` (each value with its source); a user file
may start from a preset (``preset: pcm-aihwkit``) and override any field. Every knob with a
unit carries it in its name. Bad input fails with one line naming the field.

Mapping of a weight matrix ``W[out, in]`` (docs/references.md#weight-to-conductance): inputs
drive word lines (rows), outputs are read on bit lines (columns); ``tile_cols`` counts weight
columns, each realised as a G+/G− pair (``differential``) or one cell plus a shared
reference (``offset``) and, with bit slicing, ``ceil(magnitude_bits / bits_per_cell)`` cells
side by side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from spikecim.analog.devices import DEVICES, DeviceModel
from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.readers import read_mapping, read_settings
from spikecim.schema import MAX_INT, Schema

__all__ = [
    "MAX_WIRE_OHM",
    "MIN_WIRE_OHM",
    "PRESET_DIR",
    "ClipFormerConfig",
    "ConverterConfig",
    "CrossbarConfig",
    "DriftCompensationConfig",
    "DynamicConfig",
    "FaultConfig",
    "IRDropConfig",
    "VariationConfig",
    "list_presets",
    "load_crossbar_config",
]

PRESET_DIR = Path(__file__).parent / "presets"
# Wires, drivers and sense amplifiers are metal and transistors: ohms to kilo-ohms. Outside
# [1e-6, 1e4] Ω the nodal matrix of the IR-drop solve loses its conditioning or overflows
# (cells are ~1e4-1e7 Ω); 0 means ideal wires (no IR drop).
MIN_WIRE_OHM = 1e-6
MAX_WIRE_OHM = 1e4
# A cell of 1 Ω: far beyond any memory device (PCM/RRAM g_max is tens of µS).
MAX_G_US = 1e6
# A cell of 1 TΩ at its highest conductance (1 pS): below any memory device's on-state.
MIN_G_MAX_US = 1e-6
# Conductances are held in float32 (relative resolution 6e-8) and a weight is read as a
# fraction of the span g_max − g_min: an on/off ratio g_max/g_min of 1.1 keeps the ideal
# crossbar within 1e-5 of the digital product with either mapping (1.01: 2e-5, 1 + 1e-10:
# the weights lost). Memory devices have ratios of 10 to 1000.
MIN_ON_OFF_RATIO = 1.1


class _Section(Schema):
    """Unknown keys, nan/inf and numbers beyond 1e12 are refused (:mod:`spikecim.schema`)."""


class ConverterConfig(_Section):
    """A uniform symmetric quantiser Q(v) = clip(round(v/Δ)·Δ, ±bound), Δ = 2·bound/(2^bits − 2)
    (the aihwkit convention: 2^(bits−1) − 1 levels each side of zero).
    """

    enabled: bool = False
    bits: int = Field(8, ge=1, le=16, description="resolution in bits (1-16)")


class ADCConfig(ConverterConfig):
    """Column ADC. ``range``: ``max`` (the largest possible column output, never clips),
    ``calibrated`` (the given percentile of |outputs| on calibration data, per layer),
    or a number (the bound in normalised output units, aihwkit ``out_bound``)."""

    range: Literal["max", "calibrated"] | float = "max"
    calibration_percentile: float = Field(99.99, gt=0, le=100)

    @field_validator("range")
    @classmethod
    def _positive(cls, v):
        if isinstance(v, float) and not v > 0:
            raise ValueError("must be 'max', 'calibrated' or a number > 0")
        return v


class VariationConfig(_Section):
    """Device-to-device variation: g ← g·(1 + σ·N(0,1)), drawn once at programming."""

    enabled: bool = False
    std_rel: float = Field(0.0, ge=0, description="σ relative to g")


class FaultConfig(_Section):
    """Stuck cells, drawn once at programming: stuck-on sits at g_max, stuck-off at g_min."""

    enabled: bool = False
    stuck_on_rate: float = Field(0.0, ge=0, le=1)
    stuck_off_rate: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self):
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            raise ValueError("stuck_on_rate + stuck_off_rate must be <= 1")
        return self


class IRDropConfig(_Section):
    """Wire resistance, solved exactly (``exact``) or by the calibrated first-order model (``fast``)."""

    enabled: bool = False
    r_wire_ohm: float = Field(
        1.0,
        ge=0,
        le=MAX_WIRE_OHM,
        description="wire resistance between neighbouring cells: 0 (ideal wires) or 1e-6 to 1e4 Ω",
    )
    r_driver_ohm: float = Field(
        0.0, ge=0, le=MAX_WIRE_OHM, description="word-line driver source resistance, 0 to 1e4 Ω"
    )
    r_sense_ohm: float = Field(
        0.0, ge=0, le=MAX_WIRE_OHM, description="sense-amplifier input resistance, 0 to 1e4 Ω"
    )
    method: Literal["exact", "fast"] = "exact"

    @field_validator("r_wire_ohm")
    @classmethod
    def _conditioned(cls, v: float) -> float:
        if 0 < v < MIN_WIRE_OHM:
            raise ValueError(
                f"must be 0 (ideal wires) or between {MIN_WIRE_OHM:g} and {MAX_WIRE_OHM:g} Ω, got {v:g}"
            )
        return v

    fast_kappa: float = Field(
        1.0, gt=0, description="gain of the fast model (fit it with circuit.calibrate_fast)"
    )


class DriftCompensationConfig(_Section):
    """Global drift compensation: one-hot inputs read at programming and at time t,
    outputs scaled by mean|Y0| / mean|Y(t)| per layer (Joshi et al., Nat. Commun. 2020;
    docs/references.md#drift-compensation)."""

    enabled: bool = False


DynamicUnit = Literal["digital", "crossbar", "sram"]


class ClipFormerConfig(_Section):
    """ClipFormer (Bhattacharjee, Moitra, Panda, IEEE TCAD 2024; docs/references.md#clipformer),
    at inference only, on the conductances written at run time (K and V of attention):
    G ← max(G − s·G_min, G_min), then G ← min(G, β·G_max), with the shift s = α − 1
    (``shift: alpha_minus_one``, the default: α = 1 and β = 1 leave every written conductance
    in [G_min, G_max] where it is) or s = α (``shift: alpha``, the paper's formula as printed:
    no α ≥ 1 is the identity) (docs/transformers.md#clipformer)."""

    enabled: bool = False
    alpha: float = Field(2.0, ge=1, le=1e6, description="shift α ≥ 1, in units of G_min")
    beta: float = Field(0.25, gt=0, le=1, description="clip β in (0, 1], in units of G_max")
    shift: Literal["alpha_minus_one", "alpha"] = Field(
        "alpha_minus_one",
        description="the shift in units of G_min: 'alpha_minus_one' (α − 1; α = 1 shifts nothing) "
        "or 'alpha' (α, the paper's formula as printed)",
    )


class DynamicConfig(_Section):
    """Products of two activations (``spikecim.ops.MatMul``: attention's Q·Kᵀ, A·V, Kᵀ·V) whose
    second operand is written into a crossbar at every inference (``crossbar``: write noise,
    then the usual read noise, DAC and ADC), computed on SRAM compute-in-memory (``sram``:
    exact bit cells, no write or read noise, DAC and ADC kept) or left to a digital unit
    (``digital``). Write noise (TxSim form, docs/references.md#write-noise):
    G' = G + γ·sqrt((G − G_min)(G_max − G_min))·N(0, σ²)."""

    unit: DynamicUnit = "digital"
    operators: dict[str, DynamicUnit] = Field(
        default_factory=dict,
        description="unit per MatMul, by its module name or the name's last part (qk, av, kv, qkv)",
    )
    write_noise_gamma: float = Field(0.0, ge=0, le=1e3, description="γ, the write-noise factor")
    write_noise_sigma: float = Field(0.01, ge=0, le=1e3, description="σ of the normal draw")
    clipformer: ClipFormerConfig = ClipFormerConfig()
    operand_range: Literal["tile", "calibrated"] = Field(
        "tile",
        description="scale of the written operand: 'tile' (each tile by its abs-max) or "
        "'calibrated' (one range per product, a percentile of |operand| on calibration data)",
    )
    operand_percentile: float = Field(
        100.0, gt=0, le=100, description="percentile of |operand| for operand_range 'calibrated'"
    )

    def unit_of(self, name: str) -> DynamicUnit:
        """The unit of the MatMul module called ``name`` (dotted path in the model)."""
        if name in self.operators:
            return self.operators[name]
        return self.operators.get(name.rsplit(".", 1)[-1], self.unit)


class CrossbarConfig(_Section):
    tile_rows: int = Field(128, gt=0, description="word lines per tile (inputs)")
    tile_cols: int = Field(128, gt=0, description="weight columns per tile (outputs)")
    device: SerializeAsAny[DeviceModel] = Field(default_factory=lambda: DEVICES["ideal"]())
    g_min_us: float = Field(
        0.0, ge=0, le=MAX_G_US, description="lowest programmable conductance, 0 to 1e6 µS"
    )
    g_max_us: float = Field(
        25.0, ge=MIN_G_MAX_US, le=MAX_G_US, description="highest programmable conductance, 1e-6 to 1e6 µS"
    )
    weight_bits: int | None = Field(
        None, ge=2, le=16, description="signed weight bits (None: analog weights)"
    )
    bits_per_cell: int = Field(1, ge=1, le=8, description="bits stored per cell when bit slicing")
    conductance_levels: int | None = Field(
        None, ge=2, description="programmable levels per cell (None: continuous)"
    )
    mapping: Literal["differential", "offset"] = "differential"
    dac: ConverterConfig = ConverterConfig()
    adc: ADCConfig = ADCConfig()
    out_noise_std: float = Field(0.0, ge=0, description="additive output noise σ, normalised output units")
    variation: VariationConfig = VariationConfig()
    faults: FaultConfig = FaultConfig()
    ir_drop: IRDropConfig = IRDropConfig()
    drift_compensation: DriftCompensationConfig = DriftCompensationConfig()
    dynamic: DynamicConfig = DynamicConfig()
    v_read_v: float = Field(0.2, gt=0, description="word-line voltage of a full-scale input, V")
    seed: int = Field(
        0, ge=0, lt=MAX_INT, description="programming seed when program() is given none, 0 <= seed < 2**63"
    )

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        return _flat_spellings(data) if isinstance(data, dict) else data

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> Any:
        if isinstance(v, DeviceModel):
            return v
        if isinstance(v, str):
            v = {"name": v}
        if not isinstance(v, dict) or v.get("name") not in DEVICES:
            name = v.get("name") if isinstance(v, dict) else v
            raise ValueError(f"unknown device '{name}', allowed: {', '.join(DEVICES)}")
        return DEVICES[v["name"]].model_validate(v)

    @model_validator(mode="after")
    def _ranges(self):
        if self.g_min_us * MIN_ON_OFF_RATIO > self.g_max_us:
            raise ValueError(
                f"g_min_us must be at most g_max_us / {MIN_ON_OFF_RATIO:g} (an on/off ratio of at least "
                f"{MIN_ON_OFF_RATIO:g}), got g_min_us={self.g_min_us}, g_max_us={self.g_max_us}"
            )
        if self.bits_per_cell > 1 and self.weight_bits is None:
            raise ValueError("bits_per_cell > 1 needs weight_bits (bit slicing splits integer weights)")
        return self

    # -- derived quantities -------------------------------------------------------------

    @property
    def magnitude_bits(self) -> int | None:
        """Bits a cell pair must hold: b − 1 with differential mapping, b with offset."""
        if self.weight_bits is None:
            return None
        return self.weight_bits - 1 if self.mapping == "differential" else self.weight_bits

    @property
    def n_slices(self) -> int:
        return 1 if self.weight_bits is None else -(-self.magnitude_bits // self.bits_per_cell)

    def with_updates(self, **fields: Any) -> CrossbarConfig:
        """A validated copy with some fields replaced (nested sections as dicts; the flat
        spellings, ``adc_bits`` or ``r_on_ohm``, replace the fields they stand for)."""
        try:
            fields = _flat_spellings(fields)
        except ValueError as e:
            raise SpikecimError(f"analog: {e}") from None
        data = self.model_dump()
        for k, v in fields.items():
            if isinstance(v, dict) and isinstance(data.get(k), dict):
                data[k] = {**data[k], **v}
            else:
                data[k] = v
        return _validate(data, "analog")


# Flat spellings of nested fields: name -> (section, field, value the section's switch takes).
FLAT_FIELDS: dict[str, tuple[str, str, bool | None]] = {
    "dac_bits": ("dac", "bits", True),
    "adc_bits": ("adc", "bits", True),
    "adc_range": ("adc", "range", None),
}


def _flat_spellings(data: dict) -> dict:
    """The alternative spellings, rewritten to the fields they stand for:
    ``r_on_ohm``/``r_off_ohm`` → ``g_max_us``/``g_min_us`` (G = 1/R); ``dac_bits``,
    ``adc_bits`` → ``dac.bits``, ``adc.bits`` with the converter switched on; ``adc_range``
    → ``adc.range``; ``out_noise`` → ``out_noise_std``. A field given in both spellings
    with different values is refused."""
    data = dict(data)
    r_on, r_off = data.pop("r_on_ohm", None), data.pop("r_off_ohm", None)
    for name, r in (("r_on_ohm", r_on), ("r_off_ohm", r_off)):
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < math.inf):
            raise ValueError(f"{name} must be a number > 0 and finite")
    renamed = {"g_max_us": None if r_on is None else 1e6 / r_on}
    renamed["g_min_us"] = None if r_off is None else 1e6 / r_off
    renamed["out_noise_std"] = data.pop("out_noise", None)
    for name, value in renamed.items():
        if value is not None:
            _set_once(data, name, value, name)
    for flat, (section, name, switch) in FLAT_FIELDS.items():
        if flat not in data:
            continue
        value = data.pop(flat)
        nested = data.get(section, {})
        if not isinstance(nested, dict):  # ValueError: pydantic turns it into a field error
            raise ValueError(f"{section} must be a mapping of fields")  # noqa: TRY004
        nested = dict(nested)
        _set_once(nested, name, value, f"{section}.{name}")
        if switch is not None:
            nested.setdefault("enabled", switch)
        data[section] = nested
    return data


def _set_once(target: dict, name: str, value: Any, label: str) -> None:
    if name in target and target[name] != value:
        raise ValueError(f"{label} is given twice, in two spellings, with different values")
    target[name] = value


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _validate(data: dict, where: str) -> CrossbarConfig:
    try:
        return CrossbarConfig.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix=f"{where}: ")) from None


def _resolve(data: dict, seen: tuple[str, ...] = ()) -> dict:
    """Merge a ``preset:`` base under the given fields (nested sections merged key by key)."""
    try:
        data = _flat_spellings(data)  # before merging: a flat field overrides the preset's
    except ValueError as e:
        raise SpikecimError(f"analog: {e}") from None
    base_name = data.pop("preset", None)
    if base_name is None:
        return data
    if base_name not in list_presets():
        raise SpikecimError(
            f"analog.preset: unknown preset '{base_name}', allowed: {', '.join(list_presets())}"
        )
    if base_name in seen:
        raise SpikecimError(f"analog.preset: preset '{base_name}' includes itself")
    base = _resolve(
        read_mapping(PRESET_DIR / f"{base_name}.yaml", "analog.preset", "of crossbar fields"),
        seen + (base_name,),
    )
    for k, v in data.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def load_crossbar_config(spec: str | Path | dict | CrossbarConfig | None = None) -> CrossbarConfig:
    """A preset name (``pcm-aihwkit``), a YAML file path, a dict of fields or a config."""
    if isinstance(spec, CrossbarConfig):
        return spec
    if spec is None:
        return CrossbarConfig()
    if isinstance(spec, dict):
        return _validate(_resolve(spec), "analog")
    text = str(spec)
    if text in list_presets():
        return _validate(_resolve({"preset": text}), f"analog preset {text}")
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise SpikecimError(f"analog: file not found: {path}")
        data = read_settings(
            path, "analog", "of crossbar fields", "write the crossbar's fields in it, or {} for the defaults"
        )
        return _validate(_resolve(data), f"analog {path.name}")
    raise SpikecimError(
        f"analog: unknown preset '{text}', allowed: {', '.join(list_presets())} or a YAML file"
    )
