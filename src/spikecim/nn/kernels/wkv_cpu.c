/* RWKV-4's WKV recurrence for the CPU: the token loop of spikecim.nn.recurrence.wkv forward,
 * and its exact gradients for w, u, k, v backward, in one call each.
 *
 * Built by spikecim/nn/kernels/recurrence_cpu.py with `cc -O2 -ffp-contract=off -DREAL=float` (and
 * once more with double). Per channel c (one (batch, channel) pair) and token t:
 *
 *   y_t = (N_t + e^{u+k_t} v_t) / (D_t + e^{u+k_t}),
 *   N_{t+1} = e^w N_t + e^{k_t} v_t,   D_{t+1} = e^w D_t + e^{k_t},   N_0 = D_0 = 0,
 *
 * carried as a = N e^{-p}, b = D e^{-p} with a running maximum exponent p, so no exp
 * overflows (the public CUDA kernel ridgerchu/SpikeGPT src/cuda/wkv_cuda.cu does the same).
 * The forward arithmetic is the reference loop's expression by expression; of the two
 * factors e^{p-q}, e^{x-q} with q = max(p, x) one is exactly 1, so one exp is computed.
 *
 * Backward (derived here; the CUDA kernel's backward has the same two sweeps):
 *   forward sweep, recomputing the carry:  with den_t = D_t + e^{u+k_t} = e^{q_t} s_t,
 *     dy_t/dw = (N'_t - y_t D'_t) / den_t,  N'_{t+1} = e^w (N'_t + N_t) (same for D'),
 *     dy_t/du = e^{u+k_t} (v_t - y_t) / den_t;
 *     y_t, 1/s_t and q_t are stored for the reverse sweep.
 *   reverse sweep:  G_i = sum_{t>i} g_t e^{(t-1-i) w} / den_t and H_i (the same with y_t),
 *     G_{i-1} = e^w G_i + g_i / den_i, carried as e^{o} (gp, gq) with a running maximum o;
 *     dL/dv_i = g_i e^{u+k_i} / den_i + e^{k_i} G_i,
 *     dL/dk_i = g_i e^{u+k_i} (v_i - y_i) / den_i + e^{k_i} (v_i G_i - H_i).
 *
 * Layout: k, v, y, gy, gk, gv and the three [L, M] work arrays are time-major [L, M]
 * contiguous (M = batch x channels, channel fastest); w, u are [D] with D dividing M; gw,
 * gu are per pair [M] (the caller sums over the batch). Work is split over pairs: a thread
 * takes a chunk of CHUNK pairs and runs every token on it.
 */
#include <math.h>
#include <stdint.h>

#include "parallel.h"
#include "real.h"
#include "cephes.h"

#define INLINE static inline __attribute__((always_inline))
/* the arrays a token loop reads and writes never overlap: vectorise without alias checks */
#if defined(__GNUC__) && !defined(__clang__)
#define IVDEP _Pragma("GCC ivdep")
#else
#define IVDEP
#endif

/* e^x in float by Cephes expf (cephes.h), in loops the compiler vectorises (libm's expf is
 * one call per value); every argument here is <= 0 up to rounding. n = x log2(e) rounded to
 * the nearest integer (adding 1.5 * 2^23 rounds). Below -87.33 (2^-126) it returns 0 rather
 * than a subnormal, above 88 infinity. Doubles use libm's exp. */
INLINE float exp_neg_f(float x) {
    const float lo = -87.33f, hi = 88.0f;
    const float xc = x < lo ? lo : (x > hi ? hi : x);
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float n = (xc * 1.44269504088896341f + shift) - shift;
    const float er = cephes_exp_reduced(xc, n);
    union {
        int32_t i;
        float f;
    } two_n = {.i = ((int32_t)n + 127) << 23};
    return x < lo ? 0.0f : (x > hi ? HUGE_VALF : er * two_n.f);
}
#define EXP_NEG(x) _Generic((x), float: exp_neg_f, default: exp)(x)

#ifndef CHUNK
#define CHUNK 256
#endif
#define MIN_EXP ((real)-1e38) /* the reference loop's initial maximum exponent */

typedef struct {
    int64_t L, M, D;
    const real *w, *u, *k, *v;
    real *y;                 /* forward output */
    const real *gy;          /* backward: dL/dy */
    real *gw, *gu, *gk, *gv; /* backward outputs; gw, gu per pair [M] */
    real *ys, *zs, *qs;      /* backward work arrays [L, M]: y_t, 1/s_t, q_t */
} wkv_args;

/* e^{x - max(x, z)} and e^{z - max(x, z)}: one of them is exactly 1, the other e^{-|x - z|}. */
INLINE void scale_pair(real x, real z, real *ex, real *ez, real *m) {
    const real d = x - z;
    const int x_max = d >= 0;
    const real e = EXP_NEG(x_max ? -d : d);
    *m = x_max ? x : z;
    *ex = x_max ? (real)1 : e;
    *ez = x_max ? e : (real)1;
}

