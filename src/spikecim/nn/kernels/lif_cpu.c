/* Fused multi-step LIF for the CPU: the whole time loop of spikecim.nn.functional.lif,
 * forward and reverse-time backward, in one call each.
 *
 * Built by spikecim/nn/kernels/cpu.py with `cc -O2 -ftree-vectorize -ffp-contract=off
 * -DREAL=float` (and once more with double); the arithmetic follows the reference
 * expression by expression (no fused multiply-add), so spikes and membrane are
 * bit-identical to it.
 *
 * In place: spikes may be x itself (spk == x), and the input gradient may be written over what
 * the forward pass kept (gx == saved); each element is read before it is overwritten.
 *
 * Layout: x, spikes, membrane are [T, M] contiguous (M = neurons per step, batch folded
 * in); beta, theta, mem0 are [M], or beta and theta one value for every neuron
 * (beta_scalar, th_scalar: no [M] copy of a scalar is made). Work is split over neurons: a thread takes a chunk of
 * CHUNK neurons and runs all T steps on it, so the state stays in the core's caches; within a step it
 * goes along the chunk in pieces of SUB neurons, so the one value of a scalar beta or theta is read
 * from SUB copies in L1. Each step of a chunk reads and writes CHUNK neurons in a row of memory: in
 * rows of 512 neurons (2 KiB of float) the hardware's prefetch kept restarting, and the passes over
 * a [4, 16.8 M] layer output took 1.2 to 1.9 times as long as in rows of 4096 (docs/speed.md).
 *
 * What the backward pass reads (store only what it needs):
 *   delayed reset          the membrane output U (S[t] = U[t] > theta, R[t] = U[t-1] > theta)
 *   same-step, subtract    V - theta alone (S = V - theta > 0: the sign of a float difference is
 *                          exact), or, when beta is learnt (its gradient reads U[t-1]), the
 *                          membrane output U and the spikes as bytes (V - theta = S ? U : U - theta)
 *   same-step, zero        the pre-reset membrane V (S = V > theta, U = S ? 0 : V)
 */
#include <math.h>
#include <stdint.h>

#include "parallel.h"
#include "real.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#ifndef CHUNK
#define CHUNK 4096
#endif
#define SUB 256
#define INLINE static inline __attribute__((always_inline))

enum { SG_ATAN = 0, SG_FAST_SIGMOID = 1, SG_SIGMOID = 2, SG_TRIANGULAR = 3, SG_STRAIGHT = 4 };

typedef struct {
    /* shared by forward and backward */
    int64_t T, M;
    int32_t delayed, subtract;
    int32_t beta_scalar, th_scalar; /* beta / th is one value for every neuron */
    const real *beta, *th, *m0;     /* m0 may be NULL (zeros) */
    /* forward */
    const real *x;
    real *spk, *mem, *vsave; /* mem may be NULL (spikes only, same-step reset); vsave: V (same-step
                                zero) or V - theta (same-step subtract), may be NULL */
    uint8_t *sbits;          /* same-step subtract only, may be NULL (then vsave or nothing) */
    /* backward */
    const real *gs, *gm;          /* incoming grads of spikes and membrane, may be NULL */
    int32_t gs_scalar, gm_scalar; /* the grad is one value broadcast to [T, M] (as from .sum()) */
    const real *saved;            /* U (delayed; same-step subtract with sbits_in), V - theta
                                     (same-step subtract without), or V (same-step zero) */
    const uint8_t *sbits_in;
    real *gx, *gbeta, *gth, *gm0; /* gbeta, gth, gm0 may be NULL; gbeta/gth are per neuron [M] */
    int32_t sg, detach;
    real sgp;
} lif_args;

