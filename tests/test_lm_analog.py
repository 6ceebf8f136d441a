"""Language models on the crossbar: the analog stage of an lm run scores every programming seed
in perplexity, bits per byte and cross-entropy (the task's own metrics), and ``ptq.analog``
scores each quantised language model on the crossbar in perplexity.

Oracles: the perplexity written out here as exp of the mean next-byte cross-entropy
(``torch.nn.functional.cross_entropy``) over the validation windows, of the digital model or
of a crossbar programmed here by hand with the seed; Jensen's inequality for the noisy
crossbar (zero-mean noise on the logits cannot lower the expected log-sum-exp)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import group_rtn
from spikecim.analog import drift, program, to_analog
from spikecim.analog.config import load_crossbar_config
from spikecim.analog.evaluate import monte_carlo_scores
from spikecim.cli.main import main
from spikecim.config import load_config
from spikecim.errors import SpikecimError
from spikecim.pipeline.results import AnalogResult
from spikecim.pipeline.run import run
from spikecim.tasks.lm import TokenInput
from spikecim.train.seeding import seeded

TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # 900 bytes
N_SEEDS = 2


def _hand_cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean next-byte cross-entropy (nats) of ``model`` over the windows ``x[B, L]``."""
    with torch.no_grad():
        logits = model.eval()(x.t()).transpose(0, 1)  # [B, L, 256]
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y.reshape(-1)))


def _lm_run(root, model: str, extra: list[str]):
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    cfg = load_config(
        None,
        [
            f"output_dir={root}", f"name={model}", "task=lm", f"model.name={model}", "data.name=text",
            f"data.root={corpus}", "data.context=8", "model.kwargs={d_model: 16, layers: 1}", "train.epochs=1",
            "analog.preset=ideal", f"analog.n_seeds={N_SEEDS}", "analog.drift_times_s=[1.0]",
            "analog.adc_bits_sweep=[]", "analog.hwa=false", *extra,
        ],
    )  # fmt: skip
    return cfg, run(cfg)


@pytest.fixture(scope="module")
def transformer_run(tmp_path_factory):
    extra = [
        "stages=[train, evaluate, analog, ptq, report]", "ptq.analog=true", "ptq.bits=[4]", "ptq.methods=[rtn]",
        "ptq.calibration_samples=16",
    ]  # fmt: skip
    return _lm_run(tmp_path_factory.mktemp("lmanalog"), "transformer-tiny", extra)


@pytest.fixture(scope="module")
def matmulfree_run(tmp_path_factory):
    return _lm_run(tmp_path_factory.mktemp("lmanalog"), "matmulfree-tiny", ["stages=[train, analog]"])


@pytest.mark.parametrize("which", ["transformer_run", "matmulfree_run"])
def test_ideal_crossbar_perplexity_equals_exp_of_the_hand_cross_entropy_of_the_digital_model(which, request):
    cfg, ctx = request.getfixturevalue(which)
    analog = json.loads((cfg.run_dir / "metrics.json").read_text())["analog"]
    assert analog["metric"] == "perplexity"
    (variant,) = analog["variants"]
    ce = _hand_cross_entropy(ctx.models[variant], ctx.data.x_test, ctx.data.y_test)
    m = analog["variants"][variant]
    assert m["ideal"] == pytest.approx(math.exp(ce), rel=1e-5)
    assert m["analog"]["accuracies"] == pytest.approx([math.exp(ce)] * N_SEEDS, rel=1e-5)
    assert m["analog"]["mean"] == pytest.approx(math.exp(ce), rel=1e-5) and m["analog"][
        "std"
    ] == pytest.approx(0, abs=1e-6)
    per = m["metrics"]
    assert per["cross_entropy"]["accuracies"] == pytest.approx([ce] * N_SEEDS, rel=1e-5)
    assert per["bits_per_char"]["accuracies"] == pytest.approx([ce / math.log(2)] * N_SEEDS, rel=1e-5)
    assert per["bits_per_char"]["ideal"] == pytest.approx(ce / math.log(2), rel=1e-5)
    # an ideal crossbar does not drift: the sweep's point is the digital perplexity too
    assert m["drift"]["mean"] == pytest.approx([math.exp(ce)], rel=1e-5)


