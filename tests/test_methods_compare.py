"""Comparing the efficiency methods: the table built from typed results, the combination
rule (aspects a method changes), and combined methods run end to end."""

import json

import pytest
import torch

from spikecim.cli.main import main
from spikecim.config import RunConfig
from spikecim.errors import SpikecimError
from spikecim.methods import (
    _CHANGES,
    _COMPATIBLE,
    _METHODS,
    _TRAIN,
    apply_methods,
    check_combination,
    register_method,
)
from spikecim.models import create_model
from spikecim.nn.shared import SharedLIF
from spikecim.pipeline.compare import compare_methods
from spikecim.pipeline.results import AnalogResult, EvaluateResult, HardwareResult, TraceResult
from spikecim.pipeline.stage_methods import methods_section
from spikecim.variants import MethodConfig


def _hand_results():
    evaluate = EvaluateResult.model_validate(
        {"base": {"accuracy": 0.9}, "fast": {"accuracy": 0.8, "average_steps": 2.5}}
    )
    analog = AnalogResult.model_validate(
        {
            "n_seeds": 3,
            "variants": {
                "base": {"analog": {"mean": 0.85, "std": 0.02}},
                "fast": {"analog": {"mean": 0.7, "std": 0.04}},
            },
        }
    )
    trace = TraceResult.model_validate(
        {
            "base": {"params": 1000, "footprint_bytes": 4400, "footprint_reduction_vs_fp32": 0.0},
            "fast": {"params": 1000, "footprint_bytes": 1100, "footprint_reduction_vs_fp32": 0.75},
        }
    )
    hardware = HardwareResult.model_validate(
        {
            "baseline": "base",
            "archs": ["naive", "imc"],
            "variants": {
                "base": {
                    "naive": {"energy_pj": 200.0, "latency_ns": 0.0, "area_um2": 0.0, "edp_pj_ns": None},
                    "imc": {"energy_pj": 400.0, "latency_ns": 10.0, "area_um2": 3e6, "edp_pj_ns": 4000.0},
                },
                "fast": {
                    "naive": {"energy_pj": 50.0, "latency_ns": 0.0, "area_um2": 0.0, "edp_pj_ns": None},
                    "imc": {"energy_pj": 300.0, "latency_ns": 4.0, "area_um2": 3.3e6, "edp_pj_ns": 1200.0},
                },
            },
        }
    )
    return evaluate, analog, trace, hardware


def test_comparison_table_from_hand_written_results_holds_hand_computed_ratios(tmp_path):
    evaluate, analog, trace, hardware = _hand_results()
    result = compare_methods(
        {"base": [], "fast": ["mint(bits=4)", "dt-snn"]},
        {"base": 4, "fast": 4},
        "base",
        evaluate=evaluate,
        analog=analog,
        trace=trace,
        hardware=hardware,
    )
    base, fast = result.variants["base"], result.variants["fast"]
    assert result.archs == ["naive", "imc"] and result.n_seeds == 3
    assert (base.timesteps, base.early_exit) == (4.0, False)  # no early exit: the variant's T
    assert (fast.timesteps, fast.early_exit) == (2.5, True)  # early exit: the average steps
    assert (fast.accuracy, fast.analog_mean, fast.analog_std) == (0.8, 0.7, 0.04)
    assert (fast.params, fast.footprint_bytes, fast.footprint_reduction_vs_fp32) == (1000, 1100, 0.75)
    assert fast.methods == ["mint(bits=4)", "dt-snn"]
    assert fast.footprint_ratio == pytest.approx(0.25)  # 1100 / 4400
    # 50 / 200, 300 / 400, 4 / 10, 3.3 / 3, 1200 / 4000
    assert fast.hardware["naive"].energy_ratio == pytest.approx(0.25)
    assert fast.hardware["imc"].energy_ratio == pytest.approx(0.75)
    assert fast.hardware["imc"].latency_ratio == pytest.approx(0.4)
    assert fast.hardware["imc"].area_ratio == pytest.approx(1.1)
    assert fast.hardware["imc"].edp_ratio == pytest.approx(0.3)
    # The naive estimate has no latency, area or EDP: no ratio rather than 0/0.
    assert fast.hardware["naive"].latency_ratio is None and fast.hardware["naive"].edp_ratio is None
    assert base.hardware["imc"].energy_ratio == 1.0
    json.dumps(result.model_dump(mode="json"), allow_nan=False)  # strict JSON
    page = methods_section(result, tmp_path)
    for cell in ("0.25×", "0.75×", "0.4×", "1.1×", "0.3×", "2.50", "70.00% ± 4.00% (3 seeds)", "75.00%"):
        assert f"<td>{cell}</td>" in page, cell
    rows = dict(result.summary_rows())
    assert "mint(bits=4) + dt-snn: accuracy 80.00%" in rows["fast"] and "imc 0.75" in rows["fast"]


