"""The spikesim estimator reproduces the public SpikeSim script (docs/references.md#spikesim)."""

import json
import math

import pytest

from spikecim.cli.main import main
from spikecim.hw import estimate, load_architecture, spikesim_from_spec

# docs/references.md#spikesim-vgg9: the script's own VGG9 / CIFAR-10 example
VGG9 = {
    "xbar_size": 64,
    "pe_per_tile": 8,
    "timesteps": 5,
    "clock_mhz": 250,
    "device": "rram",
    "kernel": 3,
    "layers": [
        {"in_ch": i, "out_ch": o, "in_dim": a, "out_dim": b}
        for i, o, a, b in zip(
            [3, 64, 64, 128, 128, 256, 256],
            [64, 64, 128, 128, 256, 256, 256],
            [32, 32, 16, 16, 8, 8, 8],
            [32, 16, 16, 8, 8, 8, 4],
        )
    ],
}
REF_ENERGY_PJ = 15_906_934.03
REF_AREA_UM2 = 8_425_528.76
REF_LATENCY_NS = 62_832_640


def test_vgg9_example_matches_published_spikesim_figures_within_0_01_percent():
    wl, arch = spikesim_from_spec(VGG9)
    r = estimate(wl, arch)
    assert r.energy_pj == pytest.approx(REF_ENERGY_PJ, rel=1e-4)
    assert r.area_um2 == pytest.approx(REF_AREA_UM2, rel=1e-4)
    assert r.latency_ns == pytest.approx(REF_LATENCY_NS, rel=1e-4)
    assert r.extras["pes"] == 48 and r.extras["tiles"] == 6


def test_spikesim_cli_json_prints_reference_figures(tmp_path, capsys):
    import yaml

    path = tmp_path / "vgg9.yaml"
    path.write_text(yaml.safe_dump(VGG9))
    assert main(["hw", "spikesim", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy_pj"] == pytest.approx(REF_ENERGY_PJ, rel=1e-4)
    assert out["area_um2"] == pytest.approx(REF_AREA_UM2, rel=1e-4)
    assert out["latency_ns"] == pytest.approx(REF_LATENCY_NS, rel=1e-4)
    assert (out["pes"], out["tiles"]) == (48, 6)
    assert sum(out["per_layer_energy_pj"]) == pytest.approx(out["energy_pj"], rel=1e-12)


def test_first_layer_energy_equals_script_formula_by_hand():
    # docs/references.md#spikesim-energy, layer 1 (3 -> 64, out_dim 32):
    # ⌈64/64⌉·⌈3/64⌉·32²·PE-cycle·T
    pe = 9 * 1.76423 + 8 * (2.03084 + 0.094245)
    cycle = 19.64 * 8 + 4.64 + 1.274 * 4 + 8 * pe + 8 * 16 * 1.15e-6 + 8 * 0.2 + 397
    wl, arch = spikesim_from_spec(VGG9)
    r = estimate(wl, arch)
    assert r.layers[0].total_energy_pj == pytest.approx(1 * 1 * 32**2 * cycle * 5, rel=1e-12)


def test_sram_preset_keeps_the_script_quirk_read_energy_equals_area_constant():
    p = load_architecture("spikesim-sram-65nm").p
    assert p.e_xbar_read_pj == p.a_xbar_um2 == 671.089  # docs/references.md#spikesim-quirks


def test_fully_connected_layers_are_not_costed_as_in_the_script():
    spec = dict(VGG9)
    wl, arch = spikesim_from_spec(spec)
    fc = wl.layers[-1].model_copy(
        update={
            "name": "fc",
            "kind": "linear",
            "kernel": (1, 1),
            "in_hw": (1, 1),
            "out_hw": (1, 1),
            "pooled_out_hw": None,
        }
    )
    wl2 = wl.model_copy(update={"layers": [*wl.layers, fc]})
    r1, r2 = estimate(wl, arch), estimate(wl2, arch)
    assert r2.layers[-1].skipped and r2.layers[-1].total_energy_pj == 0
    assert r2.energy_pj == pytest.approx(r1.energy_pj, rel=1e-12)
    assert math.isclose(r2.area_um2, r1.area_um2)
