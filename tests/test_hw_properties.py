"""Properties every hardware model must keep, checked over the registry of shipped tables."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikecim.hw import estimate, load_architecture, workload_from_layers
from spikecim.hw.estimators.imc import mapping

EVENT_ARCHS = [
    "naive-45nm",
    "naive-45nm-sparse",
    "imc-rram-65nm",
    "imc-sram-65nm",
    "systolic-sata",
    "dual-sparse-loas",
]
ALL_ARCHS = [*EVENT_ARCHS, "spikesim-rram-65nm", "spikesim-sram-65nm"]


def net(timesteps=4, activity=1.0, spiking=True, layers=None):
    return workload_from_layers(
        {
            "model": "small",
            "timesteps": timesteps,
            "spiking": spiking,
            "activity": activity,
            "in_hw": 16,
            "layers": layers
            or [
                {"kind": "conv2d", "in_ch": 3, "out_ch": 32, "kernel": 3, "padding": 1},
                {"kind": "conv2d", "in_ch": 32, "out_ch": 64, "kernel": 3, "padding": 1, "pool": 2},
                {"kind": "conv2d", "in_ch": 64, "out_ch": 200, "kernel": 3, "padding": 1, "pool": 2},
                {"kind": "linear", "in_ch": 3200, "out_ch": 10, "has_neuron": False},
            ],
        }
    )


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_event_mode_equals_dense_mode_when_every_input_spikes(arch):
    wl = net(activity=1.0)
    event, dense = estimate(wl, arch), estimate(wl, arch, dense=True)
    assert event.energy_pj == pytest.approx(dense.energy_pj, rel=1e-12)
    assert event.latency_ns == pytest.approx(dense.latency_ns, rel=1e-12)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_energy_grows_with_timesteps(arch):
    e = [estimate(net(timesteps=t, activity=0.2), arch).energy_pj for t in (1, 2, 4, 8)]
    assert all(a < b for a, b in itertools.pairwise(e))


@pytest.mark.parametrize("arch", EVENT_ARCHS)
@settings(max_examples=15, deadline=None)
@given(lo=st.floats(0.0, 0.95), gap=st.floats(0.01, 0.5))
def test_energy_falls_with_sparsity_in_event_mode(arch, lo, gap):
    hi = min(1.0, lo + gap)
    assert estimate(net(activity=lo), arch).energy_pj < estimate(net(activity=hi), arch).energy_pj


def test_dense_mode_ignores_sparsity():
    for arch in EVENT_ARCHS:
        sparse, full = (
            estimate(net(activity=0.1), arch, dense=True),
            estimate(net(activity=1.0), arch, dense=True),
        )
        assert sparse.energy_pj == pytest.approx(full.energy_pj, rel=1e-12)


@pytest.mark.parametrize("rows_cols", [(32, 32), (64, 64), (128, 128), (256, 256), (512, 512), (128, 256)])
def test_larger_crossbar_never_needs_more_tiles_imc(rows_cols):
    r, c = rows_cols
    wl = net()
    small = load_architecture("imc-rram-65nm", xbar_rows=r, xbar_cols=c)
    for bigger in ((2 * r, c), (r, 2 * c), (2 * r, 2 * c)):
        big = load_architecture("imc-rram-65nm", xbar_rows=bigger[0], xbar_cols=bigger[1])
        for layer in wl.layers:
            assert mapping(layer, big.p)["tiles"] <= mapping(layer, small.p)["tiles"]


def test_larger_crossbar_never_needs_more_tiles_spikesim():
    wl = net()
    tiles = [
        estimate(wl, load_architecture("spikesim-rram-65nm", xbar_size=x)).extras["tiles"]
        for x in (16, 32, 64, 128, 256)
    ]
    assert all(a >= b for a, b in itertools.pairwise(tiles))


@pytest.mark.parametrize("arch", ["naive-45nm", "imc-rram-65nm", "systolic-sata", "dual-sparse-loas"])
def test_costs_are_additive_over_layers(arch):
    wl = net(activity=0.3)
    whole = estimate(wl, arch)
    parts = [estimate(wl.model_copy(update={"layers": [layer]}), arch) for layer in wl.layers]
    assert whole.energy_pj == pytest.approx(sum(p.energy_pj for p in parts), rel=1e-12)
    assert whole.latency_ns == pytest.approx(sum(p.latency_ns for p in parts), rel=1e-12)
    layer_area = sum(sum(layer.total_area_um2 for layer in p.layers) for p in parts)
    assert whole.area_um2 - sum(whole.shared_area_um2.values()) == pytest.approx(layer_area, rel=1e-12)


def test_spikesim_energy_is_additive_over_layers():
    wl = net()
    whole = estimate(wl, "spikesim-rram-65nm")
    parts = sum(
        estimate(wl.model_copy(update={"layers": [layer]}), "spikesim-rram-65nm").energy_pj
        for layer in wl.layers
    )
    assert whole.energy_pj == pytest.approx(parts, rel=1e-12)


def test_imc_costs_every_layer_including_fully_connected():
    r = estimate(net(), "imc-rram-65nm")
    assert all(not layer.skipped and layer.total_energy_pj > 0 for layer in r.layers)


def test_imc_membrane_traffic_every_step_for_every_spiking_layer():
    # membrane = neurons · membrane_bits · 2 (read + write) · e_sram_bit · T, for each layer with a neuron
    wl = net(timesteps=3)
    arch = load_architecture("imc-rram-65nm")
    r = estimate(wl, arch)
    for layer, cost in zip(wl.layers, r.layers):
        # e_sram_bit = 1.95 pJ per 16-bit SRAM access / 16 (SATA CACTI figures,
        # docs/references.md#sata-memory)
        expected = layer.out_size * 16 * 2 * (1.95 / 16) * 3 if layer.has_neuron else 0.0
        assert cost.energy_pj.get("membrane", 0.0) == pytest.approx(expected)


def test_node_scaling_is_linear_in_energy_and_quadratic_in_area():
    wl = net()
    a65 = load_architecture("imc-rram-65nm")
    a32 = load_architecture("imc-rram-65nm", node_nm=32.5)
    r65, r32 = estimate(wl, a65), estimate(wl, a32)
    assert r32.energy_pj == pytest.approx(r65.energy_pj * 0.5, rel=1e-9)
    assert r32.area_um2 == pytest.approx(r65.area_um2 * 0.25, rel=1e-9)
    assert r32.latency_ns == r65.latency_ns


def test_snn_first_layer_runs_bit_serial_and_ann_layers_too():
    snn, ann = net(spiking=True), net(spiking=False)
    arch = load_architecture("imc-rram-65nm")
    # the same first layer: real-valued 8-bit input in both -> the same crossbar energy per step
    e_snn = estimate(snn, arch).layers[0].energy_pj["crossbar"] / snn.timesteps
    e_ann = estimate(ann, arch).layers[0].energy_pj["crossbar"]
    assert e_snn == pytest.approx(e_ann)
    # later layers: 1 read per step for spikes against 8 bit-serial reads for the ANN
    c_snn = estimate(snn, arch).layers[1].energy_pj["crossbar"] / snn.timesteps
    c_ann = estimate(ann, arch).layers[1].energy_pj["crossbar"]
    assert c_ann == pytest.approx(8 * c_snn)
    assert math.isfinite(c_ann)
