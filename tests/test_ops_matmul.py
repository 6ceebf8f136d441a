"""``MatMul`` (the product of two activations): torch.matmul's values and gradients for every
broadcast, without copying an operand that is broadcast over the batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from spikecim.ops.matmul import MatMul

# (a's shape, b's shape, b's expansion): b is expanded to the third shape before the product
CASES = {
    "per-token keys": ((6, 2, 3, 1, 4), (2, 3, 4, 6), (6, 2, 3, 4, 6)),
    "per-token values": ((6, 2, 3, 1, 6), (2, 3, 6, 4), (6, 2, 3, 6, 4)),
    "per-token keys, size 1": ((6, 2, 3, 1, 4), (1, 2, 3, 4, 6), (1, 2, 3, 4, 6)),
    "fewer dims, size 1": ((5, 2, 3, 4), (1, 4, 2), (1, 4, 2)),
    "broadcast inside": ((2, 5, 3, 4, 4), (2, 1, 3, 4, 2), (2, 5, 3, 4, 2)),
    "two broadcast dims": ((3, 4, 2, 5, 2, 3), (2, 1, 3, 2), (3, 4, 2, 5, 3, 2)),
    "a broadcast too": ((1, 3, 2, 4), (3, 4, 5), (5, 3, 4, 5)),
    "b not broadcast": ((2, 3, 4, 5), (2, 3, 5, 2), (2, 3, 5, 2)),
    "b a matrix": ((2, 3, 4, 5), (5, 2), (5, 2)),
    "a a vector": ((5,), (2, 5, 3), (2, 5, 3)),
}


@pytest.mark.parametrize("case", CASES)
def test_matmul_gives_torch_matmuls_values_and_gradients_for_every_broadcast(case):
    a_shape, b_shape, expanded = CASES[case]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(a_shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(b_shape, generator=g, dtype=torch.float64, requires_grad=True)
    want = torch.matmul(a, b.expand(expanded))
    got = MatMul()(a, b.expand(expanded))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn(want.shape, generator=g, dtype=torch.float64)
    want_grads = torch.autograd.grad((want * weights).sum(), (a, b))
    got_grads = torch.autograd.grad((got * weights).sum(), (a, b))
    for w, h in zip(want_grads, got_grads):
        torch.testing.assert_close(h, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("keys", ["expanded", "size 1"])
def test_keys_shared_by_the_queries_are_not_copied(keys):
    """Attention per token (each of L queries against the same keys, broadcast over the L
    queries) at L = 512, two samples, two heads, dh = 256: torch.matmul copies the keys for
    every query, L·B·H·dh·L floats = 1.07 GB (a hand count); the scores are L·B·H·L floats =
    4 MB. The process's peak memory may grow by much less than the copy: in the forward, and
    for keys of size 1 along the queries in the backward too (an expanded operand gets a
    gradient of its expanded size from autograd)."""
    script = textwrap.dedent(
        f"""
        import resource, torch
        from spikecim.ops.matmul import MatMul
        L, B, H, dh = 512, 2, 2, 256
        q = torch.randn(L, B, H, 1, dh, requires_grad=True)
        k = torch.randn(1, B, H, dh, L, requires_grad=True)
        expanded = {keys == "expanded"}
        keys = (lambda n: k.expand(n, B, H, dh, L)) if expanded else (lambda n: k)
        MatMul()(q[:2], keys(2)).sum().backward()  # load the kernels first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scores = MatMul()(q, keys(L))
        if not expanded:
            scores.sum().backward()
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(*scores.shape, grown * 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:5] == ["512", "2", "2", "1", "512"]  # [L, B, H, 1, L]
    copy_bytes = 512 * 2 * 2 * 256 * 512 * 4
    assert int(out[-1]) < copy_bytes / 8


class _StepProduct(torch.nn.Module):
    """Each step's input row against one matrix made from the first step, given to MatMul
    with size 1 along the steps (``broadcast``) or expanded over them."""

    def __init__(self, expand: bool):
        super().__init__()
        self.expand, self.product = expand, MatMul()

    def forward(self, x):  # [T, B, 4]
        b = x[:1].unsqueeze(-1).repeat(1, 1, 1, 3)  # [1, B, 4, 3]
        if self.expand:
            b = b.expand(x.shape[0], -1, -1, -1)
        return self.product(x.unsqueeze(-2), b)  # [T, B, 1, 3]


def test_a_matmul_operand_of_size_1_over_the_steps_is_traced_as_the_same_operand_at_every_step():
    from spikecim.trace import trace

    x = torch.rand(5, 2, 4)
    broadcast, expanded = (trace(_StepProduct(e), [x]) for e in (False, True))
    layer = next(layer for layer in broadcast.layers if layer.kind == "matmul")
    assert layer.macs == 1 * 4 * 3  # a [1, 4] row against a [4, 3] matrix per sample and step
    assert broadcast.model_dump() == expanded.model_dump()
