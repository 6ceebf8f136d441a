"""Each NIR primitive against a hand count or torch.nn.functional; nested and recurrent graphs."""

import warnings

import nir
import numpy as np
import pytest
import torch

from spikecim.interop import from_nir, to_nir


def _chain(*nodes, shape=(2,), out=None) -> nir.NIRGraph:
    return nir.NIRGraph.from_list(nir.Input(input_type=np.array(shape)), *nodes,
                                  nir.Output(output_type=np.array(out or shape)), type_check=False)  # fmt: skip


def _x(*rows) -> torch.Tensor:
    """Steps as rows, one sample: [T, 1, N]."""
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(1)


def _run(graph, x, **kw):
    model = from_nir(graph, dtype=torch.float64, **kw)
    y = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = from_nir(to_nir(model, dt=kw.get("dt", 1e-4)), dtype=torch.float64, **kw)
    torch.testing.assert_close(again(x), y, atol=1e-12, rtol=0)  # and it survives a round trip
    return y.squeeze(1).detach().numpy()


def test_delay_shifts_each_neuron_by_its_own_number_of_steps():
    y = _run(_chain(nir.Delay(delay=np.array([2e-4, 0.0]))), _x([1, 1], [2, 2], [3, 3], [4, 4]), dt=1e-4)
    np.testing.assert_array_equal(y, [[0, 1], [0, 2], [1, 3], [2, 4]])


def test_threshold_is_a_strict_step():
    y = _run(_chain(nir.Threshold(threshold=np.array([0.5, 1.0]))), _x([0.5, 1.5], [0.6, 1.0]))
    np.testing.assert_array_equal(y, [[0, 1], [1, 0]])


def test_scale_multiplies_per_neuron():
    y = _run(_chain(nir.Scale(scale=np.array([2.0, -3.0]))), _x([1, 1], [0.5, 2]))
    np.testing.assert_array_equal(y, [[2, -3], [1, -6]])


def test_integrator_i_accumulates_r_times_input():
    y = _run(_chain(nir.I(r=np.array([1.0, 0.5]))), _x([1, 2], [1, 2], [0, 2]))
    np.testing.assert_allclose(y, [[1, 1], [2, 2], [2, 3]])


def test_li_follows_forward_euler_by_hand():
    # tau = 4 dt: beta = 0.75; v = 0.75 v + 0.25 (v_leak + r I) with r = 2, v_leak = 1, from
    # rest v = 1: v1 = 0.75 + 0.25*3 = 1.5 and 0.75 + 0.25 = 1; v2 = 1.125 + 0.25 = 1.375 and 1
    node = nir.LI(tau=np.full(2, 4e-4), r=np.full(2, 2.0), v_leak=np.ones(2))
    y = _run(_chain(node), _x([1, 0], [0, 0]), dt=1e-4)
    np.testing.assert_allclose(y, [[1.5, 1.0], [1.375, 1.0]], atol=1e-12)


def test_cubali_filters_then_integrates_by_hand():
    # alpha = 0.5 (tau_syn = 2 dt), beta = 0.75; I = 0.5 I + 0.5 w_in x; v = 0.75 v + 0.25 r I
    node = nir.CubaLI(tau_syn=np.full(2, 2e-4), tau_mem=np.full(2, 4e-4), r=np.full(2, 4.0),
                      v_leak=np.zeros(2), w_in=np.full(2, 2.0))  # fmt: skip
    y = _run(_chain(node), _x([1, 1], [0, 0], [0, 0]), dt=1e-4)
    # I: 1, 0.5, 0.25; v: 1, 0.75 + 0.5 = 1.25, 0.9375 + 0.25 = 1.1875
    np.testing.assert_allclose(y[:, 0], [1.0, 1.25, 1.1875], atol=1e-12)


def test_cubalif_fires_like_the_hand_count():
    # alpha = 0.5, beta = 0.5, r = 2, w_in = 2 -> gains 1; I = 0.5 I + x, v = 0.5 v + I, fire v > 1.2
    node = nir.CubaLIF(tau_syn=np.full(1, 2e-4), tau_mem=np.full(1, 2e-4), r=np.full(1, 2.0), v_leak=np.zeros(1),
                       v_threshold=np.full(1, 1.2), v_reset=np.zeros(1), w_in=np.full(1, 2.0))  # fmt: skip
    y = _run(_chain(node, shape=(1,)), _x([1], [0], [0], [1]), dt=1e-4)
    # I: 1, 0.5, 0.25, 1.125; v: 1, 1.0, 0.75, 1.5 -> fires at the last step only
    np.testing.assert_array_equal(y[:, 0], [0, 0, 0, 1])


