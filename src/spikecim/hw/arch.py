"""Architectures as data: a YAML table names an estimator and gives its constants.

A table (see ``hw/tables/*.yaml``)::

    name: imc-rram-65nm
    estimator: imc
    technology_nm: 65
    description: ...
    params:
      xbar_rows: 128            # source on the line
      e_mux_pj: 0.094245        # source on the line

Every constant's unit is in its key; values may be given in another unit of the same
dimension (``e_mux_fj: 94.245``). ``params`` is validated by the estimator's ``Params``
model, so a missing, negative or unknown key fails with one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from spikecim.errors import SpikecimError, one_line_validation_error
from spikecim.hw.units import normalise_keys

__all__ = ["Architecture", "load_architecture", "list_architectures", "TABLES_DIR"]

TABLES_DIR = Path(__file__).parent / "tables"


class Architecture(BaseModel):
    """One hardware description: estimator name plus validated constants."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    estimator: str
    description: str = ""
    technology_nm: float | None = Field(None, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    source: str = Field("", description="file the table was read from")
    _parsed: Any = PrivateAttr(None)

    @property
    def p(self):
        """The estimator's validated parameters."""
        if self._parsed is None:
            self._parsed = _validate_params(self.estimator, self.params, self.name)
        return self._parsed

    def with_params(self, **changes: Any) -> "Architecture":
        """A copy with some constants changed (validated again), e.g. ``xbar_rows=256``."""
        new = self.model_copy(update={"params": {**self.params, **changes}})
        new._parsed = None
        _ = new.p
        return new


def _validate_params(estimator: str, params: dict, where: str):
    from spikecim.hw.estimators import get_estimator

    est = get_estimator(estimator)
    fields = set(est.Params.model_fields)
    data = normalise_keys(dict(params), fields, f"{where}: params")
    try:
        return est.Params.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix=f"{where}: params.")) from None


def list_architectures() -> list[str]:
    """Names of the tables that ship with spikecim."""
    return sorted(p.stem for p in TABLES_DIR.glob("*.yaml"))


def load_architecture(name_or_path: "str | Path | Architecture", **overrides: Any) -> Architecture:
    """Load a shipped table by name (``"imc-rram-65nm"``) or a user's YAML file by path.

    ``overrides`` change single constants after loading (``xbar_rows=256``).
    """
    if isinstance(name_or_path, Architecture):
        return name_or_path.with_params(**overrides) if overrides else name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = TABLES_DIR / f"{text}.yaml"
        if not path.exists():
            raise SpikecimError(
                f"arch: unknown architecture '{text}', allowed: {', '.join(list_architectures())} or a YAML file"
            )
    if not path.exists():
        raise SpikecimError(f"arch: file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpikecimError(f"arch: {path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SpikecimError(f"arch: {path} must hold a mapping with name, estimator and params")
    data.setdefault("name", path.stem)
    data["source"] = str(path)
    if not isinstance(data.get("params", {}), dict):
        raise SpikecimError(f"arch {data['name']}: params must be a mapping of constants")
    try:
        arch = Architecture.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(one_line_validation_error(e, prefix=f"arch {data['name']}: ")) from None
    if overrides:
        return arch.with_params(**overrides)
    _ = arch.p  # validate now, so a bad table fails at the door
    return arch
