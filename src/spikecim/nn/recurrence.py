"""Element-wise recurrences over the token axis of the efficient language models.

Both take time-major ``[L, B, D]`` (tokens, batch, channels) and are pure functions: one step-by-step
loop each, the reference. Each also has a fused CPU kernel
(:mod:`spikecim.nn.kernels.recurrence_cpu`, forward and backward in C, tested against the
loop), which runs on CPU tensors when it is built; ``backend="reference"`` forces the loop.

- :func:`mlgru_scan`: the MLGRU / HGRN recurrence of the MatMul-free LM,
  ``h_t = f_t ⊙ h_{t−1} + i_t`` (``ridgerchu/matmulfreellm``, ``mmfreelm/ops/hgrn/naive.py``;
  docs/references.md#matmul-free-lm).
- :func:`wkv`: RWKV-4's weighted key-value average of SpikeGPT (``ridgerchu/SpikeGPT``,
  ``src/model.py``; docs/references.md#spikegpt)::

      wkv_t = (Σ_{i<t} e^{(t−1−i)·w + k_i} v_i + e^{u + k_t} v_t)
            / (Σ_{i<t} e^{(t−1−i)·w + k_i}     + e^{u + k_t})

  with ``w = −exp(decay) < 0`` per channel and the bonus ``u`` of the current token. The
  loop carries the numerator ``a``, denominator ``b`` and a running maximum exponent ``p``
  (both scaled by ``e^{−p}``), as the public CUDA kernel does, so no ``exp`` overflows.
"""

from __future__ import annotations

import torch

__all__ = ["BACKENDS", "mlgru_scan", "wkv"]

BACKENDS = ("auto", "reference", "cpu")


def mlgru_scan(
    i: torch.Tensor, f: torch.Tensor, h0: torch.Tensor | None = None, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = f_t ⊙ h_{t−1} + i_t`` over ``L``; returns every ``h_t`` ``[L, B, D]`` and the last.

    ``backend`` as for :func:`wkv` (the kernel takes ``i``, ``f`` and ``h0`` of one dtype).
    """
    from spikecim.nn.kernels import recurrence_cpu

    ts = f"i {tuple(i.shape)}, f {tuple(f.shape)}"
    if _use_kernel(backend, lambda: recurrence_cpu.supports_mlgru(i, f, h0), i, ts):
        return recurrence_cpu.mlgru_cpu(i, f, h0)
    h = torch.zeros_like(i[0]) if h0 is None else h0
    out = []
    for t in range(i.shape[0]):
        h = f[t] * h + i[t]
        out.append(h)
    return torch.stack(out), h


def wkv(
    w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "auto"
) -> torch.Tensor:
    """RWKV-4 WKV of ``k, v [L, B, D]`` with log-decay ``w [D]`` (negative) and bonus ``u [D]``.

    ``backend``: ``"auto"`` runs the fused CPU kernel when the call is one it implements (CPU
    tensors of one dtype, float32 or float64) and the reference loop otherwise; ``"reference"``
    forces the loop; ``"cpu"`` forces the kernel and fails in one line when it cannot run.
    """
    from spikecim.nn.kernels import recurrence_cpu

    ts = f"k {tuple(k.shape)}, w {tuple(w.shape)}"
    if _use_kernel(backend, lambda: recurrence_cpu.supports_wkv(w, u, k, v), k, ts):
        return recurrence_cpu.wkv_cpu(w, u, k, v)
    return _wkv_loop(w, u, k, v)


def _use_kernel(backend: str, supported, x: torch.Tensor, shapes: str) -> bool:
    """Whether to run the CPU kernel: ``supported()`` under ``auto``, always under ``cpu``
    (a one-line error when it cannot), never under ``reference`` or a ``torch.func``
    transform (the token loop's torch ops are transformable)."""
    from spikecim.nn.kernels import cannot_run, cbuild, check_backend

    check_backend(backend, BACKENDS)
    if backend == "reference":
        return False
    if cbuild.transformed():  # torch.func's vmap, grad: torch ops only
        if backend == "cpu":
            raise cannot_run(backend, x, "under a torch.func transform")
        return False
    if supported():
        return True
    if backend == "cpu":
        raise cannot_run(backend, x, shapes)
    return False


def _wkv_loop(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The reference: the token loop with the overflow-safe carry ``a, b, p``."""
    _, b_, d = k.shape
    a = k.new_zeros(b_, d)
    b = k.new_zeros(b_, d)
    p = k.new_full((b_, d), -1e38)
    out = []
    for t in range(k.shape[0]):
        kt, vt = k[t], v[t]
        ww = u + kt
        q = torch.maximum(p, ww)
        e1, e2 = torch.exp(p - q), torch.exp(ww - q)
        out.append((e1 * a + e2 * vt) / (e1 * b + e2))
        ww = p + w
        q = torch.maximum(ww, kt)
        e1, e2 = torch.exp(ww - q), torch.exp(kt - q)
        a = e1 * a + e2 * vt
        b = e1 * b + e2
        p = q
    return torch.stack(out)
