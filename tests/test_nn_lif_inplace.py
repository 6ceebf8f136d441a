"""``LIF(inplace=True)``: the spikes written over the input, as ``torch.nn.ReLU(inplace=True)``.

The oracles: the same LIF out of place (exact equality of spikes and of every gradient, on
the CPU kernel and on the reference loop), snnTorch ``Leaky`` (delayed reset, learnable beta
and threshold, to 1e-6), torch's own version-counter error where an operation saved the
input, a hand count of the bytes the forward pass allocates, and the out-of-place model for
the built-in models, their trace and their NIR export.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikecim.errors import SpikecimError
from spikecim.models import create_model
from spikecim.nn import IF, LIF
from spikecim.nn.kernels import cpu
from spikecim.timing import torch_threads

T, B, N = 12, 3, 40
BACKENDS = ["reference", pytest.param("cpu", marks=pytest.mark.skipif(
    not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built"))]  # fmt: skip


def _layer_outputs(seed: int = 0):
    """Two equal Linear layers and one input: their outputs ``[T, B, N]`` are what a LIF reads."""
    torch.manual_seed(seed)
    lin = nn.Linear(N, N).double()
    twin = nn.Linear(N, N).double()
    twin.load_state_dict(lin.state_dict())
    x = torch.randn(T, B, N, dtype=torch.float64) * 1.2 + 0.3
    return lin, twin, x


def _weights() -> torch.Tensor:
    return torch.linspace(-1.0, 2.0, T * B * N, dtype=torch.float64).reshape(T, B, N)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "reset_delay, reset", [(True, "subtract"), (True, "zero"), (False, "subtract"), (False, "zero")]
)
@pytest.mark.parametrize("learn", [False, True], ids=["fixed", "learn_beta_threshold"])
def test_inplace_lif_equals_the_out_of_place_lif_in_spikes_and_every_gradient(
    backend, reset_delay, reset, learn
):
    lin, twin, x = _layer_outputs()
    kw = {"reset": reset, "reset_delay": reset_delay, "learn_beta": learn, "learn_threshold": learn}
    out_of_place = LIF(0.85, 0.9, backend=backend, **kw).double()
    in_place = LIF(0.85, 0.9, backend=backend, inplace=True, **kw).double()
    s_ref = out_of_place(lin(x))
    h = twin(x)
    s = in_place(h)
    assert s.data_ptr() == h.data_ptr()  # written over the Linear output
    assert torch.equal(h, s)
    assert torch.equal(s, s_ref)
    (s_ref * _weights()).sum().backward()
    (s * _weights()).sum().backward()
    assert torch.equal(twin.weight.grad, lin.weight.grad) and torch.equal(twin.bias.grad, lin.bias.grad)
    if learn:
        assert torch.equal(in_place.beta.grad, out_of_place.beta.grad)
        assert torch.equal(in_place.threshold.grad, out_of_place.threshold.grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_inplace_lif_matches_snntorch_leaky_with_learnable_beta_and_threshold(backend, reset):
    import snntorch as snn
    from snntorch import surrogate as sn_sg

    g = torch.Generator().manual_seed(3)
    beta = torch.rand(N, generator=g, dtype=torch.float64) * 0.9 + 0.05
    thr = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
    x0 = torch.randn(T, B, N, generator=g, dtype=torch.float64) * 0.9 + 0.35
    ref = snn.Leaky(beta=beta.clone(), threshold=thr.clone(), spike_grad=sn_sg.atan(2.0), reset_mechanism=reset,
                    learn_beta=True, learn_threshold=True).double()  # fmt: skip
    ours = LIF(beta, thr, reset=reset, surrogate="atan(2)", learn_beta=True, learn_threshold=True,
               backend=backend, inplace=True).double()  # fmt: skip
    x_ref, x_ours = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    mem, spikes = torch.zeros_like(x0[0]), []
    for t in range(T):
        spk, mem = ref(x_ref[t], mem)
        spikes.append(spk)
    s_ref = torch.stack(spikes).to(torch.float64)  # snnTorch returns float32 spikes
    s = ours(x_ours * 1.0)  # a non-leaf input, as a layer's output is
    assert 0.05 < s_ref.mean().item() < 0.9
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    (s_ref * _weights()).sum().backward()
    (s * _weights()).sum().backward()
    for a, b in (
        (x_ours.grad, x_ref.grad),
        (ours.beta.grad, ref.beta.grad),
        (ours.threshold.grad, ref.threshold.grad),
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_through_an_operation_that_saved_the_input_fails_with_torchs_version_error(backend):
    """sigmoid keeps its output, exp its input... here ``mul`` keeps ``h`` for the gradient of w."""
    lin, _, x = _layer_outputs()
    w = torch.ones(N, dtype=torch.float64, requires_grad=True)
    h = lin(x)
    other = (h * w).sum()  # saves h for dL/dw
    s = LIF(reset_delay=False, backend=backend, inplace=True).double()(h)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (other + s.sum()).backward()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_leaf_input_that_requires_grad_is_refused_in_one_line(backend):
    x = torch.randn(T, B, N, dtype=torch.float64, requires_grad=True)
    for given in (x, x.view(T * B, N).view(T, B, N)):
        with pytest.raises(SpikecimError, match=r"^inplace: .*leaf tensor that requires grad") as e:
            LIF(backend=backend, inplace=True).double()(given)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_contiguous_input_gets_the_spikes_copied_over_it(backend):
    lin, twin, x = _layer_outputs()
    s_ref = LIF(reset_delay=False, backend=backend).double()(lin(x).transpose(1, 2))
    h = twin(x).transpose(1, 2)  # [T, N, B]: not contiguous
    s = LIF(reset_delay=False, backend=backend, inplace=True).double()(h)
    assert not h.is_contiguous() and torch.equal(h, s_ref) and torch.equal(s, s_ref)
    w = torch.linspace(-1.0, 2.0, s.numel(), dtype=torch.float64).reshape(s.shape)
    (s_ref * w).sum().backward()
    (s * w).sum().backward()
    assert torch.equal(twin.weight.grad, lin.weight.grad)


def test_inference_writes_over_an_input_that_needs_no_grad_and_if_takes_inplace_too():
    x = torch.randn(T, B, N, dtype=torch.float64) + 0.5
    ref = IF(threshold=0.7).double()(x.clone())
    with torch.no_grad():
        s = IF(threshold=0.7, inplace=True).double()(x)
    assert torch.equal(x, ref) and s.data_ptr() == x.data_ptr()


@pytest.mark.skipif(not cpu.available(torch.float32), reason="no C compiler: the CPU kernel is not built")
def test_inplace_training_forward_allocates_only_what_backward_keeps():
    """Same-step subtract reset, float32: out of place the spikes and V - theta (two sequences
    of T*B*N*4 bytes), in place V - theta alone."""
    from spikecim.timing import peak_mib

    leaf = torch.randn(16, 8, 2048, requires_grad=True)  # 1 MiB per float32 sequence
    one = leaf.numel() * 4 / 2**20
    out_of_place, in_place = LIF(reset_delay=False), LIF(reset_delay=False, inplace=True)
    h1, h2 = leaf * 1.0, leaf * 1.0
    assert peak_mib(lambda: out_of_place(h1)) == pytest.approx(2 * one, abs=0.01)
    assert peak_mib(lambda: in_place(h2)) == pytest.approx(one, abs=0.01)


@pytest.fixture(scope="module")
def model_pairs():
    """Each built-in model that uses the in-place neuron, and the same model out of place."""
    pairs = {}
    for name, kw in (
        ("convnet", {"width": 0.25}),
        ("vgg9", {"width": 0.0625}),
        ("resnet19", {"width": 0.0625}),
    ):
        torch.manual_seed(0)
        model = create_model(name, in_channels=1, input_size=8, neuron_kw={"threshold": 0.5}, **kw)
        torch.manual_seed(0)
        twin = create_model(
            name, in_channels=1, input_size=8, neuron_kw={"threshold": 0.5, "inplace": False}, **kw
        )
        pairs[name] = (model, twin)
    return pairs


@pytest.mark.parametrize("name", ["convnet", "vgg9", "resnet19"])
def test_builtin_models_train_in_place_with_the_gradients_of_the_out_of_place_model(name, model_pairs):
    model, twin = model_pairs[name]
    lifs = [m for m in model.modules() if isinstance(m, LIF)]
    assert lifs and all(m.inplace for m in lifs)
    assert not any(m.inplace for m in twin.modules() if isinstance(m, LIF))
    x = torch.rand(4, 2, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    target = torch.tensor([3, 7])
    for m in (model, twin):
        m.train().zero_grad()
        nn.functional.cross_entropy(m(x).mean(0), target).backward()
    for (pname, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.equal(p.grad, q.grad), pname


def test_the_ann_twin_and_a_neuron_without_the_option_build_as_before():
    ann = create_model("convnet", spiking=False, width=0.25)
    assert all(not m.inplace for m in ann.modules() if isinstance(m, nn.ReLU))
    synaptic = create_model("convnet", neuron="synaptic", width=0.25)
    assert not any(getattr(m, "inplace", False) for m in synaptic.modules())


@pytest.mark.filterwarnings("ignore:.*subtract reset has no NIR equivalent")
def test_trace_and_nir_export_of_an_in_place_model_equal_those_of_the_out_of_place_model(model_pairs):
    from spikecim.interop import to_nir
    from spikecim.trace import trace

    model, twin = model_pairs["convnet"]
    x = [torch.rand(4, 2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2]
    w_in, w_out = trace(model, x), trace(twin, x)
    assert w_in.model_dump() == w_out.model_dump()
    g_in, g_out = to_nir(model.eval(), input_shape=(1, 8, 8)), to_nir(twin.eval(), input_shape=(1, 8, 8))
    assert g_in.nodes.keys() == g_out.nodes.keys() and g_in.edges == g_out.edges
    for key, node in g_in.nodes.items():
        for field, value in vars(node).items():
            other = vars(g_out.nodes[key])[field]
            assert str(value) == str(other), (key, field)


@pytest.mark.skipif(not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built")
@pytest.mark.parametrize("reset_delay, reset", [(True, "subtract"), (False, "subtract"), (False, "zero")])
def test_a_second_backward_pass_fails_with_torchs_version_error_as_the_gradient_overwrote_what_was_kept(
    reset_delay, reset
):
    """The CPU kernel writes the input gradient over the sequence it kept for backward."""
    lin, _, x = _layer_outputs()
    s = LIF(reset=reset, reset_delay=reset_delay, backend="cpu", inplace=True).double()(lin(x))
    (s * _weights()).sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (s * _weights()).sum().backward()


@pytest.mark.skipif(not cpu.available(torch.float32), reason="no C compiler: the CPU kernel is not built")
def test_inplace_training_backward_allocates_no_gradient_sequence():
    """Out of place the LIF's backward pass allocates the input gradient, one sequence of
    T*B*N*4 bytes; in place it writes it over the V - theta it kept. Counted from the torch
    profiler's allocation events (their sizes, not their order, which the profiler's clock
    conversion does not guarantee at microsecond spacing)."""
    from torch.profiler import ProfilerActivity, profile

    leaf = torch.randn(16, 8, 2048, requires_grad=True)
    one = leaf.numel() * 4
    sequences = {}
    for inplace in (False, True):
        s = LIF(reset_delay=False, inplace=inplace)(leaf * 1.0)
        grad = torch.ones_like(s)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            torch.autograd.grad(s, leaf, grad)
        sizes = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        sequences[inplace] = sum(n == one for n in sizes)
    assert sequences[False] - sequences[True] == 1


def test_without_a_c_compiler_the_inplace_lif_copies_the_reference_spikes_over_its_input(no_c_compiler):
    lin, twin, x = _layer_outputs()
    s_ref = LIF(backend="reference").double()(lin(x))
    h = twin(x)
    with pytest.warns(UserWarning, match="could not be built"):
        s = LIF(inplace=True).double()(h)
    assert torch.equal(h, s_ref) and torch.equal(s, s_ref)
    (s_ref * _weights()).sum().backward()
    (s * _weights()).sum().backward()
    assert torch.equal(twin.weight.grad, lin.weight.grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset_delay", [True, False])
def test_a_time_major_view_of_a_folded_batchnorm_output_is_overwritten_with_the_out_of_place_gradients(
    backend, reset_delay
):
    """What spikecim.nn.Sequential hands a neuron: ``bn(y)[T*B, C, H, W]`` viewed as
    ``[T, B, C, H, W]``; the loss a plain ``.sum()`` (its gradient one broadcast value)."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(4).double()
    y = torch.randn(12, 4, 5, 5, dtype=torch.float64)
    out = {}
    for inplace in (False, True):
        bn.zero_grad()
        h = bn(y)
        s = LIF(reset_delay=reset_delay, backend=backend, inplace=inplace).double()(h.view(3, 4, 4, 5, 5))
        s.sum().backward()
        out[inplace] = (s.detach().clone(), h.detach().clone(), bn.weight.grad.clone(), bn.bias.grad.clone())
    s_ref, h_ref, *g_ref = out[False]
    s, h, *g = out[True]
    assert (
        torch.equal(s, s_ref)
        and torch.equal(h.view(s.shape), s_ref)
        and not torch.equal(h_ref.view(s.shape), s_ref)
    )
    assert all(torch.equal(a, b) for a, b in zip(g, g_ref))


