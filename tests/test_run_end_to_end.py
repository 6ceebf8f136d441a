"""`spikecim run`: the whole pipeline on digits (shortened), its run folder, and resume."""

import json
import re

import yaml

from spikecim.cli.main import main
from spikecim.config import load_config
from spikecim.trace import Workload
from spikecim.train.checkpoint import weights_path

SHORT = [
    "--set",
    "train.epochs=2",
    "--set",
    "data.limit=400",
    "--set",
    "analog.n_seeds=1",
    "--set",
    "analog.drift_times_s=[1.0,86400.0]",
    "--set",
    "analog.adc_bits_sweep=[6]",
    "--set",
    "analog.max_samples=100",
    "--set",
    "analog.hwa_epochs=1",
    "--set",
    "analog.bn_epochs=1",
]


def test_default_run_writes_the_documented_run_folder_and_resumes(tmp_path, capsys):
    args = ["run", "--set", f"output_dir={tmp_path}", "--name", "e2e", *SHORT]
    assert main(args) == 0
    run = tmp_path / "e2e"
    for name in (
        "config.yaml",
        "metrics.json",
        "workload.json",
        "workload_ann.json",
        "report.html",
        "report.md",
    ):
        assert (run / name).is_file(), name
    for v in ("snn", "ann"):
        assert (run / "checkpoint" / f"{v}.state.json").is_file(), v
        assert weights_path(run / "checkpoint", v).is_file(), v
    assert any((run / "plots").glob("*.png"))

    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) >= {"train", "evaluate", "trace", "analog", "hardware", "report"}
    # The resolved config reloads to the config the command line described.
    cfg = load_config(run / "config.yaml")
    assert cfg.train.epochs == 2 and cfg.data.limit == 400 and cfg.analog.n_seeds == 1
    assert cfg.model.name == "convnet" and cfg.data.name == "digits"
    # The traced workload is the one metrics.json summarises.
    w = Workload.load(run)
    assert w.metrics()["dense_macs"] == metrics["trace"]["snn"]["dense_macs"]
    # convnet on 8x8 digits, MACs per step counted by hand (out_ch·H·W·in_ch·k² for a conv):
    # conv 1->32: 32·64·9 = 18,432; conv 32->64: 64·64·32·9 = 1,179,648; maxpool to 4x4;
    # linear 64·16 -> 128: 131,072; linear 128 -> 10: 1,280; dense MACs = that sum at every step
    per_step = 32 * 64 * 9 + 64 * 64 * 32 * 9 + 64 * 16 * 128 + 128 * 10
    assert [l.macs for l in w.layers] == [18_432, 1_179_648, 131_072, 1_280]
    assert metrics["trace"]["snn"]["dense_macs"] == per_step * cfg.data.timesteps
    assert w.timesteps == cfg.data.timesteps and not Workload.load(run / "workload_ann.json").spiking
    # Each variant's accuracy is the share of test samples, with 450 in digits' test split.
    for v in ("snn", "ann"):
        acc = metrics["evaluate"][v]["accuracy"]
        assert metrics["evaluate"][v]["samples"] == 450
        assert abs(acc * 450 - round(acc * 450)) < 1e-9
    html = (run / "report.html").read_text()
    # plotly.js, inlined once, names URLs in strings (never fetched); the rest of the page names none
    assert html.count('<script id="plotly-js"') == 1
    outside_js = re.sub(r'<script id="plotly-js"[^>]*>.*?</script>', "", html, flags=re.DOTALL)
    assert "http://" not in outside_js and "https://" not in outside_js
    assert f"{100 * metrics['evaluate']['snn']['accuracy']:.2f}%" in html

    # Run again with the same command: training resumes from the finished checkpoint.
    before = json.loads((run / "checkpoint" / "snn.state.json").read_text())
    assert main(args) == 0
    after = json.loads((run / "checkpoint" / "snn.state.json").read_text())
    assert after["history"] == before["history"] and after["epoch"] == 2
    capsys.readouterr()

    # A subset of stages builds on the folder: evaluate alone reads the trained weights from
    # the checkpoint (same accuracy as recorded) and keeps the other stages' results.
    assert (
        main(["run", "--set", f"output_dir={tmp_path}", "--name", "e2e", *SHORT, "--stages", "evaluate"]) == 0
    )
    again = json.loads((run / "metrics.json").read_text())
    assert again["evaluate"]["snn"]["accuracy"] == metrics["evaluate"]["snn"]["accuracy"]
    assert set(again) >= {"train", "trace", "analog", "hardware", "report"}
    capsys.readouterr()

    # Other training settings are refused before config.yaml is touched.
    config_before = (run / "config.yaml").read_text()
    assert main(["run", "--set", f"output_dir={tmp_path}", "--name", "e2e", *SHORT, "--epochs", "3"]) == 2
    assert "train.epochs=2 (now 3)" in capsys.readouterr().err
    assert (run / "config.yaml").read_text() == config_before

    # The same folder with another model is refused, not mixed.
    assert main(["run", "--set", f"output_dir={tmp_path}", "--name", "e2e", "--model", "mlp", *SHORT]) == 2
    assert "another 'model'" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["name"] == "convnet"
