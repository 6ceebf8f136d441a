"""``torch.compile`` over a spiking network: the compiler traces torch's ops (every spikecim
CPU kernel steps aside while it compiles) and the compiled step computes what the eager one
computes, through the kernels. ``aot_eager`` runs the compiler's tracing and autograd
(the part that reads the neurons' checks) without generating code, in seconds."""

from __future__ import annotations

import torch

from spikecim.models import create_model


def test_a_compiled_spiking_network_gives_the_eager_outputs_and_gradients():
    torch.manual_seed(0)
    model = create_model("convnet", spiking=True, width=0.5)  # LIF in place, BatchNorm training
    x = torch.rand(4, 4, *model.input_shape, generator=torch.Generator().manual_seed(1))
    eager = model(x)
    want = torch.autograd.grad(eager.sum(), list(model.parameters()))
    compiled = torch.compile(model, backend="aot_eager")(x)
    got = torch.autograd.grad(compiled.sum(), list(model.parameters()))
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-12)
