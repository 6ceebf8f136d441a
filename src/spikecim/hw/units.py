"""Units carried in key names: ``e_adc_pj``, ``a_xbar_um2``, ``clock_mhz``.

A table key ends in its unit. A user may write a value in another unit of the same
dimension (``e_adc_fj: 270``); :func:`normalise_keys` converts it to the unit the estimator
declares (``e_adc_pj: 0.27``). A suffix that is no known unit is refused with a one-line
error naming the key and the units allowed.
"""

from __future__ import annotations

from spikecim.errors import SpikecimError

__all__ = ["UNITS", "first_error", "normalise_keys", "split_unit"]

# unit suffix -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "fj": ("energy", 1e-3),
    "pj": ("energy", 1.0),
    "nj": ("energy", 1e3),
    "uj": ("energy", 1e6),
    "nm2": ("area", 1e-6),
    "um2": ("area", 1.0),
    "mm2": ("area", 1e6),
    "ps": ("time", 1e-3),
    "ns": ("time", 1.0),
    "us": ("time", 1e3),
    "ms": ("time", 1e6),
    "hz": ("frequency", 1e-6),
    "khz": ("frequency", 1e-3),
    "mhz": ("frequency", 1.0),
    "ghz": ("frequency", 1e3),
    "nw": ("power", 1e-3),
    "uw": ("power", 1.0),
    "mw": ("power", 1e3),
    "bytes": ("capacity", 1.0 / 1024),
    "kb": ("capacity", 1.0),
    "mb": ("capacity", 1024.0),
    "ohm": ("resistance", 1.0),
    "kohm": ("resistance", 1e3),
    "mohm": ("resistance", 1e6),
    "nm": ("length", 1.0),
    "bits": ("bits", 1.0),
    "frac": ("fraction", 1.0),
    "clocks": ("clocks", 1.0),
    "cycles": ("write cycles", 1.0),
}


def split_unit(key: str) -> tuple[str, str | None]:
    """``'e_adc_pj'`` -> ``('e_adc', 'pj')``; a key without a known unit -> ``(key, None)``."""
    stem, _, unit = key.rpartition("_")
    if stem and unit in UNITS:
        return stem, unit
    return key, None


def normalise_keys(values: dict, declared: set[str], where: str) -> dict:
    """Convert keys written in another unit to the declared ones; refuse unknown units.

    ``declared`` are the field names the estimator expects. A key that is declared passes
    as it is; a key whose stem matches a declared field in another unit of the same
    dimension is converted; a key whose stem matches but whose suffix is no known unit
    raises :class:`SpikecimError`. Anything else is left for the schema to refuse.
    """
    by_stem = {}
    for name in declared:
        stem, unit = split_unit(name)
        if unit is not None:
            by_stem[stem] = (name, unit)
    out, given_as = {}, {}
    for key, value in values.items():
        target = key
        if key not in declared:
            stem, _, suffix = key.rpartition("_")
            if key in by_stem:
                target, unit = by_stem[key]
                raise SpikecimError(
                    f"{where}.{key}: the unit is missing, write it as {target} (or another "
                    f"{UNITS[unit][0]} unit: {', '.join(_same_dimension(unit))})"
                )
            if stem in by_stem:
                target, unit = by_stem[stem]
                dim, base = UNITS[unit]
                if suffix not in UNITS or UNITS[suffix][0] != dim:
                    raise SpikecimError(
                        f"{where}.{key}: unknown unit '{suffix}' for {stem}, "
                        f"allowed: {', '.join(_same_dimension(unit))}"
                    )
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise SpikecimError(f"{where}.{key}: expected a number")
                value = value * UNITS[suffix][1] / base
        if target in given_as:
            raise SpikecimError(
                f"{where}.{key}: {target} is given twice ({given_as[target]} and {key}); keep one"
            )
        given_as[target] = key
        out[target] = value
    return out


def _same_dimension(unit: str) -> list[str]:
    dim = UNITS[unit][0]
    return sorted(u for u, (d, _) in UNITS.items() if d == dim)


def first_error(err, prefix: str = "") -> str:
    """One line for a pydantic ``ValidationError``: the first problem, and how many more."""
    from spikecim.errors import one_line_validation_error

    parts = one_line_validation_error(err, prefix=prefix).split("; ")
    more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
    return parts[0] + more
