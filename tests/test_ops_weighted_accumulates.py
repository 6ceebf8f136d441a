"""Op.weighted_accumulates: the (non-zero input, non-zero weight) pairs an operator multiplies,
against a brute-force count over output positions, kernel offsets and channels."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from spikecim import ops


def _sparse(shape, p_zero: float, seed: int) -> torch.Tensor:
    """Random values with about ``p_zero`` of them exactly zero."""
    g = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=g) + 0.5
    return values * (torch.rand(shape, generator=g) >= p_zero)


def _linear_pairs(x: np.ndarray, w: np.ndarray) -> int:
    """x[positions, in], w[out, in]: pairs (position, output, input) with both operands non-zero."""
    count = 0
    for s in range(x.shape[0]):
        for o in range(w.shape[0]):
            for i in range(w.shape[1]):
                count += bool(x[s, i] != 0 and w[o, i] != 0)
    return count


def _conv_pairs(x: np.ndarray, w: np.ndarray, stride, padding, dilation, groups) -> int:
    """x[C, *size], w[O, C/groups, *kernel] (any number of spatial dimensions): pairs (output
    channel, output position, input channel, kernel offset) whose input lies inside the map
    (zero padding) and whose input and weight are both non-zero."""
    size, kernel = x.shape[1:], w.shape[2:]
    out = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    ]
    per_group_in, per_group_out = w.shape[1], w.shape[0] // groups
    count = 0
    for o in range(w.shape[0]):
        first_in = (o // per_group_out) * per_group_in
        for pos in itertools.product(*(range(n) for n in out)):
            for i in range(per_group_in):
                for off in itertools.product(*(range(k) for k in kernel)):
                    src = [q * s - p + f * d for q, s, p, f, d in zip(pos, stride, padding, off, dilation)]
                    if not all(0 <= q < n for q, n in zip(src, size)):
                        continue
                    count += bool(x[(first_in + i, *src)] != 0 and w[(o, i, *off)] != 0)
    return count


def _weighted(module, *inputs) -> torch.Tensor:
    return ops.find(module).weighted_accumulates(module, inputs)


def test_linear_counts_pairs_of_nonzero_input_and_weight_at_every_position():
    fc = nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        fc.weight.copy_(_sparse((4, 5), 0.5, seed=0))
    x = _sparse((3, 2, 5), 0.4, seed=1)  # 3 rows, 2 positions (tokens) each, 5 features
    got = _weighted(fc, x)
    want = [_linear_pairs(x[n].numpy(), fc.weight.detach().numpy()) for n in range(3)]
    assert got.tolist() == want
    assert sum(want) < (x != 0).sum().item() * 4  # some triggered accumulates meet a zero weight


CONV2D_CASES = {  # (in_ch, out_ch, kernel, stride, padding, dilation, groups, size)
    "stride 2, padding 1": (2, 3, (3, 3), (2, 2), (1, 1), (1, 1), 1, (7, 6)),
    "groups 2, padding 2": (4, 6, (3, 2), (1, 1), (2, 1), (1, 1), 2, (5, 5)),
    "depthwise, stride 2": (3, 3, (3, 3), (2, 1), (1, 0), (1, 1), 3, (6, 5)),
    "dilation 2": (2, 2, (2, 3), (1, 2), (1, 1), (2, 2), 1, (6, 7)),
}


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_counts_pairs_at_every_output_position_and_kernel_offset(case):
    cin, cout, k, s, p, d, g, size = CONV2D_CASES[case]
    conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=False)
    with torch.no_grad():
        conv.weight.copy_(_sparse(conv.weight.shape, 0.5, seed=2))
    x = _sparse((2, cin, *size), 0.5, seed=3)
    w = conv.weight.detach().numpy()
    assert _weighted(conv, x).tolist() == [_conv_pairs(x[n].numpy(), w, s, p, d, g) for n in range(2)]


def test_conv1d_counts_pairs_at_every_output_position_and_kernel_offset():
    conv = nn.Conv1d(4, 4, 3, stride=2, padding=1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(_sparse(conv.weight.shape, 0.5, seed=4))
    x = _sparse((3, 4, 9), 0.4, seed=5)
    w = conv.weight.detach().numpy()
    want = [_conv_pairs(x[n].numpy(), w, (2,), (1,), (1,), 2) for n in range(3)]
    assert _weighted(conv, x).tolist() == want


def test_dense_weights_give_the_accumulates_of_every_conv_and_linear():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = _sparse((2, 4, 5, 5), 0.5, seed=6)
    ones = np.ones(conv.weight.shape)
    want = [_conv_pairs(x[n].numpy(), ones, (2, 2), (1, 1), (1, 1), 2) for n in range(2)]
    assert _weighted(conv, x).tolist() == want
    fc = nn.Linear(5, 3)
    xl = _sparse((2, 5), 0.5, seed=7)
    assert _weighted(fc, xl).tolist() == [(xl[n] != 0).sum().item() * 3 for n in range(2)]


def test_matmul_of_two_activations_counts_its_accumulates():
    # b is an activation, not a static weight: the default counts every triggered accumulate,
    # nnz(a)·n, even where b is zero (a has 3 non-zero entries, b has n = 2 columns)
    a = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    b = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]]])
    assert _weighted(ops.MatMul(), a, b).tolist() == [6.0]


class _Mask(nn.Module):
    """A parametrisation that zeroes the weights where ``mask`` is 0 (as pruning methods do)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_a_parametrised_weight_is_read_as_its_effective_weight():
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    mask = (_sparse(conv.weight.shape, 0.6, seed=8) != 0).float()
    parametrize.register_parametrization(conv, "weight", _Mask(mask))
    x = _sparse((2, 2, 4, 4), 0.3, seed=9)
    want = [_conv_pairs(x[n].numpy(), mask.numpy(), (1, 1), (1, 1), (1, 1), 1) for n in range(2)]
    assert _weighted(conv, x).tolist() == want
