"""Settings of the ``hardware`` stage of ``spikecim run`` (kept import-light for the config)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from spikecim.schema import Schema

_TABLES = Path(__file__).parent / "tables"


class HardwareStageConfig(Schema):
    enabled: bool = True
    archs: list[str] = Field(
        default_factory=lambda: ["naive-45nm", "imc-rram-65nm", "systolic-sata"],
        description="shipped table names (spikecim hw list) or YAML paths; each is costed",
        min_length=1,
    )
    variants: list[str] | None = Field(
        None,
        description="which variants' traced workloads to cost; None: every variant of the run",
        min_length=1,
    )
    dense: bool = Field(False, description="ignore traced activity (upper bound) instead of event mode")
    plots: bool = True

    @field_validator("archs")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        known = sorted(p.stem for p in _TABLES.glob("*.yaml"))
        for a in v:
            if a.endswith((".yaml", ".yml")):
                if not Path(a).exists():
                    raise ValueError(f"architecture file not found: {a}")
            elif a not in known:
                raise ValueError(f"unknown architecture '{a}', allowed: {', '.join(known)} or a .yaml path")
        return v
