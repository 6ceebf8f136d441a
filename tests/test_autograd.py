"""spikecim.autograd.Function: the call torch's ``Function.apply`` makes, without binding the
arguments where nothing needs binding; torch's own path everywhere else."""

from __future__ import annotations

import sys

import torch

from spikecim.autograd import Function


class _Scale(Function):
    """y = x·a (+ shift), dy/dx = a; ``shift`` has a default."""

    @staticmethod
    def forward(x, a: float, shift: float = 0.0):
        return x * a + shift

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.a = inputs[1]

    @staticmethod
    def backward(ctx, g):
        return g * ctx.a, None, None


def _torch_apply(*args, **kwargs):
    return torch.autograd.Function.apply.__func__(_Scale, *args, **kwargs)


def _calls(fn) -> set[str]:
    """Names of the Python functions ``fn`` calls (sys.setprofile)."""
    names: set[str] = set()

    def profile(frame, event, _arg):
        if event == "call":
            names.add(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return names


def test_a_positional_call_gives_torchs_output_and_gradient():
    x = torch.linspace(-1, 1, 7, requires_grad=True)
    y = _Scale.apply(x, 3.0, 0.5)
    (gx,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().clone().requires_grad_()
    y2 = _torch_apply(x2, 3.0, 0.5)
    (gx2,) = torch.autograd.grad(y2.sum(), x2)
    assert torch.equal(y, x.detach() * 3.0 + 0.5)  # the formula
    assert torch.equal(y, y2) and torch.equal(gx, gx2)
    assert torch.equal(gx, torch.full((7,), 3.0))


def test_a_positional_call_binds_no_signature_and_torchs_path_does():
    x = torch.ones(3, requires_grad=True)
    _Scale.apply(x, 2.0, 0.0)  # the first call reads forward's signature once for the class
    ours = _calls(lambda: _Scale.apply(x, 2.0, 0.0))
    theirs = _calls(lambda: _torch_apply(x, 2.0, 0.0))
    assert "bind" in theirs and "_signature_from_callable" in theirs  # the observation sees binding
    assert "bind" not in ours and "_signature_from_callable" not in ours


def test_a_call_that_leaves_a_default_or_names_an_argument_takes_torchs_path():
    x = torch.arange(4.0, requires_grad=True)
    assert torch.equal(_Scale.apply(x, 2.0), x.detach() * 2.0)  # shift's default bound
    assert torch.equal(_Scale.apply(x, 2.0, shift=1.0), x.detach() * 2.0 + 1.0)
    assert "bind" in _calls(lambda: _Scale.apply(x, 2.0))


def test_torch_func_grad_takes_the_function():
    x = torch.linspace(-2, 2, 5)
    g = torch.func.grad(lambda v: _Scale.apply(v, 4.0, 1.0).square().sum())(x)
    torch.testing.assert_close(g, 2 * (4.0 * x + 1.0) * 4.0)  # d/dx Σ(4x + 1)²


def test_the_compiler_traces_a_call_into_one_graph_as_it_does_torchs_function():
    """``torch.compile`` takes the function as it takes torch's own ``Function``: one graph, no
    break (``torch._dynamo.explain`` counts both). The compiler runs the function's
    ``forward`` itself, not the overridden ``apply``: a graph break written into ``apply``
    does not show here."""
    import torch._dynamo as dynamo

    class _Torchs(torch.autograd.Function):
        forward, setup_context, backward = _Scale.forward, _Scale.setup_context, _Scale.backward

    counts = []
    for cls in (_Scale, _Torchs):
        dynamo.reset()
        explained = dynamo.explain(lambda x, cls=cls: (cls.apply(x * 2.0, 3.0, 1.0) * x).sum())(
            torch.randn(5)
        )
        counts.append((explained.graph_count, explained.graph_break_count))
    dynamo.reset()
    assert counts[0] == counts[1] == (1, 0)
