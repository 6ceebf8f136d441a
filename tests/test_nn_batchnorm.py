"""spikecim's CPU BatchNorm training forward (spikecim.nn.kernels.bn_cpu) and the BatchNorm
of the built-in models. The oracle is torch's own ``F.batch_norm`` / ``nn.BatchNorm2d``: in
float32 the output, the running statistics and every gradient equal torch's bit for bit (the
kernel runs torch's arithmetic, fused multiply-adds included where the CPU has them); in
float64, where the double sums themselves are the result, to a few units of the last place."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from spikecim.models import create_model
from spikecim.nn import BatchNorm2d
from spikecim.nn.kernels import bn_cpu
from spikecim.nn.twins import torch_layers

pytestmark = pytest.mark.skipif(
    not bn_cpu.available(torch.float64), reason="no C compiler: the kernel is not built"
)

SHAPES = [(4, 3, 5, 5), (64, 16, 8, 8), (2, 7, 3, 9), (16, 32, 32, 32), (3, 2, 1, 1), (5, 4, 1, 17)]


def _run(fn, x, stats, params, gy, momentum):
    x = x.clone().requires_grad_()
    params = [p.clone().requires_grad_() if p is not None else None for p in params]
    stats = [s.clone() if s is not None else None for s in stats]
    y = fn(x, *stats, *params, True, momentum, 1e-5)
    y.backward(gy)
    grads = [x.grad] + [p.grad for p in params if p is not None]
    return y.detach(), stats, grads, y.grad_fn


def _case(shape, dtype, seed, affine=True, tracked=True):
    g = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = torch.randn(shape, generator=g, dtype=dtype) * 3 + 1.5
    params = (
        (torch.randn(C, generator=g, dtype=dtype), torch.randn(C, generator=g, dtype=dtype))
        if affine
        else (None, None)
    )
    stats = (
        (torch.randn(C, generator=g, dtype=dtype), torch.rand(C, generator=g, dtype=dtype) + 0.5)
        if tracked
        else (None, None)
    )
    gy = torch.randn(shape, generator=g, dtype=dtype)
    return x, stats, params, gy


@pytest.mark.parametrize("momentum", [0.1, 0.37])
@pytest.mark.parametrize("shape", SHAPES)
def test_float32_training_forward_equals_torch_bit_for_bit(shape, momentum):
    x, stats, params, gy = _case(shape, torch.float32, seed=shape[0] * 31 + shape[-1])
    y, s, grads, fn = _run(bn_cpu.batch_norm, x, stats, params, gy, momentum)
    y_ref, s_ref, grads_ref, fn_ref = _run(F.batch_norm, x, stats, params, gy, momentum)
    assert type(fn).__name__ != type(fn_ref).__name__  # the kernel ran
    assert torch.equal(y, y_ref)
    assert all(torch.equal(a, b) for a, b in zip(s, s_ref, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_ref, strict=True))


@pytest.mark.parametrize(("affine", "tracked"), [(False, True), (True, False), (False, False)])
def test_without_affine_parameters_or_running_statistics_equals_torch(affine, tracked):
    x, stats, params, gy = _case((8, 6, 4, 4), torch.float32, seed=5, affine=affine, tracked=tracked)
    y, s, grads, _ = _run(bn_cpu.batch_norm, x, stats, params, gy, 0.1)
    y_ref, s_ref, grads_ref, _ = _run(F.batch_norm, x, stats, params, gy, 0.1)
    assert torch.equal(y, y_ref)
    assert all(a is None and b is None or torch.equal(a, b) for a, b in zip(s, s_ref, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_ref, strict=True))


@pytest.mark.parametrize("shape", SHAPES)
def test_float64_equals_torch_to_the_last_places(shape):
    x, stats, params, gy = _case(shape, torch.float64, seed=shape[1])
    y, s, grads, _ = _run(bn_cpu.batch_norm, x, stats, params, gy, 0.1)
    y_ref, s_ref, grads_ref, _ = _run(F.batch_norm, x, stats, params, gy, 0.1)
    for a, b in zip([y, *s, *grads], [y_ref, *s_ref, *grads_ref], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_the_layer_equals_nn_batchnorm2d_over_steps_in_training_and_evaluation():
    """Running statistics over several steps (momentum, and momentum None: the cumulative
    average), num_batches_tracked, then evaluation with the running statistics."""
    torch.manual_seed(0)
    for momentum in (0.1, None):
        ours, theirs = BatchNorm2d(6, momentum=momentum), nn.BatchNorm2d(6, momentum=momentum)
        theirs.load_state_dict(ours.state_dict())
        for step in range(4):
            x = torch.randn(8, 6, 5, 5) * (step + 1) + step
            assert torch.equal(ours(x), theirs(x))
        assert all(
            torch.equal(a, b)
            for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True)
        )
        ours.eval(), theirs.eval()
        x = torch.randn(3, 6, 5, 5)
        assert torch.equal(ours(x), theirs(x))


def test_second_derivatives_equal_torchs():
    """With ``create_graph=True`` the backward runs torch's batch norm as a graph, so the
    gradient of an input gradient (here with respect to the input and the weight) is
    ``nn.BatchNorm2d``'s, in float64 to its last places."""
    ours, theirs = BatchNorm2d(8).double(), nn.BatchNorm2d(8).double()
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 1.5, 8, dtype=torch.float64))
        ours.bias.copy_(torch.linspace(-0.5, 0.5, 8, dtype=torch.float64))
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(
        4, 8, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(7)
    ).requires_grad_()
    results = []
    for layer in (ours, theirs):
        (gx,) = torch.autograd.grad(layer(x).pow(3).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.pow(2).sum(), (x, layer.weight, layer.bias), allow_unused=True))
    assert type(ours(x).grad_fn).__name__ == "_BatchNormBackward"
    for got, want in zip(*results, strict=True):
        assert (got is None) == (want is None)
        if want is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_a_graph_building_backward_with_only_the_bias_to_differentiate_gives_torchs():
    ours, theirs = BatchNorm2d(4).double(), nn.BatchNorm2d(4).double()
    for layer in (ours, theirs):
        layer.weight.requires_grad_(False)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    got, want = (
        torch.autograd.grad(layer(x).pow(2).sum(), layer.bias, create_graph=True)[0]
        for layer in (ours, theirs)
    )
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_more_than_one_value_per_channel_is_still_required():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(3)(torch.randn(1, 3, 1, 1))


