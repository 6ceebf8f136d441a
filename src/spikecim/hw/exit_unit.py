"""The early-exit unit of a dynamic-timestep SNN (DT-SNN, docs/references.md#dt-snn).

After every step a sample runs but the last, a small digital unit decides whether it stops:
it turns the output layer's logits into the running mean f over K classes, p = softmax(f),
and tests the normalised entropy (``entropy`` rule) or the top probability (``confidence``).
Its cost per test is an operation count (:func:`exit_test_operations`) times the energy and cycles
per operation of a table (``hw/tables/units/*.yaml``, one source per line; an architecture
names its unit with ``exit_unit``, by default ``exit-unit-45nm``).

Operations of one test, with z = the K running-mean logits (docs/hardware.md#exit-unit):

=====================================  ======================  ===================
step                                   entropy                 confidence
=====================================  ======================  ===================
accumulate the step's logits           K add                   K add
mean: scale by 1/t (1/t from a table)  K mult                  K mult
max_k z_k                              K − 1 compare           K − 1 compare
z_k − max                              K add                   K add
e_k = exp(z_k − max)                   K exp                   K exp
S = Σ_k e_k                            K − 1 add               K − 1 add
Σ_k e_k (z_k − max)                    K mult, K − 1 add       —
H·log K = log S − Σ e_k(z_k−max) / S   1 log, 1 div, 1 add     —
test H·log K < θ·log K / θ·S ≤ 1       1 compare               1 mult, 1 compare
**total**                              4K − 1 add, 2K mult,    3K − 1 add, K + 1
                                       K compare, K exp,       mult, K compare,
                                       1 log, 1 div            K exp
=====================================  ======================  ===================

(max p = 1/S since the largest e_k is 1, so max p ≥ θ is θ·S ≤ 1.) Per sample, tests run
Σ_{t<T−1} running_per_step[t] times: after every step a sample runs except step T, where it
stops anyway. The unit runs one operation after another, so a test takes Σ_ops n·cycles
clock cycles; its latency adds to the layers' (where the estimator models latency).
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import ConfigDict, Field, ValidationError

from spikecim.errors import SpikecimError
from spikecim.hw.units import first_error
from spikecim.readers import read_settings
from spikecim.schema import Schema

__all__ = [
    "UNITS_DIR",
    "ExitUnitParams",
    "exit_test_cost",
    "exit_test_operations",
    "load_exit_unit",
    "load_unit_table",
    "operations_cost",
]

UNITS_DIR = Path(__file__).parent / "tables" / "units"
P = TypeVar("P", bound=Schema)
OPERATIONS = ("add", "mult", "compare", "exp", "log", "div")
NS_PER_US = 1e3  # a clock in MHz has a period of 1e3/f ns


class ExitUnitParams(Schema):
    """Energy (pJ) and cycles of each operation of the exit unit, and its clock."""

    model_config = ConfigDict(frozen=True)

    e_add_pj: float = Field(ge=0)
    e_mult_pj: float = Field(ge=0)
    e_compare_pj: float = Field(ge=0)
    e_exp_pj: float = Field(ge=0)
    e_log_pj: float = Field(ge=0)
    e_div_pj: float = Field(ge=0)
    cycles_add: int = Field(ge=0)
    cycles_mult: int = Field(ge=0)
    cycles_compare: int = Field(ge=0)
    cycles_exp: int = Field(ge=0)
    cycles_log: int = Field(ge=0)
    cycles_div: int = Field(ge=0)
    clock_mhz: float = Field(gt=0)


class _UnitTable(Schema):
    name: str = Field(min_length=1)
    technology_nm: float | None = Field(None, gt=0, le=1e4)
    description: str = ""
    params: dict


def exit_test_operations(rule: str, classes: int) -> dict[str, int]:
    """Operations of one exit test over ``classes`` = K outputs (the table in the module docstring)."""
    k = classes
    if rule == "entropy":
        return {"add": 4 * k - 1, "mult": 2 * k, "compare": k, "exp": k, "log": 1, "div": 1}
    if rule == "confidence":
        return {"add": 3 * k - 1, "mult": k + 1, "compare": k, "exp": k, "log": 0, "div": 0}
    raise SpikecimError(f"exit_test.rule: unknown rule {rule!r}, allowed: entropy, confidence")


def exit_test_cost(workload, p: ExitUnitParams) -> tuple[float, float]:
    """(energy pJ, latency ns) of the exit tests of one sample of ``workload`` (0 without an
    exit test)."""
    test = workload.exit_test
    if test is None:
        return 0.0, 0.0
    tests = sum(workload.running(t) for t in range(workload.timesteps - 1))
    energy, cycles = operations_cost(exit_test_operations(test.rule, test.classes), p)
    return tests * energy, tests * cycles * NS_PER_US / p.clock_mhz


def operations_cost(ops: dict[str, int], p: Schema) -> tuple[float, float]:
    """(energy pJ, cycles) of ``ops`` (operation: count) on a unit whose table holds
    ``e_<op>_pj`` and ``cycles_<op>`` per operation."""
    energy = sum(n * getattr(p, f"e_{op}_pj") for op, n in ops.items())
    cycles = sum(n * getattr(p, f"cycles_{op}") for op, n in ops.items())
    return energy, cycles


def load_unit_table(name_or_path: str | Path, params: type[P], what: str) -> P:
    """A unit table's ``params`` by name (in ``hw/tables/units``) or YAML path, checked by
    ``params``; ``what`` names the unit in errors (``exit unit``, ``digital unit``)."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix not in (".yaml", ".yml"):
        kind = what.replace(" ", "-")  # the shipped tables of this unit: digital-unit-45nm, ...
        path = UNITS_DIR / f"{text}.yaml"
        if not (text.startswith(f"{kind}-") and path.exists()):
            known = ", ".join(sorted(p.stem for p in UNITS_DIR.glob(f"{kind}-*.yaml")))
            raise SpikecimError(
                f"{what.replace(' ', '_')}: unknown unit '{text}', allowed: {known} or a YAML file"
            )
    data = read_settings(path, what, "with name and params", "write its name and params in it")
    try:
        table = _UnitTable.model_validate(data)
        return params.model_validate(table.params)
    except ValidationError as e:
        raise SpikecimError(first_error(e, prefix=f"{what} {path.stem}: ")) from None


def load_exit_unit(name_or_path: str | Path) -> ExitUnitParams:
    """An exit-unit table by name (``exit-unit-45nm``, in ``hw/tables/units``) or YAML path."""
    return load_unit_table(name_or_path, ExitUnitParams, "exit unit")
