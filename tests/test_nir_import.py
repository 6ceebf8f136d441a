"""from_nir on the NIR paper's graphs, checked against the paper's traces
(docs/references.md#nir-paper-graphs)."""

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from spikecim.interop import from_nir, to_nir, write_graph
from spikecim.interop.graph import GraphModule
from spikecim.nn import LIF

DATA = Path(__file__).parents[2] / "shared" / "data" / "nir-paper"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"NIR paper data not found at {DATA}")

# docs/references.md#nir-paper-graphs: the single LIF neuron at dt = 1e-4 spikes at these steps
PAPER_SPIKES = [460, 510, 710, 760]


def _csv(name: str) -> np.ndarray:
    return np.loadtxt(DATA / name, delimiter=",")


def _lif_trace(convention: str) -> tuple[torch.Tensor, torch.Tensor]:
    model = from_nir(DATA / "lif_norse.nir", dt=1e-4, convention=convention, dtype=torch.float64)
    x = torch.tensor(_csv("lif_norse.csv")[:, 0]).reshape(-1, 1, 1)
    affine, neuron = model[0], model[1]
    spikes, mem = neuron.forward_with_mem(affine(x))
    return spikes.flatten(), mem.flatten().detach()


def test_lif_norse_spikes_at_paper_steps_and_follows_norse_membrane():
    spikes, mem = _lif_trace("euler")
    assert torch.nonzero(spikes).flatten().tolist() == PAPER_SPIKES
    ref = _csv("lif_norse.csv")
    assert np.nonzero(ref[:, 2])[0].tolist() == PAPER_SPIKES
    np.testing.assert_allclose(mem.numpy(), ref[:, 1], atol=1e-6, rtol=0)


def test_lif_norse_model_forward_gives_the_same_spikes_as_the_neuron_trace():
    model = from_nir(DATA / "lif_norse.nir", dt=1e-4, dtype=torch.float64)
    x = torch.tensor(_csv("lif_norse.csv")[:, 0]).reshape(-1, 1, 1)
    out = model(x)
    assert out.shape == (1000, 1, 1)
    assert torch.nonzero(out.flatten()).flatten().tolist() == PAPER_SPIKES


def test_snntorch_convention_has_beta_096_theta_25_and_follows_snntorch_trace():
    model = from_nir(DATA / "lif_norse.nir", dt=1e-4, convention="snntorch", dtype=torch.float64)
    neuron = model[1]
    # the snnTorch discretisation of this neuron is beta = 0.96, theta = 2.5
    # (docs/references.md#nir-paper-graphs)
    assert neuron.beta.item() == pytest.approx(0.96, abs=1e-7)
    assert neuron.threshold.item() == pytest.approx(2.5, abs=1e-5)
    spikes, mem = _lif_trace("snntorch")
    ref = _csv("lif_snntorch.csv")
    assert torch.nonzero(spikes).flatten().tolist() == np.nonzero(ref[:, 2])[0].tolist() == PAPER_SPIKES
    np.testing.assert_allclose(mem.numpy(), ref[:, 1], atol=1e-5, rtol=0)


def test_lif_node_matches_hand_computed_euler_steps():
    # v[t] = 0.9 v[t-1] + 0.1 (v_leak + r I), tau = 10 dt, from rest v[0] = v_leak; hand counted
    # with r = 2, v_leak = 0.5
    node = nir.LIF(tau=np.array([1e-3]), r=np.array([2.0]), v_leak=np.array([0.5]),
                   v_threshold=np.array([0.9]), v_reset=np.array([0.0]))  # fmt: skip
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])), node, nir.Output(output_type=np.array([1]))
    )
    model = from_nir(graph, dt=1e-4, dtype=torch.float64)
    x = torch.tensor([1.0, 1.0, 0.0, 0.0]).reshape(4, 1, 1)
    spikes, mem = model[0].forward_with_mem(x)
    # v1 = 0.45 + 0.1*(0.5+2) = 0.7; v2 = 0.63 + 0.25 = 0.88; v3 = 0.792 + 0.05 = 0.842;
    # v4 = 0.7578 + 0.05 = 0.8078 (all below 0.9)
    np.testing.assert_allclose(mem.flatten().detach().numpy(), [0.7, 0.88, 0.842, 0.8078], atol=1e-12)
    assert spikes.sum() == 0


