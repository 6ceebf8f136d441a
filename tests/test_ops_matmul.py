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


def test_keys_expanded_over_the_queries_are_not_copied():
    """Attention per token (each of L queries against the same keys, expanded over the L
    queries) at L = 512, two samples, two heads, dh = 256: torch.matmul copies the expansion,
    L·B·H·dh·L floats = 1.07 GB (a hand count); the product itself is L·B·H·L floats = 4 MB.
    The process's peak memory may grow by much less than the copy."""
    script = textwrap.dedent(
        """
        import resource, torch
        from spikecim.ops.matmul import MatMul
        L, B, H, dh = 512, 2, 2, 256
        q, k = torch.randn(L, B, H, 1, dh), torch.randn(1, B, H, dh, L)
        MatMul()(q[:2], k.expand(2, B, H, dh, L))  # load the kernels first
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scores = MatMul()(q, k.expand(L, B, H, dh, L))
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