/* dS/du of the surrogate, written as the reference (spikecim.nn.surrogate) computes it. */
INLINE real surrogate_grad(real u, int sg, real p, real c_atan, real p_half) {
    switch (sg) {
    case SG_ATAN: {
        real v = c_atan * u;
        return ((real)1 / ((real)1 + v * v)) * p_half;
    }
    case SG_FAST_SIGMOID: {
        real d = p * (u < 0 ? -u : u) + (real)1;
        return (real)1 / (d * d);
    }
    case SG_SIGMOID: {
        real s = (real)1 / ((real)1 + (real)exp(-(double)(p * u)));
        return p * s * ((real)1 - s);
    }
    case SG_TRIANGULAR: {
        real v = (real)1 - (u < 0 ? -u : u) / p;
        return (v > 0 ? v : (real)0) / p;
    }
    default:
        return (real)1;
    }
}

/* fill[0 .. SUB) = the one value of a scalar beta or theta (else nothing: the values are per neuron) */
INLINE void fill_scalar(const real *v, int scalar, real *fill) {
    if (scalar)
        for (int64_t k = 0; k < SUB; k++) fill[k] = v[0];
}

/* beta or theta of the piece of neurons from i: the per-neuron values, or the filled copies */
INLINE const real *piece_values(const real *v, int scalar, int64_t i, const real *fill) {
    return scalar ? fill : v + i;
}

/* u[0 .. n) = m0[i0 .. i0+n) or zeros, the branch outside the loop: `m0 ? m0[i0 + k] : 0`
 * inside it compiles to masked vector loads from m0's address, each of which costs a
 * microcode assist when m0 is NULL (the masked-off lanes would fault): most of the forward
 * pass's time before. */
INLINE void initial_state(const real *m0, int64_t i0, int64_t n, real *u) {
    if (m0) memcpy(u, m0 + i0, sizeof(real) * (size_t)n);
    else memset(u, 0, sizeof(real) * (size_t)n);
}

/* save: 0 nothing, 1 the spikes as bytes (subtract) or V (zero), 2 V - theta (subtract);
 * keep: the membrane sequence is written (else only the state carried in u);
 * inplace: spk is x (the spikes overwrite the input): x is then read through spk alone, so no
 * two restrict pointers reach the same element */
INLINE void fwd_chunk(const lif_args *a, int64_t i0, int64_t n, const int delayed, const int subtract, const int save,
                      const int keep, const int inplace) {
    real state[CHUNK], bfill[SUB], hfill[SUB];
    fill_scalar(a->beta, a->beta_scalar, bfill);
    fill_scalar(a->th, a->th_scalar, hfill);
    initial_state(a->m0, i0, n, state);
    for (int64_t t = 0; t < a->T; t++) {
        for (int64_t j = 0; j < n; j += SUB) {
            const int64_t off = t * a->M + i0 + j, len = n - j < SUB ? n - j : SUB;
            const real *restrict beta = piece_values(a->beta, a->beta_scalar, i0 + j, bfill);
            const real *restrict th = piece_values(a->th, a->th_scalar, i0 + j, hfill);
            real *restrict u = state + j;
            const real *restrict x = inplace ? 0 : a->x + off;
            real *restrict spk = a->spk + off, *restrict mem = keep ? a->mem + off : 0;
            uint8_t *restrict sbits = save == 1 && !delayed && subtract ? a->sbits + off : 0;
            real *restrict vsave = save && !delayed && (save == 2 || !subtract) ? a->vsave + off : 0;
            for (int64_t k = 0; k < len; k++) {
                const real b = beta[k], h = th[k], uk = u[k], xk = inplace ? spk[k] : x[k];
                real v, m, s;
                if (delayed) {
                    const real r = uk > h ? (real)1 : (real)0; /* R[t] = H(U[t-1] - theta) */
                    v = subtract ? (b * uk + xk) - r * h : (b * ((real)1 - r)) * uk + xk;
                    s = v > h ? (real)1 : (real)0;
                    m = v;
                } else {
                    v = b * uk + xk;
                    s = v > h ? (real)1 : (real)0;
                    m = subtract ? v - s * h : ((real)1 - s) * v;
                }
                spk[k] = s;
                if (keep) mem[k] = m;
                u[k] = m;
                if (save == 1 && !delayed && subtract) sbits[k] = (uint8_t)(v > h);
                if (save == 2 && !delayed && subtract) vsave[k] = v - h;
                if (save && !delayed && !subtract) vsave[k] = v;
            }
        }
    }
}

