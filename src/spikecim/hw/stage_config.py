"""Settings of the ``hardware`` stage of ``spikecim run`` (kept import-light for the config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class HardwareStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
