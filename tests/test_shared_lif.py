"""EfficientLIF-Net shared LIF state (docs/references.md#efficientlif-net): the method
transform, its equations against hand-written loops, membrane memory against hand counts."""

import json

import pytest
import torch
from torch import nn

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.hw import estimate, load_architecture
from spikecim.methods import get_method
from spikecim.models import create_model
from spikecim.nn import LIF, Sequential, SharedLIF, SharedStage
from spikecim.nn.membrane_memory import measure
from spikecim.trace import trace

share = get_method("shared-lif")
BETA, THETA = 0.5, 1.0


def _vgg(**kw):
    torch.manual_seed(0)
    return create_model("vgg9", width=0.25, in_channels=1, input_size=8, **kw)


# VGG-9 at width 0.25 on 8x8: neuron layers 16@8x8, 16@8x8 | 32@4x4, 32@4x4 | 64@2x2 x3 | fc 256.
VGG_NEURONS = [16 * 64, 16 * 64, 32 * 16, 32 * 16, 64 * 4, 64 * 4, 64 * 4, 256]
VGG_STAGE_NEURONS = [16 * 64, 32 * 16, 64 * 4, 256]  # one membrane per stage, the fc layer alone


def test_one_group_without_layer_sharing_equals_the_plain_network_outputs_and_gradients():
    plain, shared = _vgg(), share(_vgg(), layers=False, channel_groups=1)
    assert any(isinstance(m, SharedLIF) for m in shared.modules())
    x = torch.rand(4, 3, 1, 8, 8)
    out_p, out_s = plain(x), shared(x)
    assert torch.equal(out_p, out_s)
    out_p.square().sum().backward()
    out_s.square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), shared.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


def _hand_lif(v, i):
    """Same-step subtract reset, written out: V = beta*U + I; S = V > theta; U = V - S*theta."""
    v = BETA * v + i
    s = (v > THETA).to(i.dtype)
    return s, v - s * THETA


