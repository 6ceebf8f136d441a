"""Workload schema 2: v1 files load and cost the same; bad files are refused with one line
naming the layer and the field, through Workload.load and `spikecim hw estimate`."""

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.hw import estimate, list_architectures
from spikecim.trace import Workload

# A schema-1 file as the old tracer wrote it (flat layers, macs and params stored).
V1 = {
    "schema_version": 1,
    "model": "v1-by-hand",
    "spiking": True,
    "timesteps": 2,
    "samples": 4,
    "dataset": None,
    "input_shape": [1, 8, 8],
    "layers": [
        {"name": "conv1", "kind": "conv2d", "in_ch": 1, "out_ch": 4, "kernel": [3, 3], "stride": [1, 1],
         "padding": [1, 1], "groups": 1, "in_hw": [8, 8], "out_hw": [8, 8], "pooled_out_hw": [4, 4],
         "params": 40, "has_bias": True, "weight_bits": 32, "input_bits": 8, "timesteps": 2,
         "spiking_input": False, "has_neuron": True, "neuron_kind": "LIF", "weight_sparsity": 0.0,
         "macs": 2304, "in_nonzero_per_step": [64.0, 64.0], "acs_per_step": [2304.0, 2304.0],
         "out_spikes_per_step": [40.0, 30.0]},
        {"name": "fc", "kind": "linear", "in_ch": 64, "out_ch": 10, "kernel": [1, 1], "stride": [1, 1],
         "padding": [0, 0], "groups": 1, "in_hw": [1, 1], "out_hw": [1, 1], "pooled_out_hw": None,
         "params": 640, "has_bias": False, "weight_bits": 32, "input_bits": 1, "timesteps": 2,
         "spiking_input": True, "has_neuron": False, "neuron_kind": None, "weight_sparsity": 0.25,
         "macs": 640, "in_nonzero_per_step": [10.0, 6.0], "acs_per_step": [100.0, 60.0],
         "out_spikes_per_step": None},
    ],
}  # fmt: skip

# The same network written in schema 2.
V2 = {
    "schema_version": 2,
    "model": "v1-by-hand",
    "timesteps": 2,
    "samples": 4,
    "input_shape": [1, 8, 8],
    "layers": [
        {"name": "conv1", "kind": "conv2d", "in_ch": 1, "out_ch": 4, "kernel": [3, 3], "padding": [1, 1],
         "in_hw": [8, 8], "out_hw": [8, 8], "pooled_out_hw": [4, 4], "has_bias": True, "input_bits": 8,
         "timesteps": 2, "spiking_input": False, "neuron_kind": "LIF",
         "operands": {"weight": {"kind": "static", "bits": 32}},
         "in_nonzero_per_step": [64.0, 64.0], "acs_per_step": [2304.0, 2304.0],
         "out_spikes_per_step": [40.0, 30.0]},
        {"name": "fc", "kind": "linear", "in_ch": 64, "out_ch": 10, "timesteps": 2, "has_neuron": False,
         "operands": {"weight": {"kind": "static", "bits": 32, "sparsity": 0.25}},
         "in_nonzero_per_step": [10.0, 6.0], "acs_per_step": [100.0, 60.0]},
    ],
}  # fmt: skip


