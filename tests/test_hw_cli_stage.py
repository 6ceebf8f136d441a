"""The product surface: `spikecim hw estimate` on a run folder, `hw list`, the hardware stage."""

import json

import pytest

from spikecim.cli.main import main
from spikecim.hw import estimate, workload_from_layers

LAYERS = [
    {"kind": "conv2d", "in_ch": 1, "out_ch": 8, "kernel": 3, "padding": 1},
    {"kind": "conv2d", "in_ch": 8, "out_ch": 16, "kernel": 3, "padding": 1, "pool": 2},
    {"kind": "linear", "in_ch": 256, "out_ch": 10, "has_neuron": False},
]


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "runs" / "demo"
    snn = workload_from_layers(
        {"model": "demo", "timesteps": 4, "activity": 0.2, "in_hw": 8, "layers": LAYERS}
    )
    ann = workload_from_layers(
        {"model": "demo", "spiking": False, "activity": 0.5, "in_hw": 8, "layers": LAYERS}
    )
    snn.save(d / "workload.json")
    ann.save(d / "workload_ann.json")
    return d


def test_estimate_on_run_folder_json_matches_library(run_dir, capsys):
    from spikecim.trace.workload import Workload

    assert main(["hw", "estimate", str(run_dir), "--arch", "imc-rram-65nm", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lib = estimate(Workload.load(run_dir), "imc-rram-65nm")
    assert out["energy_pj"] == pytest.approx(lib.energy_pj) and out["area_um2"] == pytest.approx(lib.area_um2)
    assert len(out["layers"]) == 3 and out["estimator"] == "imc"
    # the SNN workload (T = 4): 2 ops per dense MAC at every step, MACs counted by hand below
    assert out["spiking"] is True and out["ops"] == 2 * (8 * 9 * 1 * 64 + 16 * 9 * 8 * 64 + 256 * 10) * 4


def test_estimate_ann_variant_and_table_output(run_dir, capsys, tmp_path):
    assert (
        main(
            [
                "hw",
                "estimate",
                str(run_dir),
                "--variant",
                "ann",
                "--arch",
                "systolic-sata",
                "--out",
                str(tmp_path / "c.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| layer |" in text and "**total**" in text
    saved = json.loads((tmp_path / "c.json").read_text())
    # The ANN twin was costed: one step, and 2 ops per dense MAC (hand count of LAYERS on 8x8:
    # 8·9·1·64 + 16·9·8·64 + 256·10 = 4,608 + 73,728 + 2,560 = 80,896 MACs).
    assert saved["spiking"] is False and saved["timesteps"] == 1
    assert saved["ops"] == 2 * 80_896
    # SATA (docs/references.md#sata-energies): a non-zero input's MAC costs multiply + accumulate
    # (0.239 + 0.0389 pJ), and the ANN workload's activity is 0.5, so half the MACs run.
    compute = 0.5 * 80_896 * (0.239 + 0.0389)
    assert saved["energy_by_component_pj"]["compute"] == pytest.approx(compute, rel=1e-9)
    total_row = next(line for line in text.splitlines() if line.startswith("| **total**"))
    assert f"{saved['energy_pj']:,.2f}" in total_row and f"{compute:,.2f}" in total_row


def test_the_table_prints_no_latency_or_area_for_the_op_count_model_which_has_none(run_dir, capsys):
    # naive-45nm counts operations only (docs/hardware.md): no latency, no area
    assert main(["hw", "estimate", str(run_dir), "--arch", "naive-45nm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(line for line in lines if line.startswith("| layer |")).split(" | ")
    rows = [
        line.split(" | ")
        for line in lines
        if line.startswith("| ") and not line.startswith(("| layer", "|---"))
    ]
    columns = head.index("latency_ns"), head.index("area_um2")
    assert rows and all(row[c] == "n/a" for row in rows for c in columns)
    assert any("slowest stage n/a ns, frame latency n/a ns" in line for line in lines)
    assert main(["hw", "estimate", str(run_dir), "--arch", "imc-rram-65nm"]) == 0
    total = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| **total**"))
    assert all(cell != "n/a" for cell in total.split(" | ")[1:4])  # a model with latency and area


def test_estimate_accepts_a_user_yaml_table_and_set_overrides(run_dir, tmp_path, capsys):
    import shutil

    from spikecim.hw.arch import TABLES_DIR

    table = tmp_path / "mine.yaml"
    shutil.copy(TABLES_DIR / "imc-sram-65nm.yaml", table)
    assert main(["hw", "estimate", str(run_dir), "--arch", str(table), "--set", "adc_bits=4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["extras"]["adc_energy_pj"] == pytest.approx((3.7506 * 4 + 25.844 + 1.21272) * 5 * 1e-3)


def test_hw_list_names_every_shipped_table(capsys):
    from spikecim.hw import list_architectures, list_estimators

    assert main(["hw", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_architectures() + list_estimators())


def test_hardware_stage_costs_snn_and_ann_side_by_side(run_dir):
    from spikecim.config import RunConfig
    from spikecim.pipeline.results import result_json
    from spikecim.pipeline.stages import RunContext, get_stage
    from spikecim.report.sections import list_sections
    from spikecim.trace.workload import Workload

    stage = get_stage("hardware")
    assert stage.requires == ("trace",)
    ctx = RunContext(
        config=RunConfig(),
        run_dir=run_dir,
        workloads={"snn": Workload.load(run_dir), "ann": Workload.load(run_dir / "workload_ann.json")},
    )
    result = stage.fn(ctx)
    m = result_json(result)
    assert m["archs"] == ["naive-45nm", "imc-rram-65nm", "systolic-sata"]
    assert m["baseline"] == "ann" and set(m["ratios"]) == {"snn_over_ann"}
    for arch in m["archs"]:
        s, a = m["variants"]["snn"][arch], m["variants"]["ann"][arch]
        assert m["ratios"]["snn_over_ann"][arch]["energy_pj"] == pytest.approx(
            s["energy_pj"] / a["energy_pj"]
        )
        assert (run_dir / m["files"]["reports"]["snn"][arch]).exists()
        assert sum(s["energy_by_layer_pj"].values()) == pytest.approx(s["energy_pj"])
    assert len(m["files"]["plots"]) == 2 and all((run_dir / p).exists() for p in m["files"]["plots"])
    json.dumps(m)  # metrics.json must be able to hold it
    section = next(s for s in list_sections() if s.name == "hardware")
    html = section.fn(result, run_dir)
    assert "imc-rram-65nm" in html and "Ratios to the baseline ann" in html
    # the component shares, energy per layer and ratio charts; the first two with their PNG for report.md
    assert html.count('<figure class="chart"') == 3
    assert 'data-file="plots/hw_components.png"' in html and 'data-file="plots/hw_layers.png"' in html
    assert section.fn(None, run_dir) == ""


def test_hardware_stage_disabled_returns_marker(run_dir):
    from spikecim.config import RunConfig
    from spikecim.pipeline.results import result_json
    from spikecim.pipeline.stage_hardware import hardware_stage
    from spikecim.pipeline.stages import RunContext

    cfg = RunConfig.model_validate({"hardware": {"enabled": False}})
    assert result_json(hardware_stage(RunContext(config=cfg, run_dir=run_dir))) == {"enabled": False}


def test_node_scaling_keeps_a_constant_set_with_it(run_dir, capsys):
    """--node-nm 32.5 halves every *_pj of the 65 nm table, but --set e_mux_pj=0.5 stays 0.5."""
    from spikecim.hw import load_architecture
    from spikecim.hw.arch import TABLES_DIR
    from spikecim.readers import read_mapping
    from spikecim.trace.workload import Workload

    a = load_architecture("imc-rram-65nm", node_nm=32.5, e_mux_pj=0.5)
    assert a.params["e_mux_pj"] == 0.5
    assert a.params["e_neuron_update_pj"] == pytest.approx(1.274 * 0.5)  # table value × 32.5/65
    # The CLI costs with the same constants as a table scaled by hand from the YAML file.
    table = read_mapping(TABLES_DIR / "imc-rram-65nm.yaml", "arch")
    by_hand = {
        k: v * 0.5 if k.endswith(("_pj", "_uw")) else v * 0.25 if k.endswith("_um2") else v
        for k, v in table["params"].items()
    }
    by_hand["e_mux_pj"] = 0.5
    expected = estimate(Workload.load(run_dir), load_architecture("imc-rram-65nm").with_params(**by_hand))
    args = ["hw", "estimate", str(run_dir), "--arch", "imc-rram-65nm", "--node-nm", "32.5"]
    assert main([*args, "--set", "e_mux_pj=0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["energy_pj"] == pytest.approx(expected.energy_pj) and out["area_um2"] == pytest.approx(
        expected.area_um2
    )


@pytest.mark.parametrize(
    "extra,line",
    [
        (["--set", "adc_bits=["], "--set adc_bits: '[' is not a YAML value"),
        (["--set", "=3"], "--set: expected key=value, got '=3'"),
        (["--node-nm", "1e-300"], "node_nm: must be a number in [1, 10000] nm"),
        (["--timesteps", "3"], "--timesteps: applies to a .nir model only"),
        (["--input-rate", "0.5"], "--input-rate: applies to a .nir model only"),
        (["--dataset", "digits"], "--dataset: applies to a .nir model only"),
        # a clock of 1e-300 MHz: each layer's latency near 1e306 ns, the EDP beyond float's range
        (["--set", "clock_mhz=1e-300"], "hw: on architecture 'imc-rram-65nm' the energy-delay product of"),
    ],
)
def test_estimate_refuses_bad_or_inapplicable_options_in_one_line(run_dir, capsys, extra, line):
    assert main(["hw", "estimate", str(run_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {line}") and len(err.strip().splitlines()) == 1


def test_spikesim_layer_pooled_larger_than_its_convolution_is_refused_naming_it(tmp_path, capsys):
    # a 'same' 3x3 convolution of a 32x32 map gives 32x32: out_dim (after pooling) cannot be 64
    spec = tmp_path / "layers.yaml"
    spec.write_text("layers: [{in_ch: 3, out_ch: 64, in_dim: 32, out_dim: 64}]\n")
    assert main(["hw", "spikesim", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {spec}: layers.0.out_dim: 64 is larger than the convolution's output 32 "
        "(in_dim 32, kernel 3): out_dim is after pooling"
    )