def test_channel_groups_equal_a_hand_loop_over_groups():
    T, B, C, G = 3, 2, 6, 3
    x = torch.rand(T, B, C, 2) * 1.5
    neuron = SharedLIF(beta=BETA, threshold=THETA, reset_delay=False, channel_groups=G, backend="reference")
    spikes, state = neuron.forward_state(x)
    v, want = torch.zeros(B, C // G, 2), torch.zeros_like(x)
    for t in range(T):
        for g in range(G):  # chunk g inherits the membrane chunk g-1 left (chunk G-1 of step t-1)
            sl = slice(g * C // G, (g + 1) * C // G)
            want[t, :, sl], v = _hand_lif(v, x[t, :, sl])
    assert torch.equal(spikes, want) and torch.equal(state.v, v)
    assert want.sum() > 0 and want.sum() < want.numel()  # the example spikes, and not everywhere


@pytest.mark.parametrize("groups", [1, 2])
def test_cross_layer_sharing_equals_a_hand_loop_over_steps_layers_and_groups(groups):
    torch.manual_seed(1)
    lin = [nn.Linear(4, 4) for _ in range(3)]
    for layer in lin:
        nn.init.uniform_(layer.weight, -0.3, 1.0)  # strong enough for every layer to spike
    model = Sequential(
        lin[0],
        LIF(BETA, THETA, reset_delay=False),
        lin[1],
        LIF(BETA, THETA, reset_delay=False),
        lin[2],
        LIF(BETA, THETA, reset_delay=False),
    )
    model = share(model, layers=True, channel_groups=groups)
    assert isinstance(model[1], SharedStage)
    x = torch.rand(5, 2, 4) * 2
    with torch.no_grad():
        got = model(x)
        v, want = torch.zeros(2, 4 // groups), []
        for t in range(5):
            h, s = lin[0](x[t]), None
            for layer in range(3):  # layer l inherits the membrane layer l-1 left at step t
                if layer:
                    h = lin[layer](s)
                s = torch.empty_like(h)
                for g in range(groups):
                    sl = slice(g * 4 // groups, (g + 1) * 4 // groups)
                    s[:, sl], v = _hand_lif(v, h[:, sl])
            want.append(s)
    assert torch.equal(got, torch.stack(want))
    assert 0 < got.sum() < got.numel()


def test_membrane_memory_equals_a_hand_count():
    T, B, f32 = 4, 2, 4
    x = torch.rand(T, B, 1, 8, 8)
    kw = {"neuron_kw": {"backend": "reference"}}
    plain = measure(_vgg(**kw), x)
    assert plain.forward_bytes == B * sum(VGG_NEURONS) * f32
    # the reference loop keeps each update's membrane (the surrogate's input) for backward
    assert plain.backward_bytes == T * B * sum(VGG_NEURONS) * f32
    shared = measure(share(_vgg(**kw), layers=True, channel_groups=2), x)
    assert shared.forward_bytes == B * sum(n // 2 for n in VGG_STAGE_NEURONS) * f32
    assert shared.backward_bytes == T * B * sum(VGG_NEURONS) * f32


def test_traced_workload_counts_a_shared_membrane_once():
    model = share(_vgg(), layers=True, channel_groups=2)
    w = trace(model, [torch.rand(4, 3, 1, 8, 8)])
    spiking = [layer for layer in w.layers if layer.has_neuron]
    assert [layer.out_size for layer in spiking] == VGG_NEURONS
    groups = [layer.neuron_group for layer in spiking]
    assert groups[0] == groups[1] != groups[2] == groups[3] != groups[4] == groups[5] == groups[6]
    assert groups[7] is None
    # float32 membranes, one per stage, of half the channels
    assert w.metrics()["membrane_bytes"] == sum(n // 2 for n in VGG_STAGE_NEURONS) * 4
    arch = load_architecture("imc-rram-65nm")
    bits = min(32, arch.p.membrane_bits)
    area = estimate(w, arch).area_by_component_um2["membrane"]
    assert area == pytest.approx(sum(n // 2 for n in VGG_STAGE_NEURONS) * bits * arch.p.a_sram_bit_um2)


def test_shared_lif_refuses_in_one_line_what_it_cannot_share():
    with pytest.raises(SpikecimError, match="no two neuron layers") as e:
        share(create_model("convnet"), layers=True)
    assert "\n" not in str(e.value)
    with pytest.raises(SpikecimError, match="channel_groups: 3 does not divide the 32 channels"):
        share(create_model("convnet"), layers=False, channel_groups=3)
    with pytest.raises(SpikecimError, match="no LIF or IF neuron"):
        share(create_model("convnet", spiking=False), layers=False)
    with pytest.raises(SpikecimError, match="channel_groups: must be an integer"):
        share(create_model("convnet"), layers=False, channel_groups=0)
    with pytest.raises(SpikecimError, match="LIF and IF neurons only"):
        share(create_model("convnet", neuron="synaptic"), layers=False)


def test_spikecim_run_with_a_shared_lif_variant_runs_end_to_end(tmp_path, capsys):
    cfg = tmp_path / "shared.yaml"
    cfg.write_text(
        "name: tiny-shared\nmodel: {name: vgg5, kwargs: {width: 0.125}}\n"
        "variants:\n  - {name: snn}\n"
        "  - {name: shared, methods: [{name: shared-lif, layers: true, channel_groups: 2}]}\n"
        "baseline: snn\n"
    )
    args = ["run", str(cfg), "--set", f"output_dir={tmp_path}", "--epochs", "1", "--set", "data.limit=64"]
    assert main([*args, "--stages", "train,evaluate,trace,hardware"]) == 0, capsys.readouterr().err
    run = tmp_path / "tiny-shared"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["evaluate"]) == {"snn", "shared"}
    w = json.loads((run / "workload_shared.json").read_text())
    # vgg5 at width 0.125 on 8x8: [8, P, 16, 16, P]: the two 16-channel layers form one stage
    groups = [layer["neuron_group"] for layer in w["layers"] if layer["has_neuron"]]
    assert groups[1] == groups[2] is not None and groups[0] is None