def _write(tmp_path, data, name="wl.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_v1_file_loads_as_schema_2_with_derived_figures(tmp_path):
    w = Workload.load(_write(tmp_path, V1))
    conv, fc = w.layers
    assert w.schema_version == 2 and type(conv).__name__ == "Conv2dWorkload"
    assert conv.macs == 4 * 1 * 9 * 8 * 8 and conv.params == 40 and fc.params == 640
    assert fc.weight_sparsity == 0.25 and fc.positions == 1
    # membranes: 4·8·8 neurons at 32 bits (the old 4 bytes per neuron)
    assert w.metrics()["membrane_bytes"] == 4 * 8 * 8 * 4


@pytest.mark.parametrize("arch", list_architectures())
def test_v1_file_costs_the_same_as_its_schema_2_twin(tmp_path, arch):
    old = estimate(Workload.load(_write(tmp_path, V1, "v1.json")), arch)
    new = estimate(Workload.load(_write(tmp_path, V2, "v2.json")), arch)
    assert old.energy_pj == new.energy_pj and old.latency_ns == new.latency_ns
    assert old.area_um2 == new.area_um2 and old.ops == new.ops


def test_v1_naive_energy_is_the_hand_count(tmp_path):
    r = estimate(Workload.load(_write(tmp_path, V1)), "naive-45nm")
    # conv1 on real-valued input: 4.6 pJ per MAC, 2304 MACs, 2 steps; fc on spikes: 0.9 pJ per AC
    assert r.energy_pj == pytest.approx(4.6 * 2304 * 2 + 0.9 * 160)


def test_file_without_accumulates_on_nonzero_weights_falls_back_to_acs_times_kept_weights(tmp_path):
    # V2 (a file written before the field) leaves it out: fc's 25 % zero weights are assumed
    # met as often as the others, 100 then 60 accumulates · 0.75
    w = Workload.load(_write(tmp_path, V2))
    conv, fc = w.layers
    assert fc.acs_nonzero_weights_per_step is None
    assert [fc.acs_on_nonzero_weights(t) for t in range(2)] == [75.0, 45.0]
    assert [conv.acs_on_nonzero_weights(t) for t in range(2)] == [2304.0, 2304.0]
    assert w.metrics()["effective_acs_on_nonzero_weights"] == 2304 * 2 + 75 + 45
    # naive-45nm-sparse: conv1's MACs (real-valued input, no zero weight) at 4.6 pJ, fc's
    # accumulates on non-zero weights at 0.9 pJ (docs/references.md#naive-energy)
    naive = estimate(w, "naive-45nm-sparse")
    assert naive.energy_pj == pytest.approx(4.6 * 2304 * 2 + 0.9 * (75 + 45))
    # dual-sparse-loas: fc's operations, each an accumulate (0.0389 pJ) and an AND (0.000794 pJ)
    dual = estimate(w, "dual-sparse-loas")
    assert dual.layers[1].energy_pj["compute"] == pytest.approx((75 + 45) * (0.0389 + 0.000794))


def test_v2_round_trip_keeps_every_entry_class(tmp_path):
    w = Workload.load(_write(tmp_path, V2))
    again = Workload.load(w.save(tmp_path / "again.json"))
    assert again == w


def _set(path: str, value):
    def mutate(d):
        *keys, last = path.split(".")
        node = d
        for k in keys:
            node = node[int(k)] if k.isdigit() else node[k]
        node[int(last) if last.isdigit() else last] = value

    return mutate


BAD = [
    ("nan activity", _set("layers.1.in_nonzero_per_step.0", float("nan")), "fc", "in_nonzero_per_step"),
    ("inf activity", _set("layers.0.acs_per_step.1", float("inf")), "conv1", "acs_per_step"),
    ("zero input size", _set("layers.0.in_hw", [0, 0]), "conv1", "in_hw"),
    ("stride 0", _set("layers.0.stride", [0, 1]), "conv1", "stride"),
    ("negative kernel", _set("layers.0.kernel", [-3, 3]), "conv1", "kernel"),
    ("negative output size", _set("layers.0.out_hw", [-8, 8]), "conv1", "out_hw"),
    ("output size off the formula", _set("layers.0.out_hw", [7, 8]), "conv1", "out_hw"),
    ("groups not dividing", _set("layers.0.groups", 3), "conv1", "groups"),
    ("activity above 1", _set("layers.1.in_nonzero_per_step.0", 65.0), "fc", "in_nonzero_per_step"),
    ("spikes above neurons", _set("layers.0.out_spikes_per_step.0", 257.0), "conv1", "out_spikes_per_step"),
    ("accumulates above MACs", _set("layers.1.acs_per_step.0", 641.0), "fc", "acs_per_step"),
    (
        "accumulates on non-zero weights: too many steps",
        _set("layers.1.acs_nonzero_weights_per_step", [1.0] * 3),
        "fc",
        "acs_nonzero_weights_per_step",
    ),
    (
        "accumulates on non-zero weights above accumulates",
        _set("layers.1.acs_nonzero_weights_per_step", [101.0, 60.0]),
        "fc",
        "acs_nonzero_weights_per_step.0",
    ),
    (
        "negative accumulates on non-zero weights",
        _set("layers.1.acs_nonzero_weights_per_step", [-1.0, 0.0]),
        "fc",
        "acs_nonzero_weights_per_step",
    ),
    (
        "inf accumulates on non-zero weights",
        _set("layers.1.acs_nonzero_weights_per_step", [float("inf"), 0.0]),
        "fc",
        "acs_nonzero_weights_per_step",
    ),
    ("running fraction above 1", _set("running_per_step", [1.0, 1.5]), None, "running_per_step"),
    ("running fraction rising", _set("running_per_step", [0.5, 1.0]), None, "running_per_step.1"),
    ("negative padding", _set("layers.0.padding", [-1, 1]), "conv1", "padding"),
    ("sparsity above 1", _set("layers.1.operands.weight.sparsity", 2.0), "fc", "sparsity"),
]


def _bad_file(tmp_path, mutate):
    data = copy.deepcopy(V2)
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, allow_nan=True))  # NaN/inf written as JSON's extension
    return path


