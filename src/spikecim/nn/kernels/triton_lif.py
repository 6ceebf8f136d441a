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

from spikecim.nn.kernels.fused import fused_lif

__all__ = ["available", "supports", "lif_triton"]

SURROGATE_IDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2, "triangular": 3, "straight_through": 4}
BLOCK = 256


def available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def supports(x: torch.Tensor, params, mem0) -> bool:
    if x.device.type != "cuda" or x.dtype != torch.float32 or x.dim() < 1 or x.shape[0] == 0:
        return False
    if params.surrogate.name not in SURROGATE_IDS:
        return False
    for value in (params.beta, params.threshold):
        if isinstance(value, torch.Tensor):
            if value.device != x.device or not value.is_floating_point():
                return False
            if value.dim() > 0 and value.dtype != x.dtype:
                return False
    if mem0 is not None and (mem0.shape != x.shape[1:] or mem0.dtype != x.dtype or mem0.device != x.device):
        return False
    return available()


def lif_triton(x: torch.Tensor, params, mem0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, membrane)`` of the LIF over ``x[T, B, ...]`` (same contract as the reference)."""
    return fused_lif(_launcher(), x, params, mem0)


_LAUNCHER = None


def _launcher():
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = _build_launcher()
    return _LAUNCHER


def _build_launcher():
    import triton
    import triton.language as tl

    @triton.jit
    def surrogate_grad(u, SG: tl.constexpr, p, c_atan, p_half):
        if SG == 0:
            v = c_atan * u
            g = (1.0 / (1.0 + v * v)) * p_half
        elif SG == 1:
            d = p * tl.abs(u) + 1.0
            g = 1.0 / (d * d)
        elif SG == 2:
            s = 1.0 / (1.0 + tl.exp(-(p * u)))
            g = p * s * (1.0 - s)
        elif SG == 3:
            g = tl.maximum(1.0 - tl.abs(u) / p, 0.0) / p
        else:
            g = u * 0.0 + 1.0
        return g

    @triton.jit
    def forward_kernel(
        x_ptr, beta_ptr, th_ptr, m0_ptr, spk_ptr, mem_ptr, v_ptr, sb_ptr, T, M,
        HAS_M0: tl.constexpr, DELAYED: tl.constexpr, SUBTRACT: tl.constexpr, SAVE: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        b = tl.load(beta_ptr + offs, mask=mask, other=0.0)
        h = tl.load(th_ptr + offs, mask=mask, other=1.0)
        if HAS_M0:
            u = tl.load(m0_ptr + offs, mask=mask, other=0.0)
        else:
            u = tl.zeros([BLOCK], dtype=tl.float32)
        for t in range(0, T):
            off = t.to(tl.int64) * M + offs
            xt = tl.load(x_ptr + off, mask=mask, other=0.0)
            if DELAYED:
                r = tl.where(u > h, 1.0, 0.0)
                if SUBTRACT:
                    v = (b * u + xt) - r * h
                else:
                    v = (b * (1.0 - r)) * u + xt
                s = tl.where(v > h, 1.0, 0.0)
                m = v
            else:
                v = b * u + xt
                s = tl.where(v > h, 1.0, 0.0)
                if SUBTRACT:
                    m = v - s * h
                else:
                    m = (1.0 - s) * v
            tl.store(spk_ptr + off, s, mask=mask)
            tl.store(mem_ptr + off, m, mask=mask)
            if SAVE:
                if not DELAYED:
                    if SUBTRACT:
                        tl.store(sb_ptr + off, (v > h).to(tl.uint8), mask=mask)
                    else:
                        tl.store(v_ptr + off, v, mask=mask)
            u = m

    @triton.jit
    def backward_kernel(
        gs_ptr, gm_ptr, saved_ptr, sb_ptr, beta_ptr, th_ptr, m0_ptr, gx_ptr, gb_ptr, gt_ptr, gm0_ptr,
        T, M, p, c_atan, p_half,
        HAS_GS: tl.constexpr, HAS_GM: tl.constexpr, GS_SCALAR: tl.constexpr, GM_SCALAR: tl.constexpr, HAS_M0: tl.constexpr, DELAYED: tl.constexpr,
        SUBTRACT: tl.constexpr, DETACH: tl.constexpr, SG: tl.constexpr, NEED_B: tl.constexpr,
        NEED_T: tl.constexpr, NEED_M0: tl.constexpr, BLOCK: tl.constexpr,
    ):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M
        b = tl.load(beta_ptr + offs, mask=mask, other=0.0)
        h = tl.load(th_ptr + offs, mask=mask, other=1.0)
        if HAS_M0:
            u0 = tl.load(m0_ptr + offs, mask=mask, other=0.0)
        else:
            u0 = tl.zeros([BLOCK], dtype=tl.float32)
        g = tl.zeros([BLOCK], dtype=tl.float32)
        gb = tl.zeros([BLOCK], dtype=tl.float32)
        gt = tl.zeros([BLOCK], dtype=tl.float32)
        zero = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(0, T):
            t = T - 1 - i
            off = t.to(tl.int64) * M + offs
            cur = tl.load(saved_ptr + off, mask=mask, other=0.0)
            prev = tl.load(saved_ptr + off - M, mask=mask & (t > 0), other=0.0)
            prev = tl.where(t > 0, prev, u0)
            if HAS_GS:
                if GS_SCALAR:
                    gsi = zero + tl.load(gs_ptr)
                else:
                    gsi = tl.load(gs_ptr + off, mask=mask, other=0.0)
            else:
                gsi = zero
            if HAS_GM:
                if GM_SCALAR:
                    gmi = zero + tl.load(gm_ptr)
                else:
                    gmi = tl.load(gm_ptr + off, mask=mask, other=0.0)
            else:
                gmi = zero
            if DELAYED:
                rn = tl.where(cur > h, 1.0, 0.0)
                if SUBTRACT:
                    carry = g * b
                else:
                    carry = g * (b * (1.0 - rn))
                gsurr = gsi * surrogate_grad(cur - h, SG, p, c_atan, p_half)
                gout = (gmi + carry) + gsurr
                r = tl.where(prev > h, 1.0, 0.0)
                if SUBTRACT:
                    gb += gout * prev
                    gt += -gsurr - gout * r
                else:
                    gb += (gout * prev) * (1.0 - r)
                    gt += -gsurr
            else:
                if SUBTRACT:
                    bits = tl.load(sb_ptr + off, mask=mask, other=0)
                    s = tl.where(bits != 0, 1.0, 0.0)
                    vmh = tl.where(bits != 0, cur, cur - h)
                    up = prev
                    v = zero
                else:
                    v = cur
                    s = tl.where(v > h, 1.0, 0.0)
                    vmh = v - h
                    up = tl.where((t > 0) & (prev > h), 0.0, prev)
                am = gmi + g * b
                if DETACH:
                    gst = gsi
                elif SUBTRACT:
                    gst = gsi + -(am * h)
                else:
                    gst = gsi + -(am * v)
                sgv = surrogate_grad(vmh, SG, p, c_atan, p_half)
                if SUBTRACT:
                    gout = gst * sgv + am
                    gt += -(gst * sgv) - am * s
                else:
                    gout = gst * sgv + am * (1.0 - s)
                    gt += -(gst * sgv)
                gb += gout * up
            tl.store(gx_ptr + off, gout, mask=mask)
            g = gout
        if NEED_M0:
            if DELAYED and not SUBTRACT:
                tl.store(gm0_ptr + offs, g * (b * (1.0 - tl.where(u0 > h, 1.0, 0.0))), mask=mask)
            else:
                tl.store(gm0_ptr + offs, g * b, mask=mask)
        if NEED_B:
            tl.store(gb_ptr + offs, gb, mask=mask)
        if NEED_T:
            tl.store(gt_ptr + offs, gt, mask=mask)

    class TritonLauncher:
        def forward(self, x, beta, th, m0, spk, mem, vsave, sbits, params) -> None:
            T, M = x.shape[0], x[0].numel()
            dummy = spk
            forward_kernel[(triton.cdiv(M, BLOCK),)](
                x, beta, th, m0 if m0 is not None else dummy, spk, mem,
                vsave if vsave is not None else dummy, sbits if sbits is not None else dummy, T, M,
                HAS_M0=m0 is not None, DELAYED=bool(params.reset_delay),
                SUBTRACT=params.reset == "subtract", SAVE=vsave is not None or sbits is not None,
                BLOCK=BLOCK, enable_fp_fusion=False,
            )

        def backward(self, gs, gm, saved, sbits, beta, th, m0, gx, gbeta, gth, gm0, params) -> None:
            T, M = saved.shape[0], saved[0].numel()
            p = float(params.surrogate.param)
            dummy = gx
            backward_kernel[(triton.cdiv(M, BLOCK),)](
                gs if gs is not None else dummy, gm if gm is not None else dummy, saved,
                sbits if sbits is not None else dummy, beta, th, m0 if m0 is not None else dummy,
                gx, gbeta if gbeta is not None else dummy, gth if gth is not None else dummy,
                gm0 if gm0 is not None else dummy, T, M, p, math.pi / 2 * p, p / 2,
                HAS_GS=gs is not None, HAS_GM=gm is not None,
                GS_SCALAR=gs is not None and not gs.is_contiguous(),
                GM_SCALAR=gm is not None and not gm.is_contiguous(), HAS_M0=m0 is not None,
                DELAYED=bool(params.reset_delay), SUBTRACT=params.reset == "subtract",
                DETACH=bool(params.detach_reset), SG=SURROGATE_IDS[params.surrogate.name],
                NEED_B=gbeta is not None, NEED_T=gth is not None, NEED_M0=gm0 is not None,
                BLOCK=BLOCK, enable_fp_fusion=False,
            )

    return TritonLauncher()