@pytest.mark.parametrize("v_reset", [0.0, -0.2])
def test_imported_lif_with_v_leak_starts_and_stays_at_rest(v_reset):
    """tau dv/dt = (v_leak - v) + r I with I = 0 from v(0) = v_leak: v(t) = v_leak for all t
    (the analytic solution; Norse's LIF also starts at v_leak). Forward Euler at dt = tau/10
    gives v[t] = 0.9 v[t-1] + 0.1 * 0.3 = 0.3 at every step; 0.3 < v_threshold = 1: no spike.
    Then a constant input I = 0.5 (r = 1) from rest: v[t] = v_leak + r I (1 - 0.9^t), i.e.
    0.35, 0.395, 0.4355."""
    node = nir.LIF(tau=np.array([1e-3]), r=np.array([1.0]), v_leak=np.array([0.3]),
                   v_threshold=np.array([1.0]), v_reset=np.array([v_reset]))  # fmt: skip
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])), node, nir.Output(output_type=np.array([1]))
    )
    neuron = from_nir(graph, dt=1e-4, dtype=torch.float64)[0]
    spikes, mem = neuron.forward_with_mem(torch.zeros(20, 1, 1, dtype=torch.float64))
    assert spikes.sum() == 0
    np.testing.assert_allclose(mem.flatten().numpy(), np.full(20, 0.3), rtol=0, atol=1e-12)
    spikes, mem = neuron.forward_with_mem(torch.full((3, 1, 1), 0.5, dtype=torch.float64))
    assert spikes.sum() == 0
    np.testing.assert_allclose(mem.flatten().numpy(), [0.35, 0.395, 0.4355], rtol=0, atol=1e-12)
    # snnTorch's convention counts the membrane in units of the input (v / g, g = 0.1): same spikes
    neuron = from_nir(graph, dt=1e-4, dtype=torch.float64, convention="snntorch")[0]
    spikes, mem = neuron.forward_with_mem(torch.zeros(20, 1, 1, dtype=torch.float64))
    assert spikes.sum() == 0
    np.testing.assert_allclose(mem.flatten().numpy(), np.full(20, 3.0), rtol=0, atol=1e-12)


def test_if_node_with_nonzero_reset_resets_to_v_reset():
    # v += r*I; fire when v > 1, then v <- 0.25 (hand count: 0.6, 1.2 -> fire, 0.25, 0.85)
    node = nir.IF(r=np.array([2.0]), v_threshold=np.array([1.0]), v_reset=np.array([0.25]))
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1])), node, nir.Output(output_type=np.array([1]))
    )
    model = from_nir(graph, dtype=torch.float64)
    spikes, mem = model[0].forward_with_mem(torch.tensor([0.3, 0.3, 0.0, 0.3]).reshape(4, 1, 1))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(mem.flatten().detach().numpy(), [0.6, 0.25, 0.25, 0.85], atol=1e-12)


@pytest.mark.parametrize(
    "name, in_shape, out_shape, recurrent",
    [
        ("cnn_sinabs.nir", (2, 34, 34), (10,), False),
        ("braille_noDelay_bias_zero.nir", (12,), (7,), True),
        ("braille_noDelay_noBias_subtract.nir", (12,), (7,), True),
        ("two_lif_neurons.nir", (1,), (1,), False),
    ],
)
def test_paper_graph_runs_time_major_with_right_shapes(name, in_shape, out_shape, recurrent):
    model = from_nir(DATA / name)
    assert model.input_shape == in_shape
    assert isinstance(model, GraphModule) == recurrent
    torch.manual_seed(0)
    x = (torch.rand(6, 3, *in_shape) < 0.3).float()
    y = model(x)
    assert y.shape == (6, 3, *out_shape)
    assert torch.equal(model(x), y)  # state is reset on every call


