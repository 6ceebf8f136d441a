"""trace() records a bare torch.matmul / @ / torch.bmm of two activations as a matmul entry,
with hand-counted operations; a matmul with a parameter (or anything computed from
parameters only) is not a matmul of two activations."""

import pytest
import torch
from torch import nn

from spikecim import ops
from spikecim.errors import SpikecimError
from spikecim.trace import trace


class _Attention(nn.Module):
    """Attention written with bare matmuls, no MatMul module."""

    def __init__(self, d: int):
        super().__init__()
        self.v = nn.Linear(d, d, bias=False)
        self.proj = nn.Parameter(torch.ones(d, 2))

    def forward(self, x):  # x[T, B, S, D] spikes
        q, k = x, x.flip(-1)
        attn = torch.matmul(q, k.transpose(-1, -2))  # [T, B, S, S]
        out = attn @ self.v(x)  # [T, B, S, D]
        # an activation times a parameter, or a matrix computed from parameters and constants
        # only: linear layers written by hand, not matmuls of two activations
        return out @ self.proj + out @ (2 * self.proj.t().t()) + out @ torch.ones(out.shape[-1], 2)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = _Attention(3)

    def forward(self, x):
        return self.attn(x)


def _x():
    # T = 2, B = 1, S = 2 tokens, D = 3 features
    return torch.tensor(
        [
            [[[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]],  # t0
            [[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]],  # t1
        ]
    )


def test_bare_attention_matmuls_are_two_matmul_entries_with_hand_counts():
    w = trace(_Net(), [_x()])
    assert [(x.name, x.kind) for x in w.layers] == [
        ("attn.matmul0", "matmul"),  # q @ kᵀ runs first
        ("attn.v", "linear"),
        ("attn.matmul1", "matmul"),  # attn @ v, after the layer that made v
    ]
    qk, _, av = w.layers
    # q·kᵀ: [S=2, D=3] @ [3, 2]. k = q flipped: t0 k = [[1,1,1],[1,0,0]], t1 k = [[1,0,0],[0,0,0]]
    assert (qk.batch, qk.m, qk.k, qk.n) == (1, 2, 3, 2) and qk.macs == 2 * 3 * 2
    assert qk.in_nonzero_per_step == [4.0, 1.0]  # non-zero entries of q
    assert qk.acs_per_step == [4.0 * 2, 1.0 * 2]  # each meets one row of kᵀ, 2 outputs
    assert qk.input_bits == 1 and qk.operands["b"].kind == "dynamic" and qk.operands["b"].bits == 1
    # attn at t0: rows [1,1,1]·k = [3, 1] and [0,0,1]·k = [1, 0]; at t1 all zero
    assert (av.batch, av.m, av.k, av.n) == (1, 2, 2, 3) and av.macs == 2 * 2 * 3
    assert av.in_nonzero_per_step == [3.0, 0.0]
    assert av.acs_per_step == [3.0 * 3, 0.0]
    # attn holds a 3 and v is real-valued: both at the assumed 8-bit activation precision
    assert av.input_bits == 8 and not av.spiking_input and av.operands["b"].bits == 8
    assert not qk.has_neuron and not av.has_neuron  # a bare matmul's neuron is not identified


def test_bare_bmm_on_time_folded_operands_is_a_matmul_entry():
    class Gram(nn.Module):
        def forward(self, x):  # x[T, B, S, D]
            a = x.flatten(0, 1)  # [T·B, S, D]
            return torch.bmm(a, a.transpose(1, 2)) + a.bmm(a.transpose(1, 2))

    w = trace(Gram(), [_x()])
    assert [x.name for x in w.layers] == ["matmul0", "matmul1"]  # two call sites of the root
    for e in w.layers:
        assert (e.m, e.k, e.n) == (2, 3, 2)
        assert e.acs_per_step == [4.0 * 2, 1.0 * 2]


def test_the_matmul_module_is_recorded_once_not_again_as_a_bare_matmul():
    class WithModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.mm = ops.MatMul()

        def forward(self, x):
            return self.mm(x, x.transpose(-1, -2))

    (entry,) = trace(WithModule(), [_x()]).layers
    assert entry.name == "mm" and entry.acs_per_step == [4.0 * 2, 1.0 * 2]


def test_a_bare_matmul_whose_operands_lack_the_batch_dimensions_is_one_line_naming_it():
    class Broadcast(nn.Module):
        def forward(self, x):
            return x @ x[0, 0].transpose(0, 1)  # [T, B, S, D] @ [D, S]: b is not per sample

    with pytest.raises(SpikecimError) as e:
        trace(Broadcast(), [_x()])
    msg = str(e.value)
    assert "\n" not in msg and "'matmul0'" in msg and "test_trace_bare_matmul.py" in msg
    assert "[2, 1, 2, 3] and [3, 2]" in msg


def test_a_bare_matmul_run_twice_over_all_steps_is_one_line_not_a_double_count():
    class Heads(nn.Module):
        def forward(self, x):
            return [x @ x.transpose(-1, -2) for _ in range(2)]  # one call site, two products

    with pytest.raises(SpikecimError, match=r"'matmul0' .* ran again over all 2 steps") as e:
        trace(Heads(), [_x()])
    assert "\n" not in str(e.value)
