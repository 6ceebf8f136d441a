"""The LIF on a channels-last layer output: the CPU kernel reads the memory as it lies.

A convolution in ``torch.channels_last`` writes ``[T*B, C, H, W]`` with the channels
fastest; seen as ``[T, B, C, H, W]`` it is one dense block with time outermost, which is all
the kernel's time loop needs. The oracles: the reference loop on a contiguous copy (spikes,
membrane and every gradient, exactly), and torch's own memory-format query for the layout of
what comes back.
"""

from __future__ import annotations

import pytest
import torch

from spikecim.nn import LIF, functional
from spikecim.nn.kernels import cpu

pytestmark = pytest.mark.skipif(
    not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built"
)

T, B, C, HW = 3, 2, 5, 4
CL = torch.channels_last


def _layer_output(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer output ``[T*B, C, H, W]`` as two leaves: in channels-last layout and as a
    contiguous copy (what a neuron reads is ``leaf * 1``, a non-leaf of the same layout)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(T * B, C, HW, HW, generator=g, dtype=torch.float64) * 1.5 + 0.4
    return h.to(memory_format=CL).requires_grad_(), h.clone().requires_grad_()


def _weights() -> torch.Tensor:
    return torch.linspace(-1.0, 2.0, T * B * C * HW * HW, dtype=torch.float64).reshape(T, B, C, HW, HW)


def test_a_channels_last_layer_output_is_read_in_memory_order_with_time_outermost():
    from spikecim.nn.kernels.fused import memory_order

    h = torch.empty(T * B, C, HW, HW).to(memory_format=CL).unflatten(0, (T, B))
    assert memory_order(h) == [0, 1, 3, 4, 2]  # t, b, y, x, channel: the channels fastest
    assert memory_order(torch.empty(T, B, C)) == [0, 1, 2]
    # time not outermost: no order without a copy
    assert memory_order(torch.empty(B, T, C).transpose(0, 1)) is None


@pytest.mark.parametrize("inplace", [False, True], ids=["new_spikes", "inplace"])
@pytest.mark.parametrize("reset_delay", [False, True], ids=["same_step", "delayed"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel_learnt"])
def test_lif_on_a_channels_last_layer_output_equals_the_reference_on_a_contiguous_copy(
    inplace, reset_delay, per_channel
):
    h_cl, h_ref = _layer_output()
    if per_channel:  # [C, 1, 1]: the kernel reads them in the layer's memory order
        beta, theta = torch.linspace(0.5, 0.95, C).view(C, 1, 1), torch.linspace(0.6, 1.2, C).view(C, 1, 1)
    else:
        beta, theta = 0.85, 0.9
    kw = {"reset_delay": reset_delay, "learn_beta": per_channel, "learn_threshold": per_channel}
    reference = LIF(beta, theta, backend="reference", **kw).double()
    kernel = LIF(beta, theta, backend="cpu", inplace=inplace, **kw).double()

    s_ref = reference((h_ref * 1).unflatten(0, (T, B)))
    h = h_cl * 1
    assert h.is_contiguous(memory_format=CL)
    s = kernel(h.unflatten(0, (T, B)))
    assert torch.equal(s, s_ref)
    assert s.flatten(0, 1).is_contiguous(memory_format=CL)  # the layer's layout goes on
    if inplace:
        assert s.data_ptr() == h.data_ptr()  # written over the layer's output, no copy
    (s_ref * _weights()).sum().backward()
    (s * _weights()).sum().backward()
    assert torch.equal(h_cl.grad, h_ref.grad)
    if per_channel:
        assert torch.allclose(kernel.beta.grad, reference.beta.grad, rtol=1e-12, atol=1e-12)
        assert torch.allclose(kernel.threshold.grad, reference.threshold.grad, rtol=1e-12, atol=1e-12)


def test_lif_membrane_and_initial_state_in_channels_last_equal_the_reference():
    h = _layer_output(1)[0].detach().unflatten(0, (T, B))
    mem0 = torch.randn(B, C, HW, HW, dtype=torch.float64).to(memory_format=CL)
    p = functional.LIFParams(beta=0.8, threshold=0.7)
    s, (mem,) = functional.lif(h, functional.LIFState(mem0), p, "cpu")
    s_ref, (mem_ref,) = functional.lif(h.contiguous(), functional.LIFState(mem0.contiguous()), p, "reference")
    assert torch.equal(s, s_ref)
    assert torch.equal(mem, mem_ref)
    assert mem.flatten(0, 1).is_contiguous(memory_format=CL)


def test_inplace_lif_on_channels_last_allocates_no_more_sequences_than_on_a_contiguous_input():
    """The forward and backward of the in-place LIF over a channels-last output allocate as
    many float sequences as over a contiguous one (the hand count of
    tests/test_nn_lif_inplace.py): no copy to a contiguous layout and back. Counted from the
    torch profiler's allocation events, by size."""
    from torch.profiler import ProfilerActivity, profile

    sequences = {}
    for layout in (torch.contiguous_format, CL):
        leaf = torch.randn(8 * 4, 16, 8, 8).to(memory_format=layout).requires_grad_()
        one = leaf.numel() * 4
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            s = LIF(reset_delay=False, inplace=True)((leaf * 1.0).unflatten(0, (8, 4)))
            torch.autograd.grad(s, leaf, torch.ones_like(s))
        sizes = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        sequences[layout] = sum(n == one for n in sizes)
    assert sequences[CL] == sequences[torch.contiguous_format]