def test_ptq_analog_scores_each_quantised_language_model_on_the_crossbar_in_perplexity(transformer_run):
    cfg, ctx = transformer_run
    ptq = json.loads((cfg.run_dir / "metrics.json").read_text())["ptq"]
    assert ptq["metric"] == "perplexity" and ptq["n_seeds"] == N_SEEDS
    (variant,) = ptq["variants"]
    stage, model = ptq["variants"][variant], ctx.models[variant]
    fp = math.exp(_hand_cross_entropy(model, ctx.data.x_test, ctx.data.y_test))
    assert stage["analog_full_precision"]["accuracies"] == pytest.approx([fp] * N_SEEDS, rel=1e-5)
    q = copy.deepcopy(model)  # round to nearest with torch's fake quantiser, groups of 32 inputs
    with torch.no_grad():
        for layer in q.modules():
            if isinstance(layer, nn.Linear):
                fan_in = layer.weight.shape[1]
                group = 32 if fan_in > 32 and fan_in % 32 == 0 else fan_in
                layer.weight.copy_(group_rtn(layer.weight, 4, group))
    (rtn,) = stage["runs"]
    expected = math.exp(_hand_cross_entropy(q, ctx.data.x_test, ctx.data.y_test))
    assert rtn["method"] == "rtn" and rtn["analog"]["accuracies"] == pytest.approx(
        [expected] * N_SEEDS, rel=1e-5
    )


def test_report_and_summary_show_the_crossbar_perplexity_with_its_direction(transformer_run):
    cfg, _ = transformer_run
    metrics = json.loads((cfg.run_dir / "metrics.json").read_text())
    result = AnalogResult.model_validate(metrics["analog"])
    (variant,) = result.variants
    mean = result.variants[variant].analog.mean
    ((_, text),) = result.summary_rows()
    assert text.startswith("perplexity (lower is better): ideal") and f"{mean:.4g}" in text
    html = (cfg.run_dir / "report.html").read_text()
    assert "<th>analog perplexity</th>" in html and "perplexity, digital → crossbar" in html
    assert "perplexity (lower is better)" in html and f"{mean:.4g} ± " in html


def test_noisy_crossbar_raises_perplexity_and_workers_equal_the_serial_loop(transformer_run):
    _, ctx = transformer_run
    model, x, y = ctx.models["ann"], ctx.data.x_test, ctx.data.y_test
    crossbar = load_crossbar_config("pcm-aihwkit").with_updates(out_noise_std=0.5)
    seeds, t_s = [0, 1, 2], 3600.0
    kw = {"t_inference_s": t_s, "timesteps": None, "encoder": TokenInput(spiking=False), "task": "lm"}
    serial = monte_carlo_scores(to_analog(model, crossbar), x, y, seeds, **kw)
    parallel = monte_carlo_scores(to_analog(model, crossbar), x, y, seeds, workers=2, **kw)
    assert parallel == serial
    digital = math.exp(_hand_cross_entropy(model, x, y))
    assert len({s["perplexity"] for s in serial}) == len(seeds)  # each seed draws its own noise
    for seed, s in zip(seeds, serial, strict=True):
        assert s["perplexity"] > digital
        am = to_analog(model, crossbar)  # programmed by hand: every draw from the seeded state
        with seeded(seed):
            program(am, seed)
            drift(am, t_s)
            ce = _hand_cross_entropy(am, x, y)
        assert s["cross_entropy"] == pytest.approx(ce, rel=1e-6)
        assert s["perplexity"] == pytest.approx(math.exp(ce), rel=1e-6)
        assert s["bits_per_char"] == pytest.approx(ce / math.log(2), rel=1e-6)


def test_ptq_of_matmulfree_is_refused_in_one_line_when_the_config_is_read(tmp_path, capsys):
    args = ["task=lm", "model.name=matmulfree-tiny", "stages=[train, ptq]", f"output_dir={tmp_path}"]
    with pytest.raises(SpikecimError, match=r"stages: the ptq stage .*matmulfree-tiny.*ternary") as err:
        load_config(None, args)
    assert "\n" not in str(err.value)
    cli = [
        "run",
        "--task",
        "lm",
        "--model",
        "matmulfree-tiny",
        "--stages",
        "train,ptq",
        "--set",
        f"output_dir={tmp_path}",
    ]
    assert main(cli) == 2
    out = capsys.readouterr().err
    assert "stages:" in out and "Traceback" not in out and not any(tmp_path.iterdir())  # nothing trained


def test_evaluate_command_scores_a_language_model_run_on_the_crossbar_in_perplexity(transformer_run, capsys):
    cfg, ctx = transformer_run
    capsys.readouterr()
    assert main(["evaluate", str(cfg.run_dir), "--analog", "ideal", "--seeds", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["analog"]["ann"]
    expected = math.exp(_hand_cross_entropy(ctx.models["ann"], ctx.data.x_test, ctx.data.y_test))
    assert out["metric"] == "perplexity"
    assert out["ideal"] == pytest.approx(expected, rel=1e-5)
    assert out["accuracies"] == pytest.approx([expected] * 2, rel=1e-5)
