"""`spikecim run examples/timesteps.yaml`: the SNN at T = 2, 4, 8 beside its ANN twin, from YAML alone."""

import json

import pytest

from spikecim.cli.main import main
from spikecim.trace import Workload
from spikecim.train.checkpoint import weights_path


def test_timesteps_example_traces_each_variant_at_its_t_and_costs_it_against_the_ann(tmp_path, capsys):
    args = [
        "run",
        "examples/timesteps.yaml",
        "--set",
        f"output_dir={tmp_path}",
        "--epochs",
        "1",
        "--set",
        "data.limit=128",
        "--set",
        "model.name=mlp",
        "--stages",
        "train,evaluate,trace,hardware,report",
    ]
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "digits-timesteps"
    metrics = json.loads((run / "metrics.json").read_text())
    files = {
        "snn-t2": "workload.json",  # the first spiking variant keeps the older file name
        "snn-t4": "workload_snn-t4.json",
        "snn-t8": "workload_snn-t8.json",
        "ann": "workload_ann.json",
    }
    t_of = {"snn-t2": 2, "snn-t4": 4, "snn-t8": 8, "ann": 1}  # as examples/timesteps.yaml sets them
    per_step = Workload.load(run / "workload_ann.json").metrics()["dense_macs"]
    for v, f in files.items():
        w = Workload.load(run / f)
        assert w.timesteps == t_of[v] and w.spiking == (v != "ann"), v
        # The same network at every T: dense MACs per sample = MACs of one step × T.
        assert metrics["trace"][v]["dense_macs"] == per_step * t_of[v], v
        assert weights_path(run / "checkpoint", v).is_file()
        assert metrics["evaluate"][v]["samples"] == 450
    hw = metrics["hardware"]
    assert hw["baseline"] == "ann"
    assert set(hw["ratios"]) == {"snn-t2_over_ann", "snn-t4_over_ann", "snn-t8_over_ann"}
    for key, per_arch in hw["ratios"].items():
        v = key.removesuffix("_over_ann")
        for arch, r in per_arch.items():
            want = hw["variants"][v][arch]["energy_pj"] / hw["variants"]["ann"][arch]["energy_pj"]
            assert r["energy_pj"] == pytest.approx(want)
    html = (run / "report.html").read_text()
    assert "snn-t8_over_ann" not in html and "Ratios to the baseline ann" in html and "SNN-T8" in html
