/* The MLGRU / HGRN recurrence of the MatMul-free LM for the CPU: the token loop of
 * spikecim.nn.recurrence.mlgru_scan forward, and its gradients backward, in one call each.
 *
 * Built by spikecim/nn/kernels/recurrence_cpu.py with `cc -O2 -ffp-contract=off -DREAL=float`
 * (and once more with double). Per element (one (batch, channel) pair) and token t:
 *
 *   h_t = f_t h_{t-1} + i_t,   h_{-1} = h0,
 *
 * computed as the reference loop computes it (no fused multiply-add: bit for bit). Backward,
 * with g_t = dL/dh_t from the outputs and G_t the whole gradient reaching h_t:
 *
 *   G_{L-1} = g_{L-1},  G_t = g_t + f_{t+1} G_{t+1},
 *   dL/di_t = G_t,  dL/df_t = G_t h_{t-1},  dL/dh0 = f_0 G_0.
 *
 * Layout: i, f, h, gh, gi, gf are time-major [L, M] contiguous (M = batch x channels); h0
 * and gh0 are [M]. Work is split over elements: a thread takes a chunk of CHUNK elements and
 * runs every token on it.
 */
#include <stdint.h>

#include "parallel.h"
#include "real.h"

#if defined(__GNUC__) && !defined(__clang__)
#define IVDEP _Pragma("GCC ivdep")
#else
#define IVDEP
#endif

#ifndef CHUNK
#define CHUNK 512
#endif

typedef struct {
    int64_t L, M;
    const real *i, *f, *h0;
    real *h;              /* forward output, read again by the backward pass */
    const real *gh;       /* backward: dL/dh of every token */
    real *gi, *gf, *gh0;  /* backward outputs */
} mlgru_args;

CLONES static void fwd_chunk(const mlgru_args *a, int64_t i0, int64_t n) {
    for (int64_t t = 0; t < a->L; t++) {
        const int64_t off = t * a->M + i0;
        const real *restrict x = a->i + off, *restrict f = a->f + off;
        const real *restrict prev = t > 0 ? a->h + off - a->M : a->h0 + i0;
        real *restrict h = a->h + off;
        IVDEP
        for (int64_t j = 0; j < n; j++) h[j] = f[j] * prev[j] + x[j];
    }
}

/* One step of the reverse recursion over a chunk, has_next a constant at each call: the
 * branch on fnext outside the loop (inside it: masked loads from a NULL fnext, a microcode
 * assist each). */
static inline __attribute__((always_inline)) void bwd_step(const real *restrict g, const real *restrict fnext,
                                                          const real *restrict prev, real *restrict gi,
                                                          real *restrict gf, real *restrict G, int64_t n,
                                                          const int has_next) {
    IVDEP
    for (int64_t j = 0; j < n; j++) {
        const real Gt = has_next ? g[j] + fnext[j] * G[j] : g[j];
        gi[j] = Gt;
        gf[j] = Gt * prev[j];
        G[j] = Gt;
    }
}

CLONES static void bwd_chunk(const mlgru_args *a, int64_t i0, int64_t n) {
    real G[CHUNK];
    for (int64_t j = 0; j < n; j++) G[j] = 0;
    for (int64_t t = a->L - 1; t >= 0; t--) {
        const int64_t off = t * a->M + i0;
        const real *restrict g = a->gh + off;
        const real *restrict prev = t > 0 ? a->h + off - a->M : a->h0 + i0;
        real *restrict gi = a->gi + off, *restrict gf = a->gf + off;
        if (t + 1 < a->L) bwd_step(g, a->f + off + a->M, prev, gi, gf, G, n, 1);
        else bwd_step(g, 0, prev, gi, gf, G, n, 0);
    }
    const real *restrict f0 = a->f + i0;
    for (int64_t j = 0; j < n; j++) a->gh0[i0 + j] = f0[j] * G[j];
}

/* One item: a chunk of CHUNK elements, forward or backward (parallel.h hands them out). */
static void fwd_item(const void *p, int64_t c) {
    const mlgru_args *a = (const mlgru_args *)p;
    const int64_t i0 = c * CHUNK;
    fwd_chunk(a, i0, i0 + CHUNK < a->M ? CHUNK : a->M - i0);
}

static void bwd_item(const void *p, int64_t c) {
    const mlgru_args *a = (const mlgru_args *)p;
    const int64_t i0 = c * CHUNK;
    bwd_chunk(a, i0, i0 + CHUNK < a->M ? CHUNK : a->M - i0);
}

void mlgru_forward(const mlgru_args *a, int threads) { run_items(a, fwd_item, (a->M + CHUNK - 1) / CHUNK, threads); }
void mlgru_backward(const mlgru_args *a, int threads) { run_items(a, bwd_item, (a->M + CHUNK - 1) / CHUNK, threads); }
