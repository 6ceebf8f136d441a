"""trace() reads each call's time/batch layout explicitly: token inputs, step-by-step
(recurrent) graphs with B = T, and the layer feeding a recurrent edge, against hand counts."""

import nir
import numpy as np
import pytest
import torch
from torch import nn

from spikecim.interop import from_nir
from spikecim.trace import trace


class _Tokens(nn.Module):
    """A linear layer on token input [T, B, S, F] (time-major, as a sequence model calls it)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 5, bias=False)

    def forward(self, x):
        return self.fc(x)


def test_linear_on_token_input_counts_every_position():
    torch.manual_seed(0)
    T, B, S, F = 2, 3, 5, 8
    x = (torch.rand(T, B, S, F) < 0.3).float()
    w = trace(_Tokens(), [x])
    (fc,) = w.layers
    assert fc.positions == S
    assert fc.in_size == S * F and fc.out_size == S * 5
    assert fc.macs == S * F * 5  # every position is one matrix-vector product
    per_step = [(x[t] != 0).sum().item() / B for t in range(T)]
    assert fc.in_nonzero_per_step == per_step
    assert fc.acs_per_step == [n * 5 for n in per_step]  # each non-zero input feeds 5 outputs


def test_linear_on_time_folded_token_input_gives_the_same_counts():
    torch.manual_seed(1)
    T, B, S, F = 3, 2, 4, 8
    x = (torch.rand(T, B, S, F) < 0.5).float()

    class Folded(_Tokens):
        def forward(self, x):
            return self.fc(x.reshape(T * B, S, F)).reshape(T, B, S, 5)

    a, b = trace(_Tokens(), [x]).layers[0], trace(Folded(), [x]).layers[0]
    assert a.in_nonzero_per_step == b.in_nonzero_per_step and a.acs_per_step == b.acs_per_step


def _recurrent_graph(n_in: int, n_hid: int) -> nir.NIRGraph:
    rng = np.random.default_rng(0)
    ones = np.ones(n_hid)
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "w_in": nir.Linear(weight=rng.uniform(0.0, 1.0, (n_hid, n_in))),
            "lif": nir.LIF(
                tau=ones * 2e-3, r=ones * 2.0, v_leak=0 * ones, v_threshold=ones, v_reset=0 * ones
            ),
            "w_rec": nir.Linear(weight=rng.uniform(-0.5, 0.5, (n_hid, n_hid))),
            "output": nir.Output(output_type=np.array([n_hid])),
        },
        edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )


@pytest.mark.parametrize("T, B", [(3, 3), (5, 2)])
def test_recurrent_graph_is_traced_step_by_step(T, B):
    # B = T = 3 with input size 6 and hidden 3, multiples of T: the old tracer read [B, F] as
    # [T, B, F/T] and crashed; with B = 2 it counted the rest value as step 0 (shifted by one)
    model = from_nir(_recurrent_graph(6, 3))
    assert model.recurrent
    torch.manual_seed(2)
    x = (torch.rand(T, B, 6) < 0.6).float() * 2
    spikes = model(x)
    w = trace(model, [x])
    by = {layer.name.split(".")[-1]: layer for layer in w.layers}
    # w_in sees the input of its own step
    assert by["w_in"].in_nonzero_per_step == [(x[t] != 0).sum().item() / B for t in range(T)]
    assert by["w_in"].acs_per_step == [(x[t] != 0).sum().item() / B * 3 for t in range(T)]
    # w_rec feeds the recurrent edge: at step t it reads the spikes of step t (not shifted by
    # the value at rest computed before step 0)
    expected = [(spikes[t] != 0).sum().item() / B for t in range(T)]
    assert sum(expected) > 0
    assert by["w_rec"].in_nonzero_per_step == expected
