"""Triton kernels of the fused LIF (imported only when Triton is installed; see triton_lif.py).

``forward_kernel`` and ``backward_kernel`` follow ``lif_cpu.c`` line by line: one program per
block of neurons runs all T steps, the membrane (forward) or the carried gradient (backward)
in registers.
"""

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
def neuron_block(beta_ptr, th_ptr, m0_ptr, M, HAS_M0: tl.constexpr, BLOCK: tl.constexpr):
    """This program's neurons: offsets, lane mask, β, θ and the initial membrane (0 without
    ``m0``), as both kernels start."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    b = tl.load(beta_ptr + offs, mask=mask, other=0.0)
    h = tl.load(th_ptr + offs, mask=mask, other=1.0)
    if HAS_M0:
        u = tl.load(m0_ptr + offs, mask=mask, other=0.0)
    else:
        u = tl.zeros([BLOCK], dtype=tl.float32)
    return offs, mask, b, h, u


@triton.jit
def incoming_grad(ptr, off, mask, zero, HAS: tl.constexpr, SCALAR: tl.constexpr):
    """One step of an incoming gradient (of the spikes or of the membrane): the tensor at
    ``off``, one scalar broadcast to every lane (a gradient of a sum), or zero without one."""
    if HAS:
        if SCALAR:
            g = zero + tl.load(ptr)
        else:
            g = tl.load(ptr + off, mask=mask, other=0.0)
    else:
        g = zero
    return g


@triton.jit
def forward_kernel(
    x_ptr,
    beta_ptr,
    th_ptr,
    m0_ptr,
    spk_ptr,
    mem_ptr,
    v_ptr,
    sb_ptr,
    T,
    M,
    HAS_M0: tl.constexpr,
    DELAYED: tl.constexpr,
    SUBTRACT: tl.constexpr,
    SAVE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs, mask, b, h, u = neuron_block(beta_ptr, th_ptr, m0_ptr, M, HAS_M0, BLOCK)
    off = offs.to(tl.int64)
    for t in range(T):
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
        if SAVE and not DELAYED:
            if SUBTRACT:
                tl.store(sb_ptr + off, (v > h).to(tl.uint8), mask=mask)
            else:
                tl.store(v_ptr + off, v, mask=mask)
        u = m
        off += M


@triton.jit
def backward_kernel(
    gs_ptr,
    gm_ptr,
    saved_ptr,
    sb_ptr,
    beta_ptr,
    th_ptr,
    m0_ptr,
    gx_ptr,
    gb_ptr,
    gt_ptr,
    gm0_ptr,
    T,
    M,
    p,
    c_atan,
    p_half,
    HAS_GS: tl.constexpr,
    HAS_GM: tl.constexpr,
    GS_SCALAR: tl.constexpr,
    GM_SCALAR: tl.constexpr,
    HAS_M0: tl.constexpr,
    DELAYED: tl.constexpr,
    SUBTRACT: tl.constexpr,
    DETACH: tl.constexpr,
    SG: tl.constexpr,
    NEED_B: tl.constexpr,
    NEED_T: tl.constexpr,
    NEED_M0: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs, mask, b, h, u0 = neuron_block(beta_ptr, th_ptr, m0_ptr, M, HAS_M0, BLOCK)
    g = tl.zeros([BLOCK], dtype=tl.float32)
    gb = tl.zeros([BLOCK], dtype=tl.float32)
    gt = tl.zeros([BLOCK], dtype=tl.float32)
    zero = tl.zeros([BLOCK], dtype=tl.float32)
    off = tl.cast(T - 1, tl.int64) * M + offs
    for _ in range(T):
        cur = tl.load(saved_ptr + off, mask=mask, other=0.0)
        has_prev = off >= M  # t > 0 (lanes hold offs < M)
        prev = tl.load(saved_ptr + off - M, mask=mask & has_prev, other=0.0)
        prev = tl.where(has_prev, prev, u0)
        gsi = incoming_grad(gs_ptr, off, mask, zero, HAS_GS, GS_SCALAR)
        gmi = incoming_grad(gm_ptr, off, mask, zero, HAS_GM, GM_SCALAR)
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
                up = tl.where(has_prev & (prev > h), 0.0, prev)
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
        off -= M
    if NEED_M0:
        if DELAYED and not SUBTRACT:
            tl.store(gm0_ptr + offs, g * (b * (1.0 - tl.where(u0 > h, 1.0, 0.0))), mask=mask)
        else:
            tl.store(gm0_ptr + offs, g * b, mask=mask)
    if NEED_B:
        tl.store(gb_ptr + offs, gb, mask=mask)
    if NEED_T:
        tl.store(gt_ptr + offs, gt, mask=mask)
