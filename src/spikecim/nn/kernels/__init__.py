"""Fused multi-step neuron kernels, chosen by :func:`select`.

Each kernel implements exactly :func:`spikecim.nn.functional.lif` (the reference) for the
calls it supports and is tested against it; for any other call :func:`select` returns
``None`` and the reference loop runs.

=========  ==============  ========================================================
backend    device          what runs
=========  ==============  ========================================================
``cpu``    CPU tensors     ``lif_cpu.c``, compiled on first use (:mod:`.cpu`)
``triton`` CUDA tensors    a Triton kernel (:mod:`.triton_lif`), when Triton is installed
=========  ==============  ========================================================

``backend="auto"`` picks the kernel for the tensors' device; ``"reference"`` forces the
loop; a kernel's name forces that kernel and fails with a one-line error if it cannot run
the call.

The token recurrences of the language models (SpikeGPT's WKV, the MLGRU scan) have CPU
kernels of their own, ``wkv_cpu.c`` and ``mlgru_cpu.c`` (:mod:`.recurrence_cpu`), chosen
in the same way by :mod:`spikecim.nn.recurrence`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from spikecim.errors import SpikecimError

Kernel = Callable[..., tuple[torch.Tensor, torch.Tensor]]

__all__ = ["BACKENDS", "cannot_run", "check_backend", "select", "select_spikes"]

BACKENDS = ("auto", "reference", "cpu", "triton")


def check_backend(backend: str, allowed: tuple[str, ...]) -> None:
    """The one-line error for a ``backend`` outside ``allowed``."""
    if backend not in allowed:
        raise SpikecimError(f"backend: unknown '{backend}', allowed: {', '.join(allowed)}")


def cannot_run(backend: str, x: torch.Tensor, detail: str) -> SpikecimError:
    """The one-line error for a kernel named explicitly that cannot take this call."""
    return SpikecimError(
        f"backend: '{backend}' cannot run this call (device {x.device.type}, dtype {x.dtype}, {detail}); "
        "use 'auto' or 'reference'"
    )


def select(x: torch.Tensor, params, mem0, backend: str = "auto") -> Kernel | None:
    """The fused kernel for this call, or ``None`` to run the reference loop."""
    check_backend(backend, BACKENDS)
    if backend == "reference":
        return None
    from spikecim.nn.kernels import cbuild

    if cbuild.transformed():  # torch.func's vmap, grad: torch ops only
        if backend != "auto":
            raise cannot_run(backend, x, "under a torch.func transform")
        return None
    name = backend if backend != "auto" else {"cpu": "cpu", "cuda": "triton"}.get(x.device.type)
    kernel = _kernel(name, x, params, mem0)
    if kernel is None and backend != "auto":
        raise cannot_run(backend, x, f"surrogate {params.surrogate.name}")
    return kernel


def select_spikes(
    x: torch.Tensor, params, mem0, backend: str = "auto", inplace: bool = False
) -> Callable[..., torch.Tensor] | None:
    """As :func:`select`, for a caller that wants the spikes alone: the kernel may then skip
    writing the membrane sequence. ``inplace``: where the kernel can, it writes the spikes over
    a contiguous ``x`` (the CPU kernel); elsewhere it returns a new tensor as usual."""
    kernel = select(x, params, mem0, backend)
    if kernel is None:
        return None
    from spikecim.nn.kernels import cpu

    if kernel is cpu.lif_cpu:
        return functools.partial(cpu.lif_cpu_spikes, inplace=inplace)
    return lambda x, p, m: kernel(x, p, m)[0]


def _kernel(name: str | None, x: torch.Tensor, params, mem0) -> Kernel | None:
    if name == "cpu":
        from spikecim.nn.kernels import cpu

        return cpu.lif_cpu if cpu.supports(x, params, mem0) else None
    if name == "triton":
        from spikecim.nn.kernels import triton_lif

        return triton_lif.lif_triton if triton_lif.supports(x, params, mem0) else None
    return None
