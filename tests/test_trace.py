"""trace(): recorded spikes, MACs and accumulates equal hand counts on tiny networks."""

import pytest
import torch
from torch import nn

import spikecim.nn as snn
from spikecim.errors import SpikecimError
from spikecim.trace import Workload, trace


def _tiny_linear_snn(w1=((1.0, 1.0, 0.0), (0.0, 0.0, 2.0)), neuron=None):
    """Linear(3, 2) with the weights ``w1`` -> ``neuron`` -> Linear(2, 1) of ones, no biases."""
    fc1 = nn.Linear(3, 2, bias=False)
    fc2 = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor(w1))
        fc2.weight.copy_(torch.tensor([[1.0, 1.0]]))
    neuron = neuron or snn.LIF(beta=1.0, threshold=1.5, reset="zero", reset_delay=False)
    return snn.Sequential(fc1, neuron, fc2)


def test_linear_snn_counts_match_hand_count():
    model = _tiny_linear_snn()
    # T = 2, B = 2, three input lines.
    x = torch.tensor(
        [
            [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # t=0
            [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],  # t=1
        ]
    )
    w = trace(model, [x])
    l1, l2 = w.layers
    # Inputs: t0 has 2 + 1 non-zero, t1 has 1 + 1 -> per sample 1.5 and 1.0.
    assert l1.in_nonzero_per_step == [1.5, 1.0]
    # Each input feeds 2 outputs.
    assert l1.acs_per_step == [3.0, 2.0]
    assert l1.macs == 6 and l2.macs == 2
    # Neuron, same-step zero reset, theta 1.5, beta 1 (hand simulation):
    # sample 0: I = [2, 0] at t0 -> spikes [1, 0], reset to 0; t1: I = [1, 0] -> V = [1, 0], no spike
    # sample 1: I = [0, 2] at t0 -> spikes [0, 1], reset to 0; t1: I = [0, 2] -> spikes [0, 1]
    assert l1.out_spikes_per_step == [1.0, 0.5]
    # Layer 2 sees those spikes as input: (1 + 1) / 2 at t0, (0 + 1) / 2 at t1; fan-out 1.
    assert l2.in_nonzero_per_step == [1.0, 0.5]
    assert l2.acs_per_step == [1.0, 0.5]
    assert l2.out_spikes_per_step is None and not l2.has_neuron
    assert l1.spiking_input and l1.input_bits == 1
    assert w.timesteps == 2 and w.samples == 2


def test_conv_accumulates_count_border_windows_exactly():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    model = snn.Sequential(conv, snn.IF(threshold=100.0))
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1.0  # a corner pixel: its 3x3 neighbourhood inside the map is 2x2 = 4 outputs
    x[0, 0, 0, 1, 1] = 1.0  # the centre pixel: all 9 outputs
    w = trace(model, [x])
    (layer,) = w.layers
    # Brute force: count (output position, channel) pairs whose window covers each non-zero input.
    assert layer.acs_per_step == [(4 + 9) * 2]
    assert layer.macs == 2 * 3 * 3 * 1 * 9
    assert layer.in_hw == (3, 3) and layer.out_hw == (3, 3) and layer.kernel == (3, 3)
    assert layer.out_spikes_per_step == [0.0]


def test_strided_conv_accumulates_equal_brute_force_count():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = (torch.rand(2, 4, 2, 7, 7) > 0.6).float()
    w = trace(snn.Sequential(conv, snn.LIF()), [x])
    # Brute force: run the conv with all-ones weights on each single non-zero input.
    total = 0.0
    ones = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)
    nn.init.ones_(ones.weight)
    for t in range(2):
        for b in range(4):
            for idx in x[t, b].nonzero():
                e = torch.zeros(1, 2, 7, 7)
                e[0, idx[0], idx[1], idx[2]] = 1.0
                total += float(ones(e).sum().detach()) if t == 0 else 0.0
    assert w.layers[0].acs_per_step[0] == pytest.approx(total / 4)