def test_inputs_the_kernel_does_not_cover_run_torchs_batchnorm():
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    cases = [x.to(memory_format=torch.channels_last), x[:, :, :, ::2], x.flatten(2), x.half()]
    for inp in cases:
        C = inp.shape[1]
        w, b = torch.ones(C, dtype=inp.dtype), torch.zeros(C, dtype=inp.dtype)
        assert not bn_cpu.applies(inp, True, w, b)
        y = bn_cpu.batch_norm(inp, None, None, w, b, True)
        assert type(y.grad_fn).__name__ == "NativeBatchNormBackward0"
        assert torch.equal(y, F.batch_norm(inp, None, None, w, b, True))
    assert not bn_cpu.applies(x, False)  # evaluation: torch's one-pass kernel
    with FlopCounterMode(display=False):  # an op counter sees torch's op
        assert (
            type(bn_cpu.batch_norm(x, None, None, None, None, True).grad_fn).__name__
            == "NativeBatchNormBackward0"
        )


def test_spikecim_batchnorm_torch_turns_the_kernel_off(monkeypatch):
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    monkeypatch.setenv("SPIKECIM_BATCHNORM", "torch")
    assert (
        type(bn_cpu.batch_norm(x, None, None, None, None, True).grad_fn).__name__
        == "NativeBatchNormBackward0"
    )


def test_built_in_models_normalise_with_the_layer_and_their_torch_twins_compute_the_same(monkeypatch):
    monkeypatch.setenv("SPIKECIM_CONV", "torch")  # the event-driven convolutions round otherwise
    model = create_model("vgg9", spiking=True, width=0.25)
    assert any(type(m) is BatchNorm2d for m in model.modules())
    peer = torch_layers(copy.deepcopy(model))
    assert not any(
        type(m).__module__.startswith("spikecim.nn") and isinstance(m, nn.BatchNorm2d) for m in peer.modules()
    )
    x = torch.rand(2, 4, 3, 32, 32)
    model.train(), peer.train()
    assert torch.equal(model(x), peer(x))
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), peer.state_dict().values(), strict=True)
    )


def test_without_torchs_vector_kernels_the_multiply_adds_round_twice_as_torchs_do():
    """``ATEN_CPU_CAPABILITY=default`` makes torch run its build without fused multiply-adds;
    the kernel reads the capability and follows (in a fresh process: torch reads it once)."""
    import subprocess
    import sys

    code = (
        "import torch, torch.nn.functional as F\n"
        "from spikecim.nn.kernels import bn_cpu\n"
        "assert torch.backends.cpu.get_cpu_capability() == 'DEFAULT'\n"
        "g = torch.Generator().manual_seed(0)\n"
        "x = torch.randn(16, 8, 9, 9, generator=g) * 3 + 1\n"
        "w, b = torch.randn(8, generator=g), torch.randn(8, generator=g)\n"
        "y = bn_cpu.batch_norm(x, None, None, w, b, True)\n"
        "assert bn_cpu.applies(x, True, w, b) and bn_cpu._fused(x.dtype) == 0\n"
        "assert torch.equal(y, F.batch_norm(x, None, None, w, b, True))\n"
    )
    env = {**__import__("os").environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
