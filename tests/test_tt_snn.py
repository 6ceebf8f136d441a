"""TT-SNN tensor-train convolutions: TT-SVD, the STT/PTT/HTT pipelines, the ``tt`` method,
what the tracer, ``to_analog``, the hardware models and NIR see (docs/references.md#tt-snn)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from spikecim import ops
from spikecim.analog import analog_layers, to_analog
from spikecim.analog.layers import AnalogConv2d
from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.hw import estimate
from spikecim.interop import from_nir, to_nir
from spikecim.methods import get_method, list_methods
from spikecim.models import create_model
from spikecim.nn import LIF, Conv2d, Sequential, TTConv2d
from spikecim.nn.tt import full_rank, tt_svd
from spikecim.trace import Workload, trace

CORES = ("g1", "g2", "g3", "g4")


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize(
    "c_in, c_out, stride, padding", [(3, 5, 1, 1), (4, 8, 2, 1), (6, 3, 2, 0), (5, 7, 1, 2), (8, 8, 3, 1)]
)
def test_full_rank_tt_svd_in_stt_mode_reproduces_the_dense_convolution(c_in, c_out, stride, padding):
    torch.manual_seed(c_in + c_out)
    conv = nn.Conv2d(c_in, c_out, 3, stride, padding, bias=True)
    # the largest rank of the three unfoldings [C_in, 9 C_out], [3 C_in, 3 C_out], [9 C_in, C_out]
    r = max(min(c_in, 9 * c_out), min(3 * c_in, 3 * c_out), min(9 * c_in, c_out))
    assert full_rank(c_in, c_out, (3, 3)) == r
    layer = TTConv2d.from_conv(conv, r, "stt")
    x = torch.randn(2, 3, c_in, 9, 10)
    want = F.conv2d(x.flatten(0, 1), conv.weight, conv.bias, stride, padding).unflatten(0, (2, 3))
    got = layer(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_tt_svd_cores_contract_back_to_the_weight_and_a_lower_rank_loses_it():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
    r = full_rank(4, 6, (3, 3))  # min(4, 54), min(12, 18), min(36, 6) -> 12
    assert r == 12
    g1, g2, g3, g4 = tt_svd(w, r)
    assert [tuple(g.shape) for g in (g1, g2, g3, g4)] == [(4, r), (r, 3, r), (r, 3, r), (r, 6)]
    back = torch.einsum("ip,paq,qbu,uo->oiab", g1, g2, g3, g4)
    torch.testing.assert_close(back, w, rtol=0, atol=1e-10)
    g1, g2, g3, g4 = tt_svd(w, r - 1)
    assert (torch.einsum("ip,paq,qbu,uo->oiab", g1, g2, g3, g4) - w).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["stt", "ptt", "htt"])
def test_parameters_and_macs_equal_the_core_formula(mode):
    c_in, c_out, k, r, s, H, W, T = 6, 10, 3, 4, 2, 9, 8, 5
    layer = TTConv2d(c_in, c_out, k, s, 1, bias=True, rank=r, mode=mode)
    params = c_in * r + r * r * k + r * r * k + r * c_out + c_out  # G1, G2, G3, G4, bias
    assert sum(p.numel() for p in layer.parameters()) == params
    ho, wo = _out(H, k, s, 1), _out(W, k, s, 1)
    if mode == "stt":  # g2 strides rows only, g3 columns
        per_step = {"g1": r * c_in * H * W, "g2": r * r * k * ho * W, "g3": r * r * k * ho * wo,
                    "g4": c_out * r * ho * wo}  # fmt: skip
        want = {c: v * T for c, v in per_step.items()}
    else:
        mid = T if mode == "ptt" else math.ceil(T / 2)
        want = {"g1": r * c_in * H * W * T, "g2": r * r * k * ho * wo * mid, "g3": r * r * k * ho * wo * mid,
                "g4": c_out * r * ho * wo * T}  # fmt: skip
    assert layer.core_macs((H, W), T) == want
    dense = c_out * c_in * k * k * ho * wo * T
    assert sum(want.values()) < dense


def _core(layer, name, x):
    c = getattr(layer, name)
    return F.conv2d(x, c.weight, c.bias, c.stride, c.padding)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("steps, ptt_steps", [(3, [0, 1]), (4, [0, 1]), (5, [0, 1, 2]), (1, [0])])
def test_htt_runs_ptt_on_the_first_ceil_half_steps_and_g4_g1_on_the_rest(steps, ptt_steps, stride):
    torch.manual_seed(steps)
    layer = TTConv2d(3, 5, 3, stride, 1, bias=True, rank=4, mode="htt")
    x = torch.randn(steps, 2, 3, 7, 7)
    out = layer(x)
    for t in range(steps):
        h = _core(layer, "g1", x[t])
        if t in ptt_steps:
            # k x 1 and 1 x k cores, both strided (s, s), padded (1, 0) and (0, 1): the dense shape
            mid = (
                F.conv2d(h, layer.g2.weight, None, stride, (1, 0))
                + F.conv2d(h, layer.g3.weight, None, stride, (0, 1))
            ) / 2
        else:
            mid = h[:, :, ::stride, ::stride]  # 'same' padding: the window centres are rows/cols s·i
        want = _core(layer, "g4", mid)
        assert want.shape[-1] == _out(7, 3, stride, 1)
        torch.testing.assert_close(out[t], want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("padding", [1, 2])
def test_stt_and_ptt_equal_their_written_out_compositions(padding):
    torch.manual_seed(padding)
    x = torch.randn(2, 3, 4, 9, 8)
    stt = TTConv2d(4, 6, 3, 2, padding, bias=False, rank=3, mode="stt")
    h = F.conv2d(x.flatten(0, 1), stt.g1.weight)
    h = F.conv2d(h, stt.g2.weight, None, (2, 1), (padding, 0))
    h = F.conv2d(h, stt.g3.weight, None, (1, 2), (0, padding))
    torch.testing.assert_close(stt(x), F.conv2d(h, stt.g4.weight).unflatten(0, (2, 3)), rtol=0, atol=1e-5)
    ptt = TTConv2d(4, 6, 3, 2, padding, bias=False, rank=3, mode="ptt")
    h = F.conv2d(x.flatten(0, 1), ptt.g1.weight)
    c = padding - 1  # the centre column/row of the 3-wide window, minus the padding
    a = F.conv2d(h, ptt.g2.weight, None, 2, (padding, c))
    b = F.conv2d(h, ptt.g3.weight, None, 2, (c, padding))
    want = F.conv2d((a + b) / 2, ptt.g4.weight).unflatten(0, (2, 3))
    assert want.shape[-2:] == (_out(9, 3, 2, padding), _out(8, 3, 2, padding))
    torch.testing.assert_close(ptt(x), want, rtol=0, atol=1e-5)


def test_ptt_refuses_a_padding_smaller_than_the_half_window_and_htt_folded_input():
    with pytest.raises(SpikecimError, match="mode: ptt needs odd kernels and padding >= \\(k-1\\)/2"):
        TTConv2d(3, 4, 3, 1, 0, rank=2, mode="ptt")
    with pytest.raises(SpikecimError, match="htt needs the step index"):
        TTConv2d(3, 4, 3, 1, 1, rank=2, mode="htt")(torch.randn(2, 3, 5, 5))


def _tt_convnet(mode, rank=4, **kw):
    model = create_model("convnet", spiking=True, width=0.25)  # conv 1->8, conv 8->16 on 8x8
    return get_method("tt")(model, rank=rank, mode=mode, **kw)


@pytest.mark.parametrize("mode", ["stt", "htt"])
def test_traced_workload_has_one_entry_per_core_with_hand_counted_macs(mode):
    torch.manual_seed(0)
    model = _tt_convnet(mode)
    T, B = 4, 3
    w = trace(model, [(torch.rand(T, B, 1, 8, 8) < 0.5).float()])
    names = [layer.name for layer in w.layers]
    assert names == ["0", "3.g1", "3.g2", "3.g3", "3.g4", "8", "10"]
    r, c_in, c_out, H = 4, 8, 16, 8  # 'same' padding, stride 1: every core keeps 8 x 8
    macs = {
        "3.g1": r * c_in * H * H,
        "3.g2": r * r * 3 * H * H,
        "3.g3": r * r * 3 * H * H,
        "3.g4": c_out * r * H * H,
    }
    by_name = {layer.name: layer for layer in w.layers}
    for name, m in macs.items():
        assert by_name[name].macs == m, name
    assert w.metrics()["params"] == 1 * 8 * 9 + (c_in * r + 2 * r * r * 3 + r * c_out) + (256 * 32 + 32) + (
        32 * 10 + 10
    )
    # the cores chain without neurons between them; the LIF after the layer belongs to g4
    assert [by_name[n].has_neuron for n in ("3.g1", "3.g2", "3.g3", "3.g4")] == [False, False, False, True]


@pytest.mark.parametrize("mode", ["stt", "htt"])
def test_traced_accumulates_of_each_core_equal_the_hand_count_on_dense_input(mode):
    torch.manual_seed(0)
    r, c_in, c_out, H, W, T = 4, 8, 16, 6, 5, 4
    model = Sequential(TTConv2d(c_in, c_out, 3, 1, 1, rank=r, mode=mode), LIF())
    w = trace(model, [torch.rand(T, 2, c_in, H, W) + 0.1])  # every input (and g1 output) non-zero
    by_name = {layer.name: layer for layer in w.layers}
    # per step: 1x1 cores every position; the 3-tap cores 3 taps inside, 2 on the padded border
    acs = {"0.g1": r * c_in * H * W, "0.g2": r * r * W * (3 * H - 2), "0.g3": r * r * H * (3 * W - 2),
           "0.g4": c_out * r * H * W}  # fmt: skip
    runs = {"0.g1": range(T), "0.g4": range(T), "0.g2": range(T), "0.g3": range(T)}
    if mode == "htt":
        runs["0.g2"] = runs["0.g3"] = range(math.ceil(T / 2))
    for name, a in acs.items():
        assert by_name[name].acs_per_step == [a if t in runs[name] else 0 for t in range(T)], name


def test_every_core_is_a_conv2d_operator_to_analog_and_the_hardware_models():
    torch.manual_seed(0)
    model = _tt_convnet("ptt").eval()
    layer = model[3]
    assert all(ops.find(getattr(layer, c)).kind == "conv2d" for c in CORES)
    am = to_analog(model, {"preset": "ideal"})
    assert all(isinstance(getattr(am[3], c), AnalogConv2d) for c in CORES)
    assert len(analog_layers(am)) == 1 + 4 + 2
    x = 2 * torch.rand(3, 2, 1, 8, 8)
    torch.testing.assert_close(am(x), model(x), rtol=0, atol=1e-4)
    w = trace(model, [(torch.rand(4, 2, 1, 8, 8) < 0.5).float()])
    for arch in ("imc-rram-65nm", "systolic-sata", "naive-45nm"):
        report = estimate(w, arch)
        costed = {c.name: c for c in report.layers}
        for c in CORES:
            assert sum(costed[f"3.{c}"].energy_pj.values()) > 0, (arch, c)


def test_nir_export_writes_stt_and_ptt_cores_as_conv2d_nodes_and_refuses_htt():
    torch.manual_seed(0)
    for mode in ("stt", "ptt"):
        model = Sequential(TTConv2d(2, 5, 3, 2, 1, bias=True, rank=3, mode=mode), nn.BatchNorm2d(5)).eval()
        with torch.no_grad():
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        g = to_nir(model, input_shape=(2, 7, 7))
        assert {"0.g1", "0.g2", "0.g3", "0"} <= set(g.nodes)
        assert all(type(g.nodes[n]).__name__ == "Conv2d" for n in ("0.g1", "0.g2", "0.g3", "0"))
        x = torch.randn(2, 3, 2, 7, 7)
        with torch.no_grad():
            torch.testing.assert_close(from_nir(g)(x), model(x), rtol=0, atol=1e-5)
    htt = Sequential(TTConv2d(2, 5, 3, 1, 1, rank=3, mode="htt"))
    with pytest.raises(SpikecimError, match="mode htt switches cores by step"):
        to_nir(htt, input_shape=(2, 7, 7))


def test_method_keeps_the_first_conv_and_from_trained_weights_reproduce_the_dense_model(tmp_path):
    assert "tt" in list_methods()
    torch.manual_seed(0)
    dense = create_model("convnet", spiking=True, width=0.25).eval()
    path = tmp_path / "dense.safetensors"
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(path))
    torch.manual_seed(1)  # another initialisation: only the file can make it equal
    model = create_model("convnet", spiking=True, width=0.25)
    model = get_method("tt")(
        model, rank=full_rank(8, 16, (3, 3)), mode="stt", from_trained=True, weights=str(path)
    )
    model.eval()
    assert type(model[0]) in (nn.Conv2d, Conv2d) and isinstance(model[3], TTConv2d)
    x = 3 * torch.rand(4, 2, 1, 8, 8)
    torch.testing.assert_close(model(x), dense(x), rtol=0, atol=1e-4)
    assert isinstance(get_method("tt")(create_model("convnet", width=0.25), rank=2, first=True)[0], TTConv2d)


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "methods.tt.rank: Field required"),
        ({"rank": 0}, "methods.tt.rank: Input should be greater than 0"),
        ({"rank": 4, "mode": "xtt"}, "methods.tt.mode: Input should be 'stt', 'ptt' or 'htt'"),
        ({"rank": 4, "ranks": 3}, "methods.tt.ranks: unknown key"),
        ({"rank": 4, "weights": "x.safetensors"}, "methods.tt.weights: only read with from_trained: true"),
    ],
)
def test_method_options_are_checked_with_one_line_errors(options, message):
    with pytest.raises(SpikecimError, match=message.replace("(", "\\(").replace(")", "\\)")):
        get_method("tt")(create_model("convnet", width=0.25), **options)
    with pytest.raises(SpikecimError, match="no k x k Conv2d"):
        get_method("tt")(create_model("mlp"), rank=2)


def test_run_with_a_tt_variant_traces_the_cores_and_costs_them_against_the_dense_snn(tmp_path, capsys):
    config = tmp_path / "tt.yaml"
    config.write_text(
        "name: tt\nvariants:\n  - {name: snn}\n  - {name: snn-tt, methods: [{name: tt, rank: 2, mode: htt}]}\n"
        "baseline: snn\nmodel: {name: convnet, kwargs: {width: 0.25}}\n"
    )
    args = ["run", str(config), "--set", f"output_dir={tmp_path}", "--epochs", "1", "--set", "data.limit=64",
            "--stages", "train,evaluate,trace,hardware"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "tt"
    w = Workload.load(run / "workload_snn-tt.json")
    assert [layer.name for layer in w.layers][1:5] == ["3.g1", "3.g2", "3.g3", "3.g4"]
    metrics = json.loads((run / "metrics.json").read_text())
    dense_params, tt_params = metrics["trace"]["snn"]["params"], metrics["trace"]["snn-tt"]["params"]
    assert dense_params - tt_params == 8 * 16 * 9 - (8 * 2 + 2 * 2 * 3 * 2 + 2 * 16)
    assert "snn-tt_over_snn" in metrics["hardware"]["ratios"]
