"""Settings of the power side-channel analysis (``spikecim security``), validated once.

``TraceConfig``: what the probe measures (input encoding, sampling window, read time, the
hardware table of the periphery). ``CountermeasureConfig``: which countermeasures run and
their knobs. ``AttackConfig``: the attacker's training budget. ``SecurityConfig`` holds the
three and the sweep of measurement noise levels (σ as a fraction of the maximum signal).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.schema import MAX_INT, Schema

__all__ = [
    "COUNTERMEASURES",
    "AttackConfig",
    "CountermeasureConfig",
    "SecurityConfig",
    "TraceConfig",
    "load_security_config",
]

COUNTERMEASURES = ("noise_injection", "shuffle", "dummy_reads", "balance")


class TraceConfig(Schema):
    encoding: Literal["amplitude", "bit_serial"] = Field(
        "amplitude",
        description="amplitude: one read per input vector at the DAC's voltage (the analog layers' "
        "model); bit_serial: one read per bit of the DAC level, rows at 0 or v_read",
    )
    sampling: Literal["read", "tile", "layer"] = Field(
        "read",
        description="what one sample integrates: a read of the layer (all its tiles), "
        "a read of one tile, or a whole layer step",
    )
    t_read_ns: float | None = Field(
        None, gt=0, le=1e6, description="duration of one read, ns (None: the table's clock period)"
    )
    arch: str = Field(
        "imc-rram-65nm", min_length=1, description="hardware table of the periphery (imc estimator)"
    )
    probe_bits: int | None = Field(None, ge=1, le=24, description="resolution of the probe (None: exact)")


class CountermeasureConfig(Schema):
    """Knobs of the countermeasures (docs/security.md#countermeasures)."""

    names: list[str] = Field(default_factory=list, description=f"any of {', '.join(COUNTERMEASURES)}")
    noise_injection_level: float = Field(
        0.2, gt=0, le=10, description="σ of the dummy current, a fraction of the layer's max read signal"
    )
    dummy_read_fraction: float = Field(
        1.0, gt=0, le=10, description="dummy reads per real read (random inputs, outputs discarded)"
    )

    @field_validator("names")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in COUNTERMEASURES:
                raise ValueError(f"unknown countermeasure '{name}', allowed: {', '.join(COUNTERMEASURES)}")
        return list(dict.fromkeys(v))


class AttackConfig(Schema):
    epochs: int = Field(200, ge=1, le=100000, description="full-batch epochs of the learned inverse")
    gan_epochs: int = Field(
        60, ge=0, le=100000, description="minibatch steps of the GAN refinement (0: none)"
    )
    hidden: int = Field(128, ge=1, le=65536, description="width of the inverse MLP")
    lr: float = Field(3e-3, gt=0, le=1.0)
    l1_weight: float = Field(100.0, ge=0, description="λ of the pix2pix loss (adversarial + λ·L1)")
    seed: int = Field(0, ge=0, lt=MAX_INT)


class SecurityConfig(Schema):
    noise_levels: list[float] = Field(
        default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.4],
        description="measurement noise σ as fractions of the max signal (0.2: 20 %)",
    )
    countermeasure_noise: float = Field(
        0.0, ge=0, le=10, description="measurement noise of the countermeasure comparison"
    )
    trace: TraceConfig = TraceConfig()
    countermeasures: CountermeasureConfig = CountermeasureConfig()
    attack: AttackConfig = AttackConfig()
    max_samples: int | None = Field(
        None, gt=0, description="at most this many attacker and victim samples each"
    )
    seed: int = Field(0, ge=0, lt=MAX_INT)

    @field_validator("noise_levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one level")
        for level in v:
            if not 0 <= level <= 10:
                raise ValueError(
                    f"each level must lie in [0, 10] (a fraction of the max signal), got {level}"
                )
        return v


def load_security_config(data: dict[str, Any] | None = None) -> SecurityConfig:
    """``SecurityConfig`` from a mapping; bad fields fail with one line naming the field."""
    try:
        return SecurityConfig.model_validate(data or {})
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix="security: ")) from None