def test_comparison_leaves_the_columns_of_stages_that_did_not_run_empty():
    result = compare_methods({"a": ["tt(rank=16)"]}, {"a": 8}, "a")
    row = result.variants["a"]
    assert row.timesteps == 8 and row.accuracy is None and row.footprint_bytes is None and row.hardware == {}
    assert result.archs == []


@pytest.mark.parametrize(
    "methods, pair, aspect",
    [
        ("[mint, squat]", "'mint' and 'squat'", "membrane-quant"),
        ("[weight-qat, mint]", "'weight-qat' and 'mint'", "weight-quant"),
        ("[dt-snn, dt-snn]", "'dt-snn' twice", "timesteps"),
    ],
)
def test_methods_changing_one_aspect_are_refused_in_one_line_with_exit_2(
    tmp_path, capsys, methods, pair, aspect
):
    args = [
        "run",
        "--set",
        f"output_dir={tmp_path}",
        "--set",
        f"variants=[{{name: both, methods: {methods}}}]",
    ]
    assert main([*args, "--set", "baseline=both"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"variant 'both': lists {pair}" in lines[0] and aspect in lines[0], lines[0]
    assert not any(tmp_path.iterdir())  # refused before anything ran


@pytest.mark.parametrize(
    "methods",
    [
        ["mint", "dt-snn"],
        ["dt-snn", "mint"],
        ["shared-lif", "squat"],
        ["squat", "shared-lif"],
        ["weight-qat", "squat"],
        ["tt", "mint"],
    ],
)
def test_methods_changing_different_aspects_combine(methods):
    cfg = RunConfig.model_validate({"variants": [{"name": "v", "methods": methods}], "baseline": "v"})
    assert [m.name for m in cfg.variants[0].methods] == methods


def test_a_method_declared_compatible_combines_although_it_changes_the_same_aspect():
    try:
        register_method("probe-a", changes={"weight-quant"})(lambda model: model)
        register_method("probe-b", changes={"weight-quant"}, compatible={"probe-a"})(lambda model: model)
        register_method("probe-c", changes={"weight-quant"})(lambda model: model)
        check_combination(["probe-a", "probe-b"])
        check_combination(["probe-b", "probe-a"])
        with pytest.raises(
            SpikecimError, match="lists 'probe-a' and 'probe-c', which both change the weight-quant"
        ):
            check_combination(["probe-a", "probe-c"])
        with pytest.raises(SpikecimError, match="unknown aspect 'colour'"):
            register_method("probe-d", changes={"colour"})
    finally:
        for name in ("probe-a", "probe-b", "probe-c"):
            for table in (_METHODS, _TRAIN, _CHANGES, _COMPATIBLE):
                table.pop(name, None)


def test_a_missing_required_method_option_is_named_and_an_unknown_one_listed():
    try:
        register_method("probe-k")(lambda model, k, j=1: model)
        with pytest.raises(SpikecimError) as e:
            apply_methods(torch.nn.Linear(2, 2), [MethodConfig(name="probe-k", j=2)])
        assert (
            str(e.value) == "methods.probe-k: option 'k' is required; set it in the variant's methods entry"
        )
        with pytest.raises(SpikecimError) as e:
            apply_methods(torch.nn.Linear(2, 2), [MethodConfig(name="probe-k", k=1, z=2)])
        assert str(e.value) == "methods.probe-k: unknown option 'z', allowed: k, j"
    finally:
        for table in (_METHODS, _TRAIN, _CHANGES, _COMPATIBLE):
            table.pop("probe-k", None)


def test_a_bad_method_option_names_the_variant_that_lists_it(tmp_path, capsys):
    variants = "variants=[{name: a}, {name: b, methods: [{name: mint, bits: 9}]}]"  # MINT: 2 to 8 bits
    argv = ["run", "--set", f"output_dir={tmp_path}", "--set", "model.name=mlp", "--set", variants]
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: variants.b: mint.bits: must be an integer from 2 to 8, got 9"
    )
    assert not any(tmp_path.iterdir())  # refused before anything was written


def _convnet():
    torch.manual_seed(0)
    return create_model("convnet", spiking=True, num_classes=10, in_channels=1, input_size=8, width=0.25)


def test_squat_before_shared_lif_keeps_the_quantised_membrane_as_the_other_order_does():
    sq = MethodConfig(name="squat", bits=4)
    sh = MethodConfig(name="shared-lif", layers=False, channel_groups=2)
    first, second = apply_methods(_convnet(), [sq, sh]), apply_methods(_convnet(), [sh, sq])
    for model in (first, second):
        shared = [m for m in model.modules() if isinstance(m, SharedLIF)]
        assert shared and all(m.membrane_bits == 4 and m.membrane_quant is not None for m in shared)
    x = torch.rand(4, 3, 1, 8, 8) * 2
    with torch.no_grad():
        assert torch.equal(first(x), second(x))


def test_mint_with_dt_snn_and_shared_lif_with_squat_train_trace_and_reach_the_report(tmp_path, capsys):
    variants = (
        "variants=[{name: snn}, "
        "{name: shsq, methods: [{name: shared-lif, layers: false, channel_groups: 2}, {name: squat, bits: 4}]}, "
        "{name: mintdt, methods: [{name: mint, bits: 4}, {name: dt-snn, threshold: 0.3}]}]"
    )
    args = [
        "run", "--set", f"output_dir={tmp_path}", "--epochs", "1", "--set", "data.limit=128",
        "--set", "model.kwargs={width: 0.25}", "--set", "model.neuron.reset_delay=false",
        "--set", variants, "--set", "baseline=snn", "--name", "combo",
        "--stages", "train,evaluate,trace,hardware,methods,report",
    ]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "combo"
    metrics = json.loads((run / "metrics.json").read_text())
    for v in ("shsq", "mintdt"):
        assert metrics["train"][v]["epochs"] == 1 and metrics["trace"][v]["dense_macs"] > 0
    trace, rows = metrics["trace"], metrics["methods"]["variants"]
    # Two channel groups share one membrane each, stored in 4 bits instead of 32.
    assert trace["shsq"]["membrane_bytes"] == pytest.approx(trace["snn"]["membrane_bytes"] / 2 * 4 / 32)
    exits = metrics["evaluate"]["mintdt"]["exit_steps"]
    assert rows["mintdt"]["timesteps"] == pytest.approx(sum(exits) / len(exits))
    assert rows["snn"]["timesteps"] == 4  # data.timesteps, no early exit
    html = (run / "report.html").read_text()
    assert "Methods compared" in html and (run / "plots" / "methods.png").is_file()
    assert "<td>shared-lif(layers=False, channel_groups=2) + squat(bits=4)</td>" in html
    assert "<td>mint(bits=4) + dt-snn(threshold=0.3)</td>" in html


def test_methods_example_lists_the_baseline_each_method_and_mint_with_dt_snn():
    from spikecim.config import load_config

    cfg = load_config("examples/methods.yaml")
    assert [(v.name, [m.name for m in v.methods]) for v in cfg.variants] == [
        ("snn", []),
        ("dt", ["dt-snn"]),
        ("mint4", ["mint"]),
        ("squat4", ["squat"]),
        ("shared-g2", ["shared-lif"]),
        ("tt16", ["tt"]),
        ("pruned80", ["prune"]),
        ("mint4-dt", ["mint", "dt-snn"]),
    ]
    assert cfg.baseline == "snn" and "methods" in cfg.stages and cfg.analog.n_seeds == 1