@pytest.mark.skipif(not cpu.available(torch.float64), reason="no C compiler: the CPU kernel is not built")
@pytest.mark.parametrize(
    "reset_delay, reset", [(True, "subtract"), (True, "zero"), (False, "subtract"), (False, "zero")]
)
def test_an_inplace_layer_split_over_threads_equals_the_out_of_place_layer(reset_delay, reset, monkeypatch):
    """M = 2100 neurons per step: five chunks of the kernel, handed to two threads."""
    monkeypatch.setattr(cpu, "_PARALLEL_MIN", 1)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(12, 3, 700, generator=g, dtype=torch.float64) * 1.5
    w = torch.randn(12, 3, 700, generator=g, dtype=torch.float64)
    out = {}
    for inplace in (False, True):
        leaf = x0.clone().requires_grad_()
        with torch_threads(2):
            s = LIF(0.85, 0.9, reset, reset_delay, backend="cpu", inplace=inplace).double()(leaf * 1.0)
            (s * w).sum().backward()
        out[inplace] = (s.detach(), leaf.grad)
    assert torch.equal(out[True][0], out[False][0]) and torch.equal(out[True][1], out[False][1])


def test_the_kernels_spikes_over_a_non_contiguous_input_equal_the_reference_loop():
    """``lif_cpu_spikes(..., inplace=True)`` called directly on a transposed view: new spikes,
    equal to the reference loop's (the kernel writes in place only over contiguous memory)."""
    from spikecim.nn.functional import LIFParams, lif
    from spikecim.nn.kernels import cpu

    if not cpu.available(torch.float64):
        pytest.skip("no C compiler: the CPU kernel is not built")
    x = torch.randn(4, 3, 5, dtype=torch.float64).transpose(1, 2)  # [4, 5, 3], not contiguous
    p = LIFParams(beta=0.9, threshold=0.5, reset_delay=False)
    ref, _ = lif(x, None, p, backend="reference")
    y = x.clone()  # the same strides
    assert not y.is_contiguous()
    assert torch.equal(cpu.lif_cpu_spikes(y, p, None, inplace=True), ref)