CLONES static void fwd_chunk(const wkv_args *a, int64_t i0, int64_t n) {
    real ca[CHUNK], cb[CHUNK], cp[CHUNK], w[CHUNK], u[CHUNK];
    for (int64_t j = 0; j < n; j++) {
        ca[j] = cb[j] = 0;
        cp[j] = MIN_EXP;
        w[j] = a->w[(i0 + j) % a->D];
        u[j] = a->u[(i0 + j) % a->D];
    }
    for (int64_t t = 0; t < a->L; t++) {
        const int64_t off = t * a->M + i0;
        const real *restrict k = a->k + off, *restrict v = a->v + off;
        real *restrict y = a->y + off;
        IVDEP
        for (int64_t j = 0; j < n; j++) {
            const real kt = k[j], vt = v[j], p = cp[j];
            real e1, e2, q;
            scale_pair(p, u[j] + kt, &e1, &e2, &q);
            y[j] = (e1 * ca[j] + e2 * vt) / (e1 * cb[j] + e2);
            scale_pair(p + w[j], kt, &e1, &e2, &q);
            ca[j] = e1 * ca[j] + e2 * vt;
            cb[j] = e1 * cb[j] + e2;
            cp[j] = q;
        }
    }
}

CLONES static void bwd_chunk(const wkv_args *a, int64_t i0, int64_t n) {
    real ca[CHUNK], cb[CHUNK], cp[CHUNK], da[CHUNK], db[CHUNK], w[CHUNK], u[CHUNK];
    real gw[CHUNK], gu[CHUNK];
    const int64_t L = a->L, M = a->M;
    for (int64_t j = 0; j < n; j++) {
        ca[j] = cb[j] = da[j] = db[j] = gw[j] = gu[j] = 0;
        cp[j] = MIN_EXP;
        w[j] = a->w[(i0 + j) % a->D];
        u[j] = a->u[(i0 + j) % a->D];
    }
    /* forward sweep: the carry, its derivative in w, the gradients of w and u */
    for (int64_t t = 0; t < L; t++) {
        const int64_t off = t * M + i0;
        const real *restrict k = a->k + off, *restrict v = a->v + off, *restrict g = a->gy + off;
        real *restrict ys = a->ys + off, *restrict zs = a->zs + off, *restrict qs = a->qs + off;
        IVDEP
        for (int64_t j = 0; j < n; j++) {
            const real kt = k[j], vt = v[j], p = cp[j];
            real e1, e2, q;
            scale_pair(p, u[j] + kt, &e1, &e2, &q);
            const real s = e1 * cb[j] + e2, z = (real)1 / s;
            const real y = (e1 * ca[j] + e2 * vt) / s;
            gw[j] += g[j] * e1 * (da[j] - y * db[j]) * z;
            gu[j] += g[j] * e2 * (vt - y) * z;
            ys[j] = y;
            zs[j] = z;
            qs[j] = q;
            scale_pair(p + w[j], kt, &e1, &e2, &q);
            da[j] = e1 * (da[j] + ca[j]);
            db[j] = e1 * (db[j] + cb[j]);
            ca[j] = e1 * ca[j] + e2 * vt;
            cb[j] = e1 * cb[j] + e2;
            cp[j] = q;
        }
    }
    for (int64_t j = 0; j < n; j++) {
        a->gw[i0 + j] = gw[j];
        a->gu[i0 + j] = gu[j];
    }
    /* reverse sweep: G, H carried as e^{o} (gp, gq) */
    real *gp = da, *gq = db, *o = cp;
    for (int64_t j = 0; j < n; j++) {
        gp[j] = gq[j] = 0;
        o[j] = MIN_EXP;
    }
    for (int64_t t = L - 1; t >= 0; t--) {
        const int64_t off = t * M + i0;
        const real *restrict k = a->k + off, *restrict v = a->v + off, *restrict g = a->gy + off;
        const real *restrict ys = a->ys + off, *restrict zs = a->zs + off, *restrict qs = a->qs + off;
        real *restrict gk = a->gk + off, *restrict gv = a->gv + off;
        IVDEP
        for (int64_t j = 0; j < n; j++) {
            const real kt = k[j], vt = v[j], y = ys[j], gz = g[j] * zs[j], q = qs[j];
            const real now = gz * EXP_NEG(u[j] + kt - q); /* g_t e^{u+k_t} / den_t */
            const real past = EXP_NEG(kt + o[j]);         /* e^{k_t} G_t / gp */
            gk[j] = now * (vt - y) + past * (gp[j] * vt - gq[j]);
            gv[j] = now + past * gp[j];
            real e1, e2, m;
            scale_pair(w[j] + o[j], -q, &e1, &e2, &m);
            gp[j] = e1 * gp[j] + gz * e2;
            gq[j] = e1 * gq[j] + gz * e2 * y;
            o[j] = m;
        }
    }
}

/* One item: a chunk of CHUNK (batch, channel) pairs, forward or backward (parallel.h hands them out). */
static void fwd_item(const void *p, int64_t c) {
    const wkv_args *a = (const wkv_args *)p;
    const int64_t i0 = c * CHUNK;
    fwd_chunk(a, i0, i0 + CHUNK < a->M ? CHUNK : a->M - i0);
}

static void bwd_item(const void *p, int64_t c) {
    const wkv_args *a = (const wkv_args *)p;
    const int64_t i0 = c * CHUNK;
    bwd_chunk(a, i0, i0 + CHUNK < a->M ? CHUNK : a->M - i0);
}

void wkv_forward(const wkv_args *a, int threads) { run_items(a, fwd_item, (a->M + CHUNK - 1) / CHUNK, threads); }
void wkv_backward(const wkv_args *a, int threads) { run_items(a, bwd_item, (a->M + CHUNK - 1) / CHUNK, threads); }
