"""Settings of the ``report`` stage of ``spikecim run`` (pydantic only)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from spikecim.schema import Schema

__all__ = ["ReportConfig"]


class ReportConfig(Schema):
    model_config = ConfigDict(validate_assignment=True)

    enabled: bool = Field(True, description="write report.html and report.md")
