"""The linear layer whose products run on oneDNN (spikecim.nn.linear, spikecim.nn.Linear).

The oracle is torch's product in float64: the forward and both gradients must lie within
float32's summation bound ``(K+1)·u·Σ|a·b|`` of it (K terms, u = 2^-24; oneDNN adds the same
products in another order). Which path ran is read from the autograd node: ``_LinearBackward`` is spikecim's, torch's
product leaves ``AddmmBackward0`` or ``MmBackward0``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spikecim.models import create_model
from spikecim.nn import Linear
from spikecim.nn import linear as linear_module
from spikecim.nn.kernels import onednn
from spikecim.nn.linear import linear
from spikecim.nn.twins import torch_layers

pytestmark = pytest.mark.skipif(
    not onednn.available(), reason="this torch has no oneDNN GEMM, or SPIKECIM_GEMM=torch is set"
)

U = 2.0**-24
OURS = "_LinearBackward"
# (input shape, outputs, bias): 2-D and 3-D inputs (a sequence model's [B, T, d]), with and
# without bias, sizes off the vector width
CASES = [((64, 4096), 1024, True), ((3, 70, 300), 410, False), ((160, 333), 177, True)]


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _within(got: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """``got`` is a float32 sum of the products ``a @ b`` (any order) within its bound."""
    exact, magnitude = a.double() @ b.double(), a.double().abs() @ b.double().abs()
    bound = (a.shape[-1] + 1) * U * magnitude + 1e-30
    assert got.shape == exact.shape
    assert bool(((got.double() - exact).abs() <= bound).all())


@pytest.mark.parametrize("shape, outputs, bias", CASES)
def test_values_and_gradients_lie_within_float32s_bound_of_torchs_float64_product(shape, outputs, bias):
    x = _randn(*shape, seed=1).requires_grad_()
    weight = _randn(outputs, shape[-1], seed=2).requires_grad_()
    b = _randn(outputs, seed=3).requires_grad_() if bias else None
    assert linear_module.applies(x, weight, b)
    y = linear(x, weight, b)
    node = (
        y.grad_fn if len(shape) == 2 else y.grad_fn.next_functions[0][0]
    )  # 3-D: a view of the rows' product
    assert type(node).__name__ == OURS
    gy = _randn(*y.shape, seed=4)
    y.backward(gy)
    rows, g = x.detach().reshape(-1, shape[-1]), gy.reshape(-1, outputs)
    with_bias = torch.cat([rows, torch.ones(rows.shape[0], 1)], 1) if bias else rows
    full_weight = torch.cat([weight.detach(), b.detach()[:, None]], 1) if bias else weight.detach()
    _within(y.detach().reshape(-1, outputs), with_bias, full_weight.T)
    _within(x.grad.reshape(-1, shape[-1]), g, weight.detach())
    _within(weight.grad, g.T, rows)
    if bias:
        _within(b.grad[None], torch.ones(1, g.shape[0]), g)


def test_without_gradients_the_product_is_oneDNNs_alone():
    x, weight = _randn(64, 512, seed=5), _randn(256, 512, seed=6)
    with torch.no_grad():
        y = linear(x, weight.requires_grad_())
    assert y.grad_fn is None
    _within(y, x, weight.detach().T)


def test_torchs_linear_takes_small_products_other_dtypes_and_vectors():
    small_x, small_w = _randn(8, 64, seed=7), _randn(10, 64, seed=8)
    assert not linear_module.applies(small_x, small_w)  # 8 rows, 10 outputs
    x, weight = _randn(32, 512, seed=9), _randn(512, 512, seed=10)
    assert x.shape[0] * 512 * 512 >= linear_module.MIN_MACS and linear_module.applies(x, weight)
    assert not linear_module.applies(x.double(), weight.double())
    assert not linear_module.applies(x[0], weight)  # a single vector
    tiny = _randn(32, 16, seed=11)
    assert 32 * 16 * 512 < linear_module.MIN_MACS and not linear_module.applies(
        tiny, _randn(512, 16, seed=12)
    )
    for a, w in ((small_x, small_w), (x.double(), weight.double()), (x[0], weight)):
        y = linear(a, w.requires_grad_())
        assert type(y.grad_fn).__name__ != OURS
        assert torch.equal(y, F.linear(a, w))


def test_op_counters_see_torchs_linear():
    x, weight = _randn(64, 512, seed=13), _randn(256, 512, seed=14).requires_grad_()
    with FlopCounterMode(display=False) as counter:
        y = linear(x, weight)
    assert type(y.grad_fn).__name__ != OURS
    assert counter.get_total_flops() == 2 * 64 * 512 * 256  # 2·M·K·N


def test_a_jit_trace_records_torchs_linear():
    layer = Linear(512, 256)
    x = _randn(64, 512, seed=15)
    traced = torch.jit.trace(layer, x)
    assert "aten::linear" in str(traced.graph)
    torch.testing.assert_close(traced(x), F.linear(x, layer.weight, layer.bias), rtol=0, atol=0)


def test_spikecim_gemm_torch_turns_it_off(monkeypatch):
    x, weight = _randn(64, 512, seed=16), _randn(256, 512, seed=17).requires_grad_()
    assert type(linear(x, weight).grad_fn).__name__ == OURS
    monkeypatch.setenv("SPIKECIM_GEMM", "torch")
    onednn.available.cache_clear()
    try:
        assert not linear_module.applies(x, weight)
        assert torch.equal(linear(x, weight), F.linear(x, weight))
    finally:
        monkeypatch.delenv("SPIKECIM_GEMM")
        onednn.available.cache_clear()


def test_the_layer_is_nn_linear_and_matches_it():
    ours, theirs = Linear(512, 256), nn.Linear(512, 256)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.Linear) and ours.state_dict().keys() == theirs.state_dict().keys()
    x = _randn(64, 512, seed=18)
    y = ours(x)
    assert type(y.grad_fn).__name__ == OURS
    torch.testing.assert_close(y, theirs(x), rtol=1e-5, atol=1e-5)


def test_built_in_models_use_the_layer_and_peers_get_torchs():
    for model in (
        create_model("vgg9", spiking=True, width=0.25),
        create_model("mlp"),
        create_model("convnet"),
    ):
        layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert layers and all(type(m) is Linear for m in layers)
        peer = torch_layers(copy.deepcopy(model))
        assert all(type(m) is nn.Linear for m in peer.modules() if isinstance(m, nn.Linear))
        assert repr(peer) == repr(model)


def test_under_cpu_autocast_torchs_linear_runs_in_its_precision():
    layer, x = Linear(512, 256), _randn(64, 512, seed=19)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not linear_module.applies(x, layer.weight, layer.bias)
        y, want = layer(x), F.linear(x, layer.weight, layer.bias)
    assert y.dtype == want.dtype == torch.bfloat16 and torch.equal(y, want)


def test_a_second_derivative_flows_through_the_backward():
    """With ``create_graph=True`` the backward builds a graph (torch's products), so a
    gradient of a gradient exists: for L = Σ c∘linear(x, W), ∂L/∂x = c·W, and the gradient of
    Σ d∘(c·W) with respect to W is cᵀ·d, whatever x and W are."""
    x, weight = _randn(64, 512, seed=21).requires_grad_(), _randn(256, 512, seed=22).requires_grad_()
    c, d = _randn(64, 256, seed=23), _randn(64, 512, seed=24)
    y = linear(x, weight)
    assert type(y.grad_fn).__name__ == OURS
    (gx,) = torch.autograd.grad((y * c).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad((gx * d).sum(), weight)
    _within(second, c.T, d)
