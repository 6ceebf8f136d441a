"""SQUAT: membrane levels and quantised states against snnTorch 1.0's `state_quant`
(`snntorch/functional/quant.py`), the LIF step against snnTorch `Leaky(state_quant=...)`,
method combinations, and a tiny run whose workloads carry the bit widths."""

import json

import pytest
import snntorch as snn
import torch
from snntorch.functional import quant as snn_quant

from spikecim.cli.main import main
from spikecim.errors import SpikecimError
from spikecim.methods import apply_methods
from spikecim.models import create_model
from spikecim.nn import LIF
from spikecim.quant.squat import snap, state_levels
from spikecim.trace import Workload
from spikecim.variants import MethodConfig


def _snntorch_levels(fn) -> torch.Tensor:
    """The level tensor inside the closure `state_quant` returns."""
    return next(c.cell_contents for c in fn.__closure__ if isinstance(c.cell_contents, torch.Tensor))


LIMITS = [(0.0, 0.2), (0.5, 0.1), (0.25, 1.0)]


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("levels", ["uniform", "threshold-centred"])
@pytest.mark.parametrize("lower,upper", LIMITS)
def test_levels_and_quantised_states_equal_snntorch_state_quant(bits, levels, lower, upper):
    threshold = 1.5
    ref = snn_quant.state_quant(
        num_bits=bits,
        uniform=levels == "uniform",
        thr_centered=True,
        threshold=threshold,
        lower_limit=lower,
        upper_limit=upper,
    )
    want = _snntorch_levels(ref)
    got = state_levels(bits, threshold, levels, lower, upper)
    assert torch.equal(got, want)
    x = torch.randn(4000, generator=torch.Generator().manual_seed(bits)) * 2.5
    x = torch.cat([x, want, (want[1:] + want[:-1]) / 2])  # the levels themselves and midpoints
    assert torch.equal(snap(x, got), ref(x))


def test_two_bit_levels_match_the_published_example():
    # docs/references.md#squat: theta = 1, 2 bits
    uni = state_levels(2, 1.0, "uniform")
    thr = state_levels(2, 1.0, "threshold-centred")
    assert uni.tolist() == pytest.approx([-1.0, -0.2667, 0.4667, 1.2], abs=1e-4)
    assert thr.tolist() == pytest.approx([-1.0, 0.802, 0.982, 1.2], abs=1e-3)
    assert 1.0 not in thr.tolist()


def test_snap_passes_the_gradient_straight_through():
    x = torch.randn(50, requires_grad=True)
    w = torch.randn(50)
    (snap(x, state_levels(3, 1.0, "threshold-centred")) * w).sum().backward()
    assert torch.equal(x.grad, w)


@pytest.mark.parametrize("levels", ["uniform", "threshold-centred"])
def test_squat_lif_equals_snntorch_leaky_with_state_quant(levels):
    beta, thr, bits = 0.8, 1.0, 3
    x = torch.rand(12, 5, 7, generator=torch.Generator().manual_seed(0)) * 0.8
    q = snn_quant.state_quant(num_bits=bits, uniform=levels == "uniform", threshold=thr)
    ref = snn.Leaky(beta=beta, threshold=thr, state_quant=q)
    mem = ref.init_leaky()
    spk_ref, mem_ref = [], []
    for t in range(x.shape[0]):
        s, mem = ref(x[t], mem)
        spk_ref.append(s)
        mem_ref.append(mem)
    model = apply_methods(
        torch.nn.Sequential(torch.nn.Linear(7, 7), LIF(beta=beta, threshold=thr, backend="reference")),
        [MethodConfig(name="squat", bits=bits, levels=levels)],
    )
    neuron = model[1]
    spk, mem = neuron.forward_with_mem(x)
    assert torch.equal(spk, torch.stack(spk_ref))
    assert torch.equal(mem, torch.stack(mem_ref))
    assert neuron.membrane_bits == bits
    assert 0 < spk.sum() < spk.numel()  # the comparison saw spikes and silence


def _convnet(**neuron_kw):
    return create_model(
        "convnet", spiking=True, num_classes=10, in_channels=1, input_size=8, width=0.25, neuron_kw=neuron_kw
    )


def test_mint_and_squat_on_one_membrane_are_refused_weight_qat_and_squat_combine():
    with pytest.raises(
        SpikecimError, match="'(mint|squat)' and '(mint|squat)', which both change the membrane-quant"
    ):
        apply_methods(_convnet(reset_delay=False), [MethodConfig(name="mint"), MethodConfig(name="squat")])
    with pytest.raises(
        SpikecimError, match="'(mint|squat)' and '(mint|squat)', which both change the membrane-quant"
    ):
        apply_methods(_convnet(reset_delay=False), [MethodConfig(name="squat"), MethodConfig(name="mint")])
    with pytest.raises(SpikecimError, match="'weight-qat' and 'mint', which both change the weight-quant"):
        apply_methods(
            _convnet(reset_delay=False), [MethodConfig(name="weight-qat"), MethodConfig(name="mint")]
        )
    m = apply_methods(
        _convnet(), [MethodConfig(name="weight-qat", bits=4), MethodConfig(name="squat", bits=2)]
    )
    w = m[3].weight
    assert len(torch.unique(w)) <= 2**4 - 1  # narrow signed 4-bit grid: at most 15 values
    assert m[5].membrane_bits == 2 and m[3].weight_bits == 4


@pytest.mark.parametrize(
    "options,field",
    [
        ({"bits": 9}, "squat.bits"),
        ({"levels": "log"}, "squat.levels"),
        ({"lower_limit": -1}, "squat.lower_limit"),
    ],
)
def test_bad_squat_options_name_the_field(options, field):
    with pytest.raises(SpikecimError, match=field):
        apply_methods(_convnet(), [MethodConfig(name="squat", **options)])


def test_tiny_run_traces_the_configured_bits_of_squat_and_mint_variants(tmp_path, capsys):
    cfg = tmp_path / "q.yaml"
    cfg.write_text(
        "name: q\n"
        "model: {name: convnet, kwargs: {width: 0.25}, neuron: {reset_delay: false}}\n"
        "variants:\n"
        "  - {name: snn}\n"
        "  - {name: sq, methods: [{name: weight-qat, bits: 4}, {name: squat, bits: 3, levels: uniform}]}\n"
        "  - {name: mint2, methods: [{name: mint, bits: 2}]}\n"
        "baseline: snn\n"
    )
    args = [
        "run",
        str(cfg),
        "--set",
        f"output_dir={tmp_path}",
        "--epochs",
        "1",
        "--set",
        "data.limit=64",
        "--stages",
        "train,evaluate,trace",
    ]
    assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "q"
    sq = Workload.load(run / "workload_sq.json")
    mint = Workload.load(run / "workload_mint2.json")
    # hand check: weight-qat 4 bits on every layer, squat 3 bits on every membrane
    assert [layer.weight_bits for layer in sq.layers] == [4, 4, 4, 4]
    assert [layer.membrane_bits for layer in sq.layers if layer.has_neuron] == [3, 3, 3]
    # mint 2 bits: every layer followed by a neuron but the first; the output layer stays 32
    assert [layer.weight_bits for layer in mint.layers] == [32, 2, 2, 32]
    assert [layer.membrane_bits for layer in mint.layers if layer.has_neuron] == [32, 2, 2]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["trace"]["mint2"]["footprint_reduction_vs_fp32"] < 0.9375
