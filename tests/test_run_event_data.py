"""`spikecim run` on event data (N-MNIST frames): the SNN gets the frames time-major, the ANN
twin their mean over time, and the trace sees the frames' events as its first-layer input."""

import json

from spikecim.cli.main import main
from spikecim.trace import Workload
from test_data_nmnist import nmnist_run_args, write_nmnist


def test_nmnist_run_trains_both_variants_and_traces_the_event_counts(tmp_path, capsys):
    data = tmp_path / "N-MNIST"
    write_nmnist(data, per_digit=(3, 2))
    args = nmnist_run_args(tmp_path, data, "train,evaluate,trace,hardware")
    assert main(args) == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    # 10 digits x 2 test files each.
    assert metrics["evaluate"]["snn"]["samples"] == 20 and metrics["evaluate"]["ann"]["samples"] == 20
    snn = Workload.load(tmp_path / "ev")
    ann = Workload.load(tmp_path / "ev" / "workload_ann.json")
    assert snn.timesteps == 3 and ann.timesteps == 1
    assert snn.input_shape == [2, 34, 34]
    first = snn.layers[0]
    # Each file holds one ON and one OFF event, 300 us apart: binned into T = 3 frames they
    # land in frames 0 and 2, one event each, so the SNN's first layer reads 1, 0, 1 events
    # per sample and step, as 1-bit spikes.
    assert first.in_nonzero_per_step == [1.0, 0.0, 1.0] and first.spiking_input
    # The ANN twin reads the two events averaged over the 3 frames (value 1/3 each).
    assert ann.layers[0].in_nonzero_per_step == [2.0] and not ann.layers[0].spiking_input
    assert set(metrics["hardware"]["variants"]) == {"snn", "ann"}