@pytest.mark.parametrize(
    "name", ["cnn_sinabs.nir", "braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]
)
def test_paper_graph_reexports_and_reimports_to_identical_outputs(name, tmp_path):
    model = from_nir(DATA / name)
    path = write_graph(to_nir(model), tmp_path / "again.nir")
    again = from_nir(path)
    torch.manual_seed(1)
    x = (torch.rand(12, 4, *model.input_shape) < 0.5).float() * 3
    y = model(x)
    assert y.sum() > 0  # the comparison is made on real spikes
    assert torch.equal(again(x), y)


def test_cnn_sinabs_matches_a_hand_written_if_simulation():
    """Independent oracle: the graph's weights run through torch.nn.functional with v += I."""
    g = nir.read(DATA / "cnn_sinabs.nir")
    n = g.nodes
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)

    def if_run(seq):  # IF, theta 1, r 1, reset to 0, same step
        v, out = torch.zeros_like(seq[0]), []
        for x in seq:
            v = v + x
            s = (v > 1.0).float()
            v = v * (1 - s)
            out.append(s)
        return torch.stack(out)

    def per_step(f, seq):
        return torch.stack([f(x) for x in seq])

    conv = lambda k: (
        lambda x: torch.nn.functional.conv2d(
            x, t(n[k].weight), t(n[k].bias), tuple(n[k].stride), tuple(n[k].padding)
        )
    )
    sumpool = lambda x: torch.nn.functional.avg_pool2d(x, 2) * 4
    torch.manual_seed(2)
    x = (torch.rand(8, 2, 2, 34, 34) < 0.2).float()
    h = if_run(per_step(conv("0"), x))
    h = if_run(per_step(conv("2"), h))
    h = if_run(per_step(conv("5"), per_step(sumpool, h)))
    h = per_step(sumpool, h).flatten(2)
    h = if_run(per_step(lambda z: z @ t(n["9"].weight).T + t(n["9"].bias), h))
    ref = if_run(per_step(lambda z: z @ t(n["11"].weight).T + t(n["11"].bias), h))
    assert torch.equal(from_nir(DATA / "cnn_sinabs.nir")(x), ref)


def test_two_lif_neurons_graph_follows_a_hand_written_euler_loop_with_leak():
    """two_lif_neurons.nir: Linear(1) -> LIF(tau 10 ms, v_leak 1.2, theta 1) -> Linear(1) ->
    LIF(tau 10 ms, v_leak 0, theta 20). Forward Euler (docs/references.md#nir-discretisation) at dt = 1e-4 written out
    here: v = (1 - dt/tau) v + (dt/tau)(v_leak + r I), fire when v > theta, then v <- v_reset.
    Each membrane starts at rest (v_leak); the leak above threshold makes the first neuron
    fire on its own."""
    g = nir.read(DATA / "two_lif_neurons.nir")
    n = g.nodes
    k = 1e-4 / float(n["lif1"].tau[0])
    torch.manual_seed(3)
    x = (torch.rand(400, 1, 1) < 0.3).double()
    v1, v2 = 1.2, 0.0  # at rest
    s1_ref, v2_ref = [], []
    for i in x.flatten().tolist():
        v1 = (1 - k) * v1 + k * (1.2 + 1.0 * float(n["linear1"].weight[0, 0]) * i)
        s1 = float(v1 > 1.0)
        v1 *= 1 - s1
        v2 = (1 - k) * v2 + k * (0.0 + float(n["linear2"].weight[0, 0]) * s1)  # v2 <= 1 < 20: never fires
        s1_ref.append(s1)
        v2_ref.append(v2)
    assert sum(s1_ref) >= 2
    model = from_nir(g, dt=1e-4, dtype=torch.float64)
    s1, _ = model[1].forward_with_mem(model[0](x))
    assert s1.flatten().tolist() == s1_ref
    s2, v2 = model[3].forward_with_mem(model[2](s1))
    assert s2.sum() == 0 and torch.equal(model(x), s2)
    np.testing.assert_allclose(v2.flatten().detach().numpy(), v2_ref, rtol=0, atol=1e-12)


def test_imported_neurons_are_spikecim_lif_modules():
    model = from_nir(DATA / "cnn_sinabs.nir")
    assert sum(isinstance(m, LIF) for m in model.modules()) == 5