/* vmh: same-step subtract only, saved holds V - theta (no U, no spike bytes; no beta gradient);
 * 2: nor a threshold gradient, so no parameter gradient is summed (1: the threshold's is);
 * over: gx is saved itself (the gradient overwrites what was kept): row t of saved is then read
 * through gx alone, before gx[t] is written; row t - 1 (prev) is not written until the next step */
INLINE void bwd_chunk(const lif_args *a, int64_t i0, int64_t n, const int delayed, const int subtract, const int vmh_saved,
                      const int sg, const int over) {
    real g[CHUNK], gb[CHUNK], gt[CHUNK], u0[CHUNK];
    real zeros[SUB], gs_fill[SUB], gm_fill[SUB], bfill[SUB], hfill[SUB];
    static const uint8_t no_bits[SUB];
    fill_scalar(a->beta, a->beta_scalar, bfill);
    fill_scalar(a->th, a->th_scalar, hfill);
    const real p = a->sgp;
    const real c_atan = (real)(M_PI / 2 * (double)p), p_half = (real)((double)p / 2);
    const int detach = a->detach;
    const int64_t M = a->M;
    const real gs_one = a->gs && a->gs_scalar ? a->gs[0] : (real)0;
    const real gm_one = a->gm && a->gm_scalar ? a->gm[0] : (real)0;
    for (int64_t k = 0; k < SUB; k++) {
        zeros[k] = 0;
        gs_fill[k] = gs_one;
        gm_fill[k] = gm_one;
    }
    for (int64_t k = 0; k < n; k++) g[k] = gb[k] = gt[k] = 0;
    initial_state(a->m0, i0, n, u0);
    for (int64_t t = a->T - 1; t >= 0; t--) {
        const int after_first = t > 0;
        for (int64_t j = 0; j < n; j += SUB) {
            const int64_t off = t * M + i0 + j, len = n - j < SUB ? n - j : SUB;
            const real *restrict beta = piece_values(a->beta, a->beta_scalar, i0 + j, bfill);
            const real *restrict th = piece_values(a->th, a->th_scalar, i0 + j, hfill);
            const real *restrict cur = over ? 0 : a->saved + off;
            const real *restrict prev = t > 0 ? a->saved + off - M : u0 + j;
            /* a missing incoming gradient reads as zeros, a broadcast one as its value (no branch in the loop) */
            const real *restrict gs = !a->gs ? zeros : a->gs_scalar ? gs_fill : a->gs + off;
            const real *restrict gm = !a->gm ? zeros : a->gm_scalar ? gm_fill : a->gm + off;
            const uint8_t *restrict sb = (!delayed && subtract && !vmh_saved) ? a->sbits_in + off : no_bits;
            real *restrict gx = a->gx + off;
            real *restrict gc = g + j, *restrict gbc = gb + j, *restrict gtc = gt + j;
            for (int64_t k = 0; k < len; k++) {
                const real b = beta[k], h = th[k];
                const real gsi = gs[k], gmi = gm[k], ck = over ? gx[k] : cur[k];
                real gout;
                if (delayed) {
                    const real u = ck, up = prev[k];
                    const real rn = u > h ? (real)1 : (real)0; /* R[t+1] */
                    const real carry = subtract ? gc[k] * b : gc[k] * (b * ((real)1 - rn));
                    const real gsurr = gsi * surrogate_grad(u - h, sg, p, c_atan, p_half);
                    gout = (gmi + carry) + gsurr;
                    {   /* parameter gradients: cheap, kept in cache, written out only when asked for */
                        const real r = up > h ? (real)1 : (real)0; /* R[t] */
                        gbc[k] += subtract ? gout * up : (gout * up) * ((real)1 - r);
                        gtc[k] += -gsurr - (subtract ? gout * r : (real)0);
                    }
                } else {
                    real s, vmh, v, up;
                    if (subtract && vmh_saved) {
                        vmh = ck;
                        s = vmh > 0 ? (real)1 : (real)0;
                        v = 0;
                        up = 0; /* U[t-1] is only read by the beta gradient, not asked for here */
                    } else if (subtract) {
                        s = (real)sb[k];
                        vmh = s > 0 ? ck : ck - h; /* U = fl(V - theta) after a spike */
                        v = 0;
                        up = prev[k];
                    } else {
                        v = ck;
                        s = v > h ? (real)1 : (real)0;
                        vmh = v - h;
                        up = (after_first & (prev[k] > h)) ? (real)0 : prev[k];
                    }
                    const real am = gmi + gc[k] * b; /* dL/dU[t] */
                    const real gst = detach ? gsi : gsi + (subtract ? -(am * h) : -(am * v));
                    const real sgv = surrogate_grad(vmh, sg, p, c_atan, p_half);
                    gout = gst * sgv + (subtract ? am : am * ((real)1 - s));
                    if (vmh_saved != 2) {
                        gbc[k] += gout * up;
                        gtc[k] += -(gst * sgv) - (subtract ? am * s : (real)0);
                    }
                }
                gx[k] = gout;
                gc[k] = gout;
            }
        }
    }
    for (int64_t k = 0; k < n; k++) {
        const real b = a->beta[a->beta_scalar ? 0 : i0 + k], h = a->th[a->th_scalar ? 0 : i0 + k];
        if (a->gm0) {
            if (delayed && !subtract) a->gm0[i0 + k] = g[k] * (b * ((real)1 - (u0[k] > h ? (real)1 : (real)0)));
            else a->gm0[i0 + k] = g[k] * b;
        }
        if (a->gbeta) a->gbeta[i0 + k] = gb[k];
        if (a->gth) a->gth[i0 + k] = gt[k];
    }
}

