"""A NIR file stands wherever a trained model does: trace, hw estimate, evaluate."""

import json
import math

import pytest

from conftest import SHARED_DATA
from spikecim.cli.main import main
from spikecim.pipeline.sources import workload_from_model_file
from spikecim.trace import Workload

CNN = SHARED_DATA / "nir-paper" / "cnn_sinabs.nir"
pytestmark = pytest.mark.skipif(not CNN.exists(), reason=f"NIR reference files not found at {CNN.parent}")


def test_nir_cnn_traced_on_bernoulli_input_has_hand_counted_shapes_and_rate():
    w = workload_from_model_file(CNN, timesteps=5, samples=64, input_rate=0.3)
    first = w.layers[0]
    # cnn_sinabs.nir (docs/references.md#nir-paper-graphs):
    # Conv(2->16, k5, s2, p1) on [2, 34, 34] -> 16x16 outputs.
    out = (34 + 2 * 1 - 5) // 2 + 1
    assert first.out_hw == (out, out) == (16, 16)
    assert first.macs == 16 * out * out * 2 * 5 * 5
    # Input activity: Bernoulli(0.3) over 2*34*34 inputs, 64 samples; 6 sigma binomial bound.
    n = 2 * 34 * 34
    for v in first.in_nonzero_per_step:
        assert abs(v - 0.3 * n) < 6 * math.sqrt(0.3 * 0.7 * n / 64)
    assert [l.kind for l in w.layers] == ["conv2d", "conv2d", "conv2d", "linear", "linear"]
    assert (w.layers[3].in_ch, w.layers[3].out_ch, w.layers[4].out_ch) == (128, 256, 10)
    assert w.dataset == "bernoulli(0.3)"


def test_hw_estimate_accepts_a_nir_file(capsys):
    assert main(["hw", "estimate", str(CNN), "--arch", "naive-45nm", "--json", "--timesteps", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the naive estimate (docs/references.md#naive-energy) over the same (seeded) trace:
    # 0.9 pJ per accumulate where the layer reads binary spikes, 4.6 pJ per dense MAC where
    # it reads multi-valued input (the SumPool outputs of this graph).
    w = workload_from_model_file(CNN, timesteps=3)
    expected = sum(0.9 * l.total_acs if l.spiking_input else 4.6 * l.macs * 3 for l in w.layers)
    assert report["workload"] == "cnn_sinabs"
    assert report["energy_pj"] == pytest.approx(expected, rel=1e-9)


def test_trace_cli_writes_workload_for_nir_file(tmp_path):
    out = tmp_path / "w.json"
    assert main(["trace", str(CNN), "-o", str(out), "--timesteps", "2", "--samples", "8"]) == 0
    w = Workload.load(out)
    assert w.timesteps == 2 and w.samples == 8
    # the cnn_sinabs.nir layer list (docs/references.md#nir-paper-graphs), MACs per step counted
    # by hand (out_ch·H·W·in_ch·k²):
    # Conv 2->16 k5 s2 p1 on 34x34 -> 16x16; Conv 16->16 k3 p1 on 16x16; SumPool2 -> 8x8;
    # Conv 16->8 k3 p1 on 8x8; SumPool2 -> 4x4, Flatten 128; Affine 128->256; Affine 256->10.
    assert [l.macs for l in w.layers] == [
        16 * 16 * 16 * 2 * 25,
        16 * 16 * 16 * 16 * 9,
        8 * 8 * 8 * 16 * 9,
        128 * 256,
        256 * 10,
    ]
    assert all(len(l.in_nonzero_per_step) == len(l.acs_per_step) == 2 for l in w.layers)


def test_evaluate_nir_without_dataset_is_one_line_error(capsys):
    assert main(["evaluate", str(CNN)]) == 2
    assert "--dataset" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,line",
    [
        (["--variant", "snn"], "--variant: applies to a run folder only"),
        (["--dataset", "digits", "--input-rate", "0.5"], "--input-rate: applies without --dataset only"),
    ],
)
def test_hw_estimate_of_a_nir_file_refuses_options_it_cannot_use(extra, line, capsys):
    assert main(["hw", "estimate", str(CNN), *extra]) == 2
    assert capsys.readouterr().err.startswith(f"error: {line}")
