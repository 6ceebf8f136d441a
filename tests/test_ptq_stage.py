"""The ``ptq`` run stage: every method and bit width scored, RTN's accuracy equal to a model
quantised here with torch's fake quantiser, the report section and one-line config errors."""

import copy
import json
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import group_rtn
from spikecim.config import load_config
from spikecim.errors import SpikecimError
from spikecim.pipeline.run import run, variant_input
from spikecim.train import evaluate


@pytest.fixture(scope="module")
def ptq_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ptq")
    cfg = load_config(
        None,
        [
            f"output_dir={out}",
            "name=ptq",
            "stages=[train, ptq, report]",
            "train.epochs=2",
            "data.limit=256",
            "model.kwargs={width: 0.25}",
            "variants=[{name: ann, spiking: false}]",
            "baseline=ann",
            "ptq.bits=[2, 4]",
            "ptq.steps=2",
            "ptq.thresholds=[0.5, 0.0]",
            "ptq.calibration_samples=32",
            "ptq.analog=true",
            "analog.preset=ideal",
            "analog.n_seeds=1",
        ],
    )
    return cfg, run(cfg)


def test_ptq_stage_scores_each_method_at_each_bit_width(ptq_run):
    cfg, _ = ptq_run
    metrics = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]
    runs = metrics["variants"]["ann"]["runs"]
    assert [(r["method"], r["bits"]) for r in runs] == [
        (m, b) for b in (2, 4) for m in ("rtn", "adaround", "tesseraq")
    ]
    # the convnet has 4 weight layers, one reconstruction block each
    assert all(len(r["block_mse"]) == 4 for r in runs if r["method"] != "rtn")
    assert "Post-training quantisation" in (cfg.run_dir / "report.md").read_text()


def test_ptq_rtn_accuracy_equals_the_model_quantised_with_torch_fake_quantiser(ptq_run):
    cfg, ctx = ptq_run
    metrics = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]["variants"]["ann"]
    model = ctx.models["ann"]
    inputs = variant_input(cfg, "ann", ctx.data)
    data = ctx.data
    assert (
        metrics["full_precision"]["accuracy"]
        == evaluate(model, data.x_test, data.y_test, inputs, seed=cfg.seed)["accuracy"]
    )
    for bits in (2, 4):
        q = copy.deepcopy(model)
        with torch.no_grad():
            for m in q.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in = m.weight[0].numel()
                    group = 32 if fan_in > 32 and fan_in % 32 == 0 else fan_in
                    m.weight.copy_(
                        group_rtn(m.weight.reshape(m.weight.shape[0], -1), bits, group).reshape(
                            m.weight.shape
                        )
                    )
        expected = evaluate(q, data.x_test, data.y_test, inputs, seed=cfg.seed)["accuracy"]
        rtn = next(r for r in metrics["runs"] if r["method"] == "rtn" and r["bits"] == bits)
        assert rtn["metrics"]["accuracy"] == expected


def test_ptq_settings_are_refused_with_one_line_naming_the_field():
    for override, field in (
        ("ptq.bits=[1]", "ptq.bits"),
        ("ptq.methods=[gptq]", "ptq.methods"),
        ("ptq.thresholds=[0.2, 0.5]", "ptq.thresholds"),
        ("ptq.group_size=0", "ptq.group_size"),
    ):
        with pytest.raises(SpikecimError, match=field.replace(".", r"\.")) as e:
            load_config(None, [override])
        assert "\n" not in str(e.value)


def test_ptq_bad_setting_exits_2_from_the_cli(python, subprocess_env, tmp_path):
    p = subprocess.run(
        [python, "-m", "spikecim.cli.main", "run", "--set", "ptq.bits=[9]", "--set", f"output_dir={tmp_path}"],
        capture_output=True, text=True, env=subprocess_env, check=False,
    )  # fmt: skip
    assert p.returncode == 2
    assert "ptq.bits" in p.stderr + p.stdout and "Traceback" not in p.stderr


def test_ptq_on_the_ideal_crossbar_matches_the_digital_accuracy(ptq_run):
    """The ideal crossbar computes x·Wᵀ exactly (up to float summation order), so each
    quantised copy's analog accuracy is its digital one, within one test sample."""
    cfg, ctx = ptq_run
    variant = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]["variants"]["ann"]
    one = 1 / len(ctx.data.y_test)
    assert abs(variant["analog_full_precision"]["mean"] - variant["full_precision"]["accuracy"]) <= one
    for r in variant["runs"]:
        assert abs(r["analog"]["mean"] - r["metrics"]["accuracy"]) <= one


def test_ptq_section_charts_each_method_against_the_bits_with_the_full_precision_line():
    import re

    from spikecim.pipeline.results import PtqResult, PtqRun, PtqVariant
    from spikecim.pipeline.stage_ptq import ptq_section

    runs = [
        PtqRun(method="rtn", bits=2, metrics={"perplexity": 9.5}),
        PtqRun(method="rtn", bits=4, metrics={"perplexity": 6.25}),
        PtqRun(method="tesseraq", bits=2, metrics={"perplexity": 7.0}),
        PtqRun(method="tesseraq", bits=4, metrics={"perplexity": 6.0}),
    ]
    result = PtqResult(
        metric="perplexity", methods=["rtn", "tesseraq"], bits=[2, 4],
        variants={"ann": PtqVariant(full_precision={"perplexity": 5.5}, runs=runs)},
    )  # fmt: skip
    page = ptq_section(result, Path("."))
    (spec,) = re.findall(r'data-chart="ptq"[^>]*>.*?class="chart-spec">(.*?)</script>', page)
    lines = {t["name"]: (t["x"], t["y"]) for t in json.loads(spec)["data"]}
    assert lines == {
        "ann rtn": ([2, 4], [9.5, 6.25]),
        "ann tesseraq": ([2, 4], [7.0, 6.0]),
        "ann full precision": ([2, 4], [5.5, 5.5]),
    }
    assert "lower is better" in json.loads(spec)["layout"]["yaxis"]["title"]["text"]