/* Specialise the chunk bodies on the mode and the surrogate (constants after inlining), one
 * function each: a compiler's passes cost more than linearly in a function's size. */
#define FWD_FN(D, S, V, K, I) \
    CLONES static void fwd_##D##S##V##K##I(const lif_args *a, int64_t i, int64_t n) { fwd_chunk(a, i, n, D, S, V, K, I); }
#define FWD_FNS(K, I) FWD_FN(0, 0, 0, K, I) FWD_FN(0, 0, 1, K, I) FWD_FN(0, 1, 0, K, I) FWD_FN(0, 1, 1, K, I) \
    FWD_FN(0, 1, 2, K, I) FWD_FN(1, 0, 0, K, I) FWD_FN(1, 1, 0, K, I)
FWD_FNS(0, 0)
FWD_FNS(0, 1)
FWD_FNS(1, 0)
FWD_FNS(1, 1)

#define FWD_MODES(K, I)                                                    \
    switch (a->delayed * 6 + a->subtract * 3 + save) {                     \
    case 0: fwd_000##K##I(a, i, n); break;                                 \
    case 1: case 2: fwd_001##K##I(a, i, n); break;                         \
    case 3: fwd_010##K##I(a, i, n); break;                                 \
    case 4: fwd_011##K##I(a, i, n); break;                                 \
    case 5: fwd_012##K##I(a, i, n); break;                                 \
    case 6: case 7: case 8: fwd_100##K##I(a, i, n); break;                 \
    default: fwd_110##K##I(a, i, n); break;                                \
    }

static void fwd_range(const lif_args *a, int64_t i0, int64_t i1) {
    const int save = a->sbits ? 1 : a->vsave ? (a->subtract ? 2 : 1) : 0;
    for (int64_t i = i0; i < i1; i += CHUNK) {
        const int64_t n = i1 - i < CHUNK ? i1 - i : CHUNK;
        const int inplace = a->spk == a->x;
        if (a->mem) {
            if (inplace) { FWD_MODES(1, 1) } else { FWD_MODES(1, 0) }
        } else {
            if (inplace) { FWD_MODES(0, 1) } else { FWD_MODES(0, 0) }
        }
    }
}

#define BWD_FN(D, S, V, SG, O) \
    CLONES static void bwd_##D##S##V##_##SG##_##O(const lif_args *a, int64_t i, int64_t n) { bwd_chunk(a, i, n, D, S, V, SG, O); }
