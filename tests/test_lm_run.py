"""``spikecim run --task lm`` end to end on a tiny text file, and ``spikecim generate``."""

from __future__ import annotations

import json
import math

import pytest

from spikecim.cli.main import main
from spikecim.trace import Workload

TEXT = "The quick brown fox jumps over the lazy dog. " * 20  # 900 bytes


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    args = [
        "run", "--task", "lm", "--model", "spikegpt-tiny", "--dataset", "text", "--name", "tiny",
        "--epochs", "1", "--stages", "train,evaluate,trace,hardware,report",
        "--set", f"output_dir={root}", "--set", f"data.root={corpus}", "--set", "data.context=8",
        "--set", "model.kwargs={d_model: 8, layers: 1}",
    ]  # fmt: skip
    assert main(args) == 0
    return root / "tiny"


def test_lm_run_reports_bits_per_char_as_the_cross_entropy_in_bits(lm_run):
    metrics = json.loads((lm_run / "metrics.json").read_text())
    for v in ("snn", "ann"):
        ev = metrics["evaluate"][v]
        assert ev["bits_per_char"] == pytest.approx(ev["cross_entropy"] / math.log(2))
        assert ev["perplexity"] == pytest.approx(math.exp(ev["cross_entropy"]))
        # the validation split: the last 10 % of the 900 bytes, 89 predicted, in windows of 8
        assert ev["tokens"] == (90 - 1) // 8 * 8
    html = (lm_run / "report.html").read_text()
    assert "Language model" in html and f"{metrics['evaluate']['snn']['bits_per_char']:.3f}" in html


def test_lm_workload_counts_one_step_per_token_and_the_macs_by_hand(lm_run):
    w = Workload.load(lm_run)
    assert w.timesteps == 8 and w.spiking
    d = 8  # per token: time mix k, v, r, o (4·d²); channel mix k (d·4d), v (4d·d), r (d²); head d·256
    per_token = 4 * d * d + d * 4 * d + 4 * d * d + d * d + d * 256
    assert w.metrics()["dense_macs"] == per_token * 8


def test_generate_continues_the_prompt_reproducibly(lm_run, capsys):
    capsys.readouterr()
    args = [
        "generate",
        str(lm_run),
        "--prompt",
        "The ",
        "--tokens",
        "12",
        "--temperature",
        "1.0",
        "--seed",
        "5",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert first.startswith("The ") and len(first.rstrip("\n").encode()) >= 4 + 1


def test_generate_refuses_a_classification_run_in_one_line(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("task: classification\n")
    assert main(["generate", str(tmp_path), "--prompt", "a"]) == 2
    err = capsys.readouterr().err
    assert "generate" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--dataset", "digits"], "data.name"),
        (["--set", "train.loss=per_step"], "train.loss"),
        (["--model", "convnet"], "model.name"),
    ],
)
def test_lm_run_refuses_mismatched_settings_in_one_line_before_writing(tmp_path, capsys, extra, field):
    assert main(["run", "--task", "lm", "--set", f"output_dir={tmp_path}", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {field}") or f" {field}:" in err or f"{field}:" in err
    assert "Traceback" not in err and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("cross_entropy", "shown"),
    [(5.502016, "245.19"), (349.22, "4.617e+151")],  # e^5.502016 = 245.19; e^349.22 = 4.6166e151
)
def test_the_summary_quotes_perplexity_with_two_decimals_and_a_diverged_one_in_scientific_notation(
    cross_entropy, shown
):
    from spikecim.pipeline.results import EvaluateVariant

    row = EvaluateVariant.model_validate(
        {
            "accuracy": 0.5,
            "cross_entropy": cross_entropy,
            "bits_per_char": cross_entropy / math.log(2),
            "perplexity": math.exp(cross_entropy),
        }
    )
    assert f"perplexity {shown}, " in row.summary()