def test_accumulates_on_nonzero_weights_equal_a_hand_count_on_a_pruned_linear_snn():
    # column 0 holds 2 non-zero weights, column 1 none, column 2 one: sparsity 3/6
    model = _tiny_linear_snn(((1.0, 0.0, 2.0), (3.0, 0.0, 0.0)), snn.LIF(beta=1.0, threshold=100.0))
    x = torch.tensor(
        [
            [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0]],  # t=0: 2 + 0 and 2 + 1 pairs
            [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # t=1: 0 and 1 pair
        ]
    )
    (l1, l2) = trace(model, [x]).layers
    assert l1.acs_per_step == [4.0, 2.0]  # (2 + 2) · 2 / 2 samples, (1 + 1) · 2 / 2
    assert l1.acs_nonzero_weights_per_step == [2.5, 0.5]
    assert l1.weight_sparsity == 0.5  # so the estimate acs·(1 − sparsity) would be [2, 1]
    assert [l1.acs_on_nonzero_weights(t) for t in range(2)] == [2.5, 0.5]
    assert l2.acs_nonzero_weights_per_step == l2.acs_per_step == [0.0, 0.0]  # no spike reaches fc2


def test_accumulates_on_nonzero_weights_of_a_conv_count_the_nonzero_kernel_entries_a_spike_meets():
    conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0, 0, 0, :] = 0.0  # 3 zeros in channel 0 (its top row)
        conv.weight[1, 0, :, 2] = 0.0  # 3 zeros in channel 1 (its right column)
        conv.weight[1, 0, 1, 1] = 0.0  # and channel 1's centre: 7 zeros in all
    x = torch.zeros(1, 1, 1, 3, 3)
    x[..., 1, 1] = 1.0  # the centre spike lies under every kernel offset once (9 outputs)
    (layer,) = trace(snn.Sequential(conv, snn.IF(threshold=100.0)), [x]).layers
    assert layer.acs_per_step == [9 * 2]
    assert layer.acs_nonzero_weights_per_step == [18 - 7]


def test_pooling_after_neuron_sets_pooled_size():
    model = snn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), snn.LIF(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 2)
    )
    w = trace(model, [torch.rand(2, 3, 1, 4, 4)])
    assert w.layers[0].pooled_out_hw == (2, 2)
    assert w.layers[1].in_ch == 16 and w.layers[1].kind == "linear"


def test_ann_twin_relu_activity_counted_without_spikes():
    fc = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    model = snn.Sequential(fc, nn.ReLU(), nn.Linear(2, 1))
    model.spiking = False
    w = trace(model, [torch.tensor([[[0.5, 0.25]]])])
    assert not w.spiking
    assert w.layers[0].in_nonzero_per_step == [2.0] and not w.layers[0].spiking_input
    assert w.layers[0].input_bits == 8
    # ReLU output [0.5, 0] -> one non-zero input to layer 2
    assert w.layers[1].in_nonzero_per_step == [1.0]


def test_workload_json_round_trip_and_metrics(tmp_path):
    w = trace(_tiny_linear_snn(), [torch.ones(3, 1, 3)])
    path = w.save(tmp_path / "w.json")
    back = Workload.load(path)
    assert back == w
    m = back.metrics()
    assert m["dense_macs"] == (6 + 2) * 3
    # fc1's weights [[1, 1, 0], [0, 0, 2]] hold one non-zero per column: over 3 steps of
    # all-ones input it meets 3 non-zero weights per step (of 6 accumulates); fc2 has no zero
    assert m["effective_acs_on_nonzero_weights"] == 3 * 3 + sum(back.layers[1].acs_per_step)
    assert m["effective_acs"] == 6 * 3 + sum(back.layers[1].acs_per_step)
    assert m["weight_sparsity"] == 3 / 8  # fc1's three zeros of the network's 6 + 2 weights
    assert m["params"] == 6 + 2
    assert m["weight_bytes"] == 8 * 4


def test_workload_rejects_bad_schema_version_and_lengths(tmp_path):
    w = trace(_tiny_linear_snn(), [torch.ones(2, 1, 3)])
    data = w.model_dump()
    data["schema_version"] = 99
    with pytest.raises(SpikecimError, match="schema_version"):
        Workload.from_dict(data)
    data = w.model_dump()
    data["layers"][0]["acs_per_step"] = [1.0]
    with pytest.raises(SpikecimError, match="acs_per_step"):
        Workload.from_dict(data)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SpikecimError, match="not valid"):
        Workload.load(tmp_path / "bad.json")