#define BWD_FNS(SG, O) BWD_FN(0, 0, 0, SG, O) BWD_FN(0, 1, 0, SG, O) BWD_FN(0, 1, 1, SG, O) BWD_FN(0, 1, 2, SG, O) \
    BWD_FN(1, 0, 0, SG, O) BWD_FN(1, 1, 0, SG, O)
#define BWD_SGS(O) BWD_FNS(SG_ATAN, O) BWD_FNS(SG_FAST_SIGMOID, O) BWD_FNS(SG_SIGMOID, O) \
    BWD_FNS(SG_TRIANGULAR, O) BWD_FNS(SG_STRAIGHT, O)
BWD_SGS(0)
BWD_SGS(1)

#define BWD_MODES_OVER(SG, O)                                              \
    switch (a->delayed * 2 + a->subtract) {                                \
    case 0: bwd_000_##SG##_##O(a, i, n); break;                            \
    case 1:                                                                \
        if (a->sbits_in) bwd_010_##SG##_##O(a, i, n);                      \
        else if (a->gth || a->gbeta) bwd_011_##SG##_##O(a, i, n);          \
        else bwd_012_##SG##_##O(a, i, n);                                  \
        break;                                                             \
    case 2: bwd_100_##SG##_##O(a, i, n); break;                            \
    default: bwd_110_##SG##_##O(a, i, n); break;                           \
    }
#define BWD_MODES(SG)                                                      \
    if (a->gx == a->saved) {                                               \
        BWD_MODES_OVER(SG, 1)                                              \
    } else {                                                               \
        BWD_MODES_OVER(SG, 0)                                              \
    }

static void bwd_range(const lif_args *a, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i += CHUNK) {
        const int64_t n = i1 - i < CHUNK ? i1 - i : CHUNK;
        switch (a->sg) {
        case SG_ATAN: BWD_MODES(SG_ATAN); break;
        case SG_FAST_SIGMOID: BWD_MODES(SG_FAST_SIGMOID); break;
        case SG_SIGMOID: BWD_MODES(SG_SIGMOID); break;
        case SG_TRIANGULAR: BWD_MODES(SG_TRIANGULAR); break;
        default: BWD_MODES(SG_STRAIGHT); break;
        }
    }
}

/* One item: a chunk of neurons over all T steps (parallel.h hands them out; with -fopenmp on
 * the OpenMP threads torch keeps awake). A chunk holds CHUNK neurons, or fewer (whole pieces)
 * where that leaves a thread without work. */
typedef struct {
    const lif_args *a;
    int64_t size; /* neurons per chunk */
} chunks;

static int64_t chunk_size(int64_t M, int threads) {
    const int64_t per_thread = (M + threads - 1) / (threads > 1 ? threads : 1);
    const int64_t pieces = (per_thread + SUB - 1) / SUB * SUB;
    return pieces < SUB ? SUB : pieces < CHUNK ? pieces : CHUNK; /* no neurons (M = 0): no chunk */
}

static void fwd_item(const void *p, int64_t c) {
    const chunks *q = (const chunks *)p;
    const int64_t i0 = c * q->size, i1 = i0 + q->size < q->a->M ? i0 + q->size : q->a->M;
    fwd_range(q->a, i0, i1);
}

static void bwd_item(const void *p, int64_t c) {
    const chunks *q = (const chunks *)p;
    const int64_t i0 = c * q->size, i1 = i0 + q->size < q->a->M ? i0 + q->size : q->a->M;
    bwd_range(q->a, i0, i1);
}

void lif_forward(const lif_args *a, int threads) {
    const chunks q = {a, chunk_size(a->M, threads)};
    run_items(&q, fwd_item, (a->M + q.size - 1) / q.size, threads);
}

void lif_backward(const lif_args *a, int threads) {
    const chunks q = {a, chunk_size(a->M, threads)};
    run_items(&q, bwd_item, (a->M + q.size - 1) / q.size, threads);
}
