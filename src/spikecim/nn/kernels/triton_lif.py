"""The fused LIF on CUDA tensors: a Triton kernel per direction, one program per block of neurons.

Each program loads its neurons' beta and theta once, keeps the membrane (forward) or the
carried gradient (backward) in registers, and runs all T steps; the arithmetic is the
reference's, expression by expression, with fused multiply-add switched off. The autograd
function is the one the CPU kernel uses (:mod:`spikecim.nn.kernels.fused`).

Selected only for float32 CUDA tensors when Triton is installed; every other call runs the
reference loop. Tested on a GPU machine by ``tests/test_kernels_triton.py`` (skipped
without one).
"""

from __future__ import annotations

import importlib.util
import math

import torch

from spikecim.nn.kernels import fused

__all__ = ["available", "lif_triton", "supports"]

SURROGATE_IDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2, "triangular": 3, "straight_through": 4}
BLOCK = 256


def available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def supports(x: torch.Tensor, params, mem0) -> bool:
    return fused.supports(x, params, mem0, "cuda", (torch.float32,), SURROGATE_IDS) and available()


def lif_triton(
    x: torch.Tensor, params, mem0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` of the LIF over ``x[T, B, ...]`` (same contract as the reference)."""
    return fused.fused_lif(_launcher(), x, params, mem0)


_LAUNCHER = None


def _launcher():
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = _build_launcher()
    return _LAUNCHER


def _build_launcher():
    import triton

    from spikecim.nn.kernels._triton_kernels import backward_kernel, forward_kernel

    class TritonLauncher:
        def forward(self, x, beta, th, m0, spk, mem, vsave, sbits, params) -> None:
            T, M = x.shape[0], x[0].numel()
            dummy = spk
            forward_kernel[(triton.cdiv(M, BLOCK),)](
                x,
                beta,
                th,
                m0 if m0 is not None else dummy,
                spk,
                mem,
                vsave if vsave is not None else dummy,
                sbits if sbits is not None else dummy,
                T,
                M,
                HAS_M0=m0 is not None,
                DELAYED=bool(params.reset_delay),
                SUBTRACT=params.reset == "subtract",
                SAVE=vsave is not None or sbits is not None,
                BLOCK=BLOCK,
                enable_fp_fusion=False,
            )

        def backward(self, gs, gm, saved, sbits, beta, th, m0, gx, gbeta, gth, gm0, params) -> None:
            T, M = saved.shape[0], saved[0].numel()
            p = float(params.surrogate.param)
            dummy = gx
            backward_kernel[(triton.cdiv(M, BLOCK),)](
                gs if gs is not None else dummy,
                gm if gm is not None else dummy,
                saved,
                sbits if sbits is not None else dummy,
                beta,
                th,
                m0 if m0 is not None else dummy,
                gx,
                gbeta if gbeta is not None else dummy,
                gth if gth is not None else dummy,
                gm0 if gm0 is not None else dummy,
                T,
                M,
                p,
                math.pi / 2 * p,
                p / 2,
                HAS_GS=gs is not None,
                HAS_GM=gm is not None,
                GS_SCALAR=gs is not None and not gs.is_contiguous(),
                GM_SCALAR=gm is not None and not gm.is_contiguous(),
                HAS_M0=m0 is not None,
                DELAYED=bool(params.reset_delay),
                SUBTRACT=params.reset == "subtract",
                DETACH=bool(params.detach_reset),
                SG=SURROGATE_IDS[params.surrogate.name],
                NEED_B=gbeta is not None,
                NEED_T=gth is not None,
                NEED_M0=gm0 is not None,
                BLOCK=BLOCK,
                enable_fp_fusion=False,
            )

    return TritonLauncher()
