"""Architectures as data: a YAML table names an estimator and gives its constants.

A table (see ``hw/tables/*.yaml``)::

    name: imc-rram-65nm
    estimator: imc
    technology_nm: 65
    description: ...
    params:
      xbar_rows: 128            # source on the line
      e_mux_pj: 0.094245        # source on the line
    exit_unit: exit-unit-45nm   # optional: the early-exit unit (hw/tables/units/), for DT-SNN

Every constant's unit is in its key; values may be given in another unit of the same
dimension (``e_mux_fj: 94.245``). ``params`` is validated by the estimator's ``Params``
model, so a missing, negative or unknown key fails with one line naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, ValidationError

from spikecim.errors import SpikecimError
from spikecim.hw.units import UNITS, first_error, normalise_keys, split_unit
from spikecim.readers import read_settings
from spikecim.schema import Schema

__all__ = ["TABLES_DIR", "Architecture", "list_architectures", "load_architecture"]

TABLES_DIR = Path(__file__).parent / "tables"
MIN_NODE_NM, MAX_NODE_NM = 1.0, 1e4  # technology nodes: from 1 nm to 10 µm
NODE_SCALING = {"energy": 1, "power": 1, "area": 2}  # first order: a unit's dimension -> power of s


class Architecture(Schema):
    """One hardware description: estimator name plus validated constants."""

    name: str = Field(min_length=1)
    estimator: str
    description: str = ""
    technology_nm: float | None = Field(
        None, ge=MIN_NODE_NM, le=MAX_NODE_NM, description="technology node, [1, 1e4] nm"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    exit_unit: str = Field(
        "exit-unit-45nm",
        min_length=1,
        description="the unit that runs an early-exit test (hw/tables/units name or YAML path)",
    )
    digital_unit: str = Field(
        "digital-unit-45nm",
        min_length=1,
        description="the unit that runs softmax, LayerNorm and GELU (hw/tables/units name or YAML path)",
    )
    dynamic_products: str | None = Field(
        None,
        min_length=1,
        description="where products of two activations run: another table (name or YAML path, e.g. "
        "imc-sram-65nm for SRAM compute-in-memory), 'digital' (the digital unit), or None (this table)",
    )
    source: str = Field("", description="file the table was read from")
    _parsed: Any = PrivateAttr(None)

    @property
    def p(self):
        """The estimator's validated parameters."""
        if self._parsed is None:
            self._parsed = _validate_params(self.estimator, self.params, self.name)
        return self._parsed

    def scaled_to(self, node_nm: float) -> Architecture:
        """First-order scaling to another technology node (documented in docs/hardware.md).

        With s = node_nm / technology_nm: energies (``*_pj``, ``*_fj``, ...) and powers
        (``*_uw``, ``*_mw``, ...) scale by s (switched capacitance at constant voltage), areas
        (``*_um2``, ``*_mm2``, ...) by s², whatever unit a key is written in; everything else
        (sizes, bits, clocks, times) is kept. Coarse by design: for a calibrated node,
        write its constants in a table instead.
        """
        if self.technology_nm is None:
            raise SpikecimError(f"arch {self.name}: technology_nm is needed to scale to {node_nm} nm")
        if (
            isinstance(node_nm, bool)
            or not isinstance(node_nm, (int, float))
            or not MIN_NODE_NM <= node_nm <= MAX_NODE_NM
        ):
            raise SpikecimError(
                f"node_nm: must be a number in [{MIN_NODE_NM:g}, {MAX_NODE_NM:g}] nm, got {node_nm}"
            )
        s = node_nm / self.technology_nm
        params = {}
        for k, v in self.params.items():
            _, unit = split_unit(k)
            exponent = NODE_SCALING.get(UNITS[unit][0]) if unit is not None else None
            if exponent is not None and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = v * s**exponent
            params[k] = v
        update = {"params": params, "technology_nm": float(node_nm), "name": f"{self.name}@{node_nm:g}nm"}
        new = self.model_copy(update=update)
        new._parsed = None
        _ = new.p
        return new

    def with_params(self, **changes: Any) -> Architecture:
        """A copy with some constants changed (validated again), e.g. ``xbar_rows=256``; a
        change in another unit (``e_mux_fj=90``) replaces the constant (``e_mux_pj``)."""
        changed = {_quantity(k) for k in changes}
        kept = {k: v for k, v in self.params.items() if _quantity(k) not in changed}
        new = self.model_copy(update={"params": {**kept, **changes}})
        new._parsed = None
        _ = new.p
        return new


def _quantity(key: str) -> tuple[str, str | None]:
    """What a constant measures: ``e_mux_pj`` and ``e_mux_fj`` -> ``('e_mux', 'energy')``."""
    stem, unit = split_unit(key)
    return (stem, UNITS[unit][0]) if unit is not None else (key, None)


def _validate_params(estimator: str, params: dict, where: str):
    from spikecim.hw.estimators import get_estimator

    est = get_estimator(estimator)
    fields = set(est.Params.model_fields)
    data = normalise_keys(dict(params), fields, f"{where}: params")
    try:
        return est.Params.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(first_error(e, prefix=f"{where}: params.")) from None


def list_architectures() -> list[str]:
    """Names of the tables that ship with spikecim."""
    return sorted(p.stem for p in TABLES_DIR.glob("*.yaml"))


def load_architecture(
    name_or_path: str | Path | Architecture, node_nm: float | None = None, **overrides: Any
) -> Architecture:
    """Load a shipped table by name (``"imc-rram-65nm"``) or a user's YAML file by path.

    ``node_nm`` scales the table to another technology node (:meth:`Architecture.scaled_to`);
    ``overrides`` then set single constants (``xbar_rows=256``), so a value the user gives is
    kept as given, not scaled.
    """
    if node_nm is not None:
        scaled = load_architecture(name_or_path).scaled_to(node_nm)
        return scaled.with_params(**overrides) if overrides else scaled
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
    data = read_settings(
        path, "arch", "with name, estimator and params", "write its estimator and params in it"
    )
    data.setdefault("name", path.stem)
    data["source"] = str(path)
    if not isinstance(data.get("params", {}), dict):
        raise SpikecimError(f"arch {data['name']}: params must be a mapping of constants")
    try:
        arch = Architecture.model_validate(data)
    except ValidationError as e:
        raise SpikecimError(first_error(e, prefix=f"arch {data['name']}: ")) from None
    if overrides:
        return arch.with_params(**overrides)
    _ = arch.p  # validate now, so a bad table fails at the door
    return arch