@pytest.mark.parametrize("case, mutate, layer, field", BAD, ids=[b[0] for b in BAD])
def test_bad_workload_is_refused_naming_layer_and_field(tmp_path, case, mutate, layer, field):
    with pytest.raises(SpikecimError) as e:
        Workload.load(_bad_file(tmp_path, mutate))
    msg = str(e.value)
    assert "\n" not in msg and field in msg
    if layer is not None:
        assert f"({layer})" in msg


@pytest.mark.parametrize("case, mutate, layer, field", BAD, ids=[b[0] for b in BAD])
def test_bad_workload_on_the_command_line_exits_2_with_one_line(tmp_path, capsys, case, mutate, layer, field):
    code = main(["hw", "estimate", str(_bad_file(tmp_path, mutate)), "--arch", "imc-rram-65nm"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1 and field in err


def _costs_are_finite(w: Workload) -> None:
    for arch in ("imc-rram-65nm", "systolic-sata", "dual-sparse-loas", "naive-45nm", "spikesim-rram-65nm"):
        r = estimate(w, arch)
        for v in (r.energy_pj, r.latency_ns, r.area_um2, r.ops):
            assert math.isfinite(v) and v >= 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_fields = ["in_ch", "out_ch", "kernel", "stride", "padding", "groups", "in_hw", "out_hw", "timesteps",
           "in_nonzero_per_step", "acs_per_step", "operands", "kind", "positions", "pooled_out_hw",
           "out_spikes_per_step", "membrane_bits", "input_bits", "dilation", "name"]  # fmt: skip
_values = (
    _json
    | st.integers(-3, 70)
    | st.lists(st.integers(-2, 70), min_size=1, max_size=3)
    | st.lists(st.floats(-1, 1e4), min_size=2, max_size=2)
)


def _load_dict(data) -> Workload | None:
    try:
        return Workload.from_dict(data)
    except SpikecimError as e:
        assert "\n" not in str(e)
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(layer=st.integers(0, 1), field=st.sampled_from(_fields), value=_values, top=_json)
def test_fuzz_mutated_workloads_load_or_fail_with_one_line_and_cost_finitely(layer, field, value, top):
    data = copy.deepcopy(V2 if layer == 0 else V1)
    data["layers"][layer][field] = value
    if isinstance(top, dict):
        data.update({k: v for k, v in top.items() if k != "layers"})
    w = _load_dict(data)
    if w is not None:
        _costs_are_finite(w)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=_json)
def test_fuzz_random_json_structures_never_crash(data):
    w = _load_dict(data if not isinstance(data, dict) else {**data, "layers": data.get("layers", [data])})
    if w is not None:
        _costs_are_finite(w)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(blob=st.binary(max_size=200))
def test_fuzz_random_bytes_are_refused_with_one_line(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "wl.json"
    path.write_bytes(blob)
    try:
        Workload.load(path)
    except SpikecimError as e:
        assert "\n" not in str(e)
