"""``torch.func``'s transforms over spikecim's networks: under ``grad`` and ``vmap`` every
CPU kernel (the fused LIF, the event-driven convolution, the linear layers' oneDNN products,
pooling, BatchNorm, the language models' token recurrences) lets torch's ops run, and the
surrogate spike function and the quantisers' rounding are transformable autograd functions. The oracle is the ordinary backward pass through the kernels, which their
own tests hold to torch's convolutions, snnTorch's and SpikingJelly's neurons."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.nn import LIF, Linear
from spikecim.nn import linear as linear_module
from spikecim.nn.kernels import spike_conv_cpu


@pytest.mark.parametrize(
    ("name", "inplace"), [("convnet", True), ("convnet", False), ("vgg9", True), ("resnet19", True)]
)
def test_grad_of_a_spiking_network_equals_its_backward_pass(name, inplace):
    kw = {} if name == "convnet" else {"width": 0.25}
    torch.manual_seed(0)
    model = create_model(name, spiking=True, neuron_kw={"inplace": inplace}, **kw).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.rand(4, 2, *model.input_shape, generator=torch.Generator().manual_seed(1))
    got = torch.func.grad(lambda p: torch.func.functional_call(model, p, (x,)).sum())(params)
    want = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    for (key, g), w in zip(got.items(), want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-12, msg=key)


@pytest.mark.parametrize(("name", "spiking"), [("spikegpt-tiny", True), ("matmulfree-tiny", False)])
def test_grad_of_a_language_model_equals_its_backward_pass(name, spiking):
    """The token recurrences (SpikeGPT's WKV, the MLGRU scan) run their token loops under a
    transform, the ternary weights' rounding its straight-through estimator."""
    torch.manual_seed(0)
    model = create_model(name, spiking=spiking).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    tokens = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(3))
    got = torch.func.grad(lambda p: torch.func.functional_call(model, p, (tokens,)).sum())(params)
    want = torch.autograd.grad(model(tokens).sum(), list(model.parameters()), allow_unused=True)
    for (key, g), w in zip(got.items(), want, strict=True):
        if w is None:
            assert not g.any(), key
            continue
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-12, msg=key)


def test_per_sample_gradients_by_vmap_equal_one_backward_per_sample():
    torch.manual_seed(0)
    model = create_model("convnet", spiking=True).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.rand(4, 3, *model.input_shape, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 4, 7])

    def loss(p, xi, yi):
        logits = torch.func.functional_call(model, p, (xi.unsqueeze(1),)).mean(0)
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 1, 0))(params, x, y)
    for i in range(3):
        want = torch.autograd.grad(
            loss(dict(model.named_parameters()), x[:, i], y[i]), list(model.parameters())
        )
        for (key, g), w in zip(per_sample.items(), want, strict=True):
            torch.testing.assert_close(g[i], w, rtol=1e-4, atol=1e-6, msg=key)


def test_under_a_transform_the_kernels_step_aside():
    layer, x = Linear(512, 256), torch.randn(64, 512)
    spikes, weight = (torch.rand(2, 16, 8, 8) < 0.2).float(), torch.randn(32, 16, 3, 3)
    seen = {}

    def probe(xi):
        seen["linear"] = linear_module.applies(xi, layer.weight)
        seen["conv"] = spike_conv_cpu.applies(spikes, weight, 1, 1, 1, 1)
        return layer(xi)

    torch.testing.assert_close(
        torch.func.vmap(probe)(x.unsqueeze(1)).squeeze(1), F.linear(x, layer.weight, layer.bias)
    )
    assert seen == {"linear": False, "conv": False}


def test_a_kernel_named_explicitly_under_a_transform_is_a_one_line_error():
    neuron = LIF(beta=0.9, backend="cpu")
    x = torch.rand(4, 2, 8)
    with pytest.raises(SpikecimError, match="backend: 'cpu' cannot run this call .*torch.func"):
        torch.func.grad(lambda xi: neuron(xi).sum())(x)


@pytest.mark.parametrize("spiking", [False, True])
def test_grad_of_hardware_aware_training_equals_its_backward_pass(spiking):
    """The converters' autograd functions (DAC, ADC, convolution tiles) take ``torch.func``:
    under ``grad`` the compiled converter passes let torch's run. In training mode the first
    batches initialise the learned input ranges and BatchNorm tracks its statistics, so the
    buffers go in as an argument (a transform does not let a function write to tensors it
    captured), as torch's documentation does for BatchNorm. No weight noise here: under a
    transform its normals come from torch's generator, not from spikecim's."""
    from spikecim.analog.hwa import hwa_layers
    from spikecim.analog.hwa_config import HwaConverters

    torch.manual_seed(0)
    converters = HwaConverters(dac_bits=8, adc_bits=8, out_bound=10.0, input_range="learned", tile_rows=64)
    model = hwa_layers(create_model("convnet", spiking=spiking, width=0.25), converters).train()
    x = torch.rand(2, 8, 1, 8, 8, generator=torch.Generator().manual_seed(3))  # T = 2, digits-size
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(4))
    params = {k: v.detach().clone() for k, v in model.named_parameters()}

    def loss(p, buffers):
        return F.cross_entropy(torch.func.functional_call(model, (p, buffers), (x,)).mean(0), y)

    # each call starts from its own copy: the range's initialisation writes its parameter
    fresh = {k: v.clone().requires_grad_() for k, v in params.items()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    ordinary = {k: v.clone() for k, v in model.named_buffers()}
    got = torch.func.grad(loss)(params, buffers)
    loss(fresh, ordinary).backward()
    assert any("input_range" in key for key in got)
    for key, g in got.items():
        want = fresh[key].grad
        torch.testing.assert_close(g, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()) + 1e-12, msg=key)
    for key, b in buffers.items():  # the same range updates and BatchNorm statistics
        torch.testing.assert_close(b, ordinary[key], msg=key)