def test_conv1d_matches_torch_functional():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 2, 3)), rng.normal(size=3)
    node = nir.Conv1d(input_shape=8, weight=w, stride=2, padding=1, dilation=1, groups=1, bias=b)
    x = torch.tensor(rng.normal(size=(4, 5, 2, 8)))
    model = from_nir(_chain(node, shape=(2, 8), out=(3, 4)), dtype=torch.float64)
    ref = torch.nn.functional.conv1d(x.flatten(0, 1), torch.tensor(w), torch.tensor(b), 2, 1).unflatten(
        0, (4, 5)
    )
    torch.testing.assert_close(model(x), ref)


def test_sumpool_and_avgpool_match_window_sum_and_mean():
    x = torch.arange(16.0, dtype=torch.float64).reshape(1, 1, 1, 4, 4)
    k = np.array([2, 2])
    s = from_nir(_chain(nir.SumPool2d(kernel_size=k, stride=k, padding=np.zeros(2, int)), shape=(1, 4, 4), out=(1, 2, 2)),
                 dtype=torch.float64)(x)  # fmt: skip
    a = from_nir(_chain(nir.AvgPool2d(kernel_size=k, stride=k, padding=np.zeros(2, int)), shape=(1, 4, 4), out=(1, 2, 2)),
                 dtype=torch.float64)(x)  # fmt: skip
    np.testing.assert_array_equal(
        s.flatten().numpy(), [0 + 1 + 4 + 5, 2 + 3 + 6 + 7, 8 + 9 + 12 + 13, 10 + 11 + 14 + 15]
    )
    np.testing.assert_array_equal(a.flatten().numpy(), [2.5, 4.5, 10.5, 12.5])


def test_nested_subgraph_runs_inline():
    sub = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([2])), "s": nir.Scale(scale=np.array([2.0, 2.0])),
               "i": nir.I(r=np.ones(2)), "out": nir.Output(output_type=np.array([2]))},
        edges=[("in", "s"), ("s", "i"), ("i", "out")], type_check=False)  # fmt: skip
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "block": sub, "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "block"), ("block", "output")], type_check=False)  # fmt: skip
    y = _run(graph, _x([1, 0], [1, 1], [0, 1]))
    np.testing.assert_array_equal(y, [[2, 0], [4, 2], [4, 4]])  # cumulative sum of 2x


def test_recurrent_edge_carries_the_previous_step():
    # y[t] = y[t-1] + x[t] + 0.5 y[t-1]  (I with r = 1 and a Scale(0.5) loop), y[-1] = 0
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1])), "i": nir.I(r=np.ones(1)),
               "loop": nir.Scale(scale=np.array([0.5])), "output": nir.Output(output_type=np.array([1]))},
        edges=[("input", "i"), ("i", "loop"), ("loop", "i"), ("i", "output")], type_check=False)  # fmt: skip
    y = _run(graph, _x([1], [0], [2]))
    # y0 = 1; y1 = 1 + 0 + 0.5 = 1.5; y2 = 1.5 + 2 + 0.75 = 4.25
    np.testing.assert_allclose(y[:, 0], [1.0, 1.5, 4.25])


def test_two_inputs_into_one_node_are_summed():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "a": nir.Scale(scale=np.array([1.0, 2.0])),
               "b": nir.Scale(scale=np.array([10.0, 10.0])), "i": nir.I(r=np.ones(2)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "a"), ("input", "b"), ("a", "i"), ("b", "i"), ("i", "output")], type_check=False)  # fmt: skip
    y = _run(graph, _x([1, 1]))
    np.testing.assert_array_equal(y, [[11, 12]])


def _euler_lif_spikes(x: np.ndarray, tau, r, theta, dt=1e-4) -> np.ndarray:
    """Forward Euler (docs/references.md#nir-discretisation), written out here:
    v = (1 - dt/tau) v + (dt/tau) r I; fire when v > theta, then v <- 0 (v_leak = v_reset = 0)."""
    v, out = np.zeros(x.shape[1:]), []
    for i in x:
        v = (1 - dt / tau) * v + (dt / tau) * r * i
        s = (v > theta).astype(float)
        v = v * (1 - s)
        out.append(s)
    return np.stack(out)


@pytest.mark.parametrize("convention", ["euler", "snntorch"])
def test_conventions_give_the_spikes_of_a_hand_written_euler_loop(convention):
    tau, r, theta = 2.5e-3, np.array([1.0, 2.0, 5.0]), 0.1
    node = nir.LIF(tau=np.full(3, tau), r=r, v_leak=np.zeros(3),
                   v_threshold=np.full(3, theta), v_reset=np.zeros(3))  # fmt: skip
    x = torch.rand(200, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = _euler_lif_spikes(x.numpy(), tau, r, theta)
    assert ref.sum() > 0
    got = from_nir(_chain(node, shape=(3,)), dtype=torch.float64, convention=convention)(x)
    np.testing.assert_array_equal(got.numpy(), ref)
