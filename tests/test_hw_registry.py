"""Contract tests over every shipped table and registered estimator."""

import math
import re

import pytest

from spikecim.hw import (
    CostReport,
    estimate,
    list_architectures,
    list_estimators,
    load_architecture,
    workload_from_layers,
)
from spikecim.hw.arch import TABLES_DIR
from spikecim.hw.units import UNITS, split_unit

WL = workload_from_layers(
    {
        "model": "contract",
        "timesteps": 2,
        "activity": 0.3,
        "in_hw": 8,
        "layers": [
            {"in_ch": 2, "out_ch": 8, "kernel": 3, "padding": 1, "pool": 2},
            {"kind": "linear", "in_ch": 128, "out_ch": 10, "has_neuron": False},
        ],
    }
)


def test_every_registered_estimator_has_a_shipped_table():
    used = {load_architecture(name).estimator for name in list_architectures()}
    assert used == set(list_estimators())


@pytest.mark.parametrize("name", list_architectures())
def test_every_constant_has_a_unit_or_is_a_count_and_cites_a_source(name):
    text = (TABLES_DIR / f"{name}.yaml").read_text()
    arch = load_architecture(name)
    fields = type(arch.p).model_fields
    for key in arch.params:
        line = next(l for l in text.splitlines() if re.match(rf"\s+{key}:", l))
        assert "#" in line.split(":", 1)[1], f"{name}: {key} has no source comment"
        unit = split_unit(key)[1]
        is_count_label_or_switch = fields[key].annotation in (int, bool) or key == "device"
        assert unit in UNITS or is_count_label_or_switch, f"{name}: {key} has no unit in its name"


@pytest.mark.parametrize("name", list_architectures())
def test_every_table_gives_finite_nonnegative_costs_and_round_trips(name, tmp_path):
    r = estimate(WL, name)
    values = [
        r.energy_pj,
        r.latency_ns,
        r.area_um2,
        *r.energy_by_component_pj.values(),
        *r.area_by_component_um2.values(),
    ]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert r.energy_pj > 0
    back = CostReport.load(r.save(tmp_path / "r.json"))
    assert back.summary() == r.summary()
