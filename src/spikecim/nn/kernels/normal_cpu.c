/* Gaussian draws for the analog crossbars: a counter-based generator and fused noise passes.
 *
 * Generator and transform: philox.h (beside this file; docs/references.md#philox):
 * Philox4x32-10 with key (seed mod 2^32, seed / 2^32), block b at counter
 * (b mod 2^32, b / 2^32, 0, 0), block b giving the normals of elements 4b .. 4b+3.
 * Element i's normal depends on (seed, i) only: the result does not depend on how the work
 * is split over threads. Philox runs 16 (AVX-512) or 8 (AVX2) blocks per loop step
 * (vpmuludq: 32 x 32 -> 64-bit products). float32: the table inverse CDF, the normal of
 * element i from word i alone (|error| at most 3.3e-6; gathers, AVX-512 or AVX2 chosen at
 * run time); float64: Box-Muller with libm. Its cost: benchmarks/bench_noise.py.
 *
 * Fused passes, one pass over memory each (out may alias g):
 *   OP_NORMAL     out = z
 *   OP_READ       out = max(g + std*z, 0)                         (a noisy read)
 *   OP_DIFF_READ  out = max(g0 + s0*z0, 0) - max(g1 + s1*z1, 0)   (g, std: [2, n]; z0 the
 *                 normals of elements 0 .. n-1, z1 those of n .. 2n-1)
 *   OP_ADD        out += alpha*z                                  (output noise)
 *   OP_WRITE      out = max(g + (sqrt(g)*alpha)*z, floor)         (write noise, g >= 0)
 *
 * written_run (at the end of this file): the crossbars written at run time, from the operand
 * to the signed read matrix in one pass (wrapped by spikecim/analog/written_kernel.py).
 *
 * Built by spikecim/analog/noise.py with cbuild.FLAGS (-ffp-contract=off: no fused
 * multiply-add, so the fused passes equal the same expressions evaluated by torch).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "real.h"
#include "philox.h"
#include "cephes.h"

#if defined(REAL_IS_DOUBLE)
#define SQRT sqrt
#define FABS fabs
#else
#define SQRT sqrtf
#define FABS fabsf
#endif

#define CHUNK 4096 /* elements per work item */
#define INLINE static inline __attribute__((always_inline))

enum { OP_NORMAL = 0, OP_READ = 1, OP_DIFF_READ = 2, OP_ADD = 3, OP_WRITE = 4 };

typedef struct {
    int64_t n;     /* elements of out */
    uint64_t seed; /* Philox key word 0 */
    int32_t op;
    real alpha, floor;
    real *out;
    const real *g, *std;
} noise_args;

#if defined(REAL_IS_DOUBLE)
#define normals philox_normals_f64
#else
#define normals philox_normals_f32
#endif

/* ---- the fused passes ------------------------------------------------------------- */

CLONES static void apply(const noise_args *a, int64_t i0, int64_t n, const real *z, const real *z1) {
    real *out = a->out + i0;
    const real *g = a->g ? a->g + i0 : 0, *sd = a->std ? a->std + i0 : 0;
    const real alpha = a->alpha, lo = a->floor, zero = 0;
    switch (a->op) {
    case OP_NORMAL:
        for (int64_t k = 0; k < n; k++) out[k] = z[k];
        break;
    case OP_READ:
        for (int64_t k = 0; k < n; k++) {
            const real v = z[k] * sd[k] + g[k];
            out[k] = v < zero ? zero : v; /* NaN stays NaN, as torch.clamp */
        }
        break;
    case OP_DIFF_READ: {
        const real *g1 = g + a->n, *s1 = sd + a->n;
        for (int64_t k = 0; k < n; k++) {
            real v0 = z[k] * sd[k] + g[k], v1 = z1[k] * s1[k] + g1[k];
            v0 = v0 < zero ? zero : v0;
            v1 = v1 < zero ? zero : v1;
            out[k] = v0 - v1;
        }
        break;
    }
    case OP_ADD:
        for (int64_t k = 0; k < n; k++) out[k] = out[k] + z[k] * alpha;
        break;
    default: /* OP_WRITE */
        for (int64_t k = 0; k < n; k++) {
            const real v = z[k] * (SQRT(g[k]) * alpha) + g[k];
            out[k] = v < lo ? lo : v;
        }
        break;
    }
}

static void run_chunk(const noise_args *a, int64_t i0, int64_t n) {
    real z[CHUNK], z1[CHUNK];
    normals(a->seed, i0, n, z);
    if (a->op == OP_DIFF_READ) normals(a->seed, a->n + i0, n, z1);
    apply(a, i0, n, z, z1);
}

/* One item: a chunk of CHUNK values (parallel.h hands them out); which thread draws a chunk
 * changes nothing in it. */
static void noise_item(const void *p, int64_t c) {
    const noise_args *a = (const noise_args *)p;
    const int64_t i0 = c * CHUNK;
    run_chunk(a, i0, a->n - i0 < CHUNK ? a->n - i0 : CHUNK);
}

void noise_run(const noise_args *a, int threads) { run_items(a, noise_item, (a->n + CHUNK - 1) / CHUNK, threads); }

/* Raw Philox4x32-10 blocks, for tests: counters (b0 + j mod 2^32, (b0 + j) / 2^32, c2, c3) for
 * j < nb under key (k0, k1), into w[4j .. 4j+3], by the loop `isa` names (0: the one this
 * CPU runs, 1: one block after the other, 2: AVX2, 3: AVX-512). Returns -1 when this CPU or
 * build has no such loop, else 0. */
int philox_raw(uint64_t b0, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, int64_t nb, uint32_t *w, int isa) {
    void (*run)(uint64_t, uint32_t, uint32_t, uint32_t, uint32_t, int64_t, uint32_t *, int64_t) = philox4x32_10_blocks;
    if (isa == 1) run = philox4x32_10_scalar;
#ifdef PHILOX_SIMD
    if (isa == 2 && __builtin_cpu_supports("avx2")) run = philox4x32_10_avx2;
    if (isa == 3 && __builtin_cpu_supports("avx512f")) run = philox4x32_10_avx512;
#endif
    if (isa > 1 && run == philox4x32_10_blocks) return -1;
    uint32_t x[4][PHILOX_GROUP];
    for (int64_t j0 = 0; j0 < nb; j0 += PHILOX_GROUP) {
        const int64_t m = nb - j0 < PHILOX_GROUP ? nb - j0 : PHILOX_GROUP;
        run(b0 + (uint64_t)j0, c2, c3, k0, k1, m, x[0], PHILOX_GROUP);
        for (int64_t j = 0; j < m; j++)
            for (int k = 0; k < 4; k++) w[4 * (j0 + j) + k] = x[k][j];
    }
    return 0;
}

/* The float32 transform of words w[0 .. 4nb), for tests: z[4j + k] = icdf_f32(w[4j + k]) (the
 * words of block j) by the loop `isa` names (0: the one this CPU runs, 1: one word after the
 * other, 2: AVX2, 3: AVX-512). Returns -1 when this CPU or build has no such loop, else 0. */
int icdf_raw(const uint32_t *w, int64_t nb, float *z, int isa) {
    void (*run)(const uint32_t *, const uint32_t *, const uint32_t *, const uint32_t *, int64_t, float *) =
        icdf_blocks_f32;
    if (isa == 1) run = icdf_blocks_scalar;
#ifdef PHILOX_SIMD
    if (isa == 2 && __builtin_cpu_supports("avx2")) run = icdf_blocks_avx2;
    if (isa == 3 && __builtin_cpu_supports("avx512f")) run = icdf_blocks_avx512;
#endif
    if (isa > 1 && run == icdf_blocks_f32) return -1;
    uint32_t x[4][PHILOX_GROUP];
    for (int64_t j0 = 0; j0 < nb; j0 += PHILOX_GROUP) {
        const int64_t m = nb - j0 < PHILOX_GROUP ? nb - j0 : PHILOX_GROUP;
        for (int64_t j = 0; j < m; j++)
            for (int k = 0; k < 4; k++) x[k][j] = w[4 * (j0 + j) + k];
        run(x[0], x[1], x[2], x[3], m, z + 4 * j0);
    }
    return 0;
}

/* ---- crossbars written at run time: operand tiles to the signed read matrix ----------
 *
 * spikecim/analog/dynamic.py (AnalogMatMul) writes b [B, K, N] into tiles of R rows x C
 * columns at every call. b is read through strides: entry (k, n) of matrix bi lies at
 * b[(bi / L1)*s0 + (bi % L1)*s1 + k*sK + n*sN], so a head-split or transposed operand
 * (K of attention, [batch, heads, K, N] seen through a view) is read where it lies. For
 * the differential mapping whose idle cell (G_min) reads exactly, this pass goes from b to
 * the matrix the product needs,
 *     mt[b, i, r, (o*S + s)*C + c]  (b's entry k = i*R + r, n = o*C + c; 0 beyond K, N)
 * in one read of b and one write of mt, with, per entry (units of the span
 * u = (G - G_min)/(G_max - G_min)):
 *   wn    = v / scale[b, i, o]  (tile: scale = abs-max of the tile, 1 if it is all zero)
 *         = clamp(v / bound, -1, 1)                (calibrated range)
 *   ClipFormer on |wn|: a = min(max(|wn| - shift, 0), top)   (shift = s*G_min/span,
 *         top = (beta*G_max - G_min)/span); the sign is that of the clipped entry
 *   slice s: q = rint(a*q_max), level = ((q / base^s) mod base)/(base - 1)
 *         (no weight_bits: level = a); conductance levels: rint(level*n)/n
 *   write noise (TxSim): u = max(u + (sqrt(u)*ws)*z_w, floor), z_w = normal of element j
 *   PCM read noise at t = 0 (aihwkit's PCMLikeNoiseModel, Nandakumar et al., ICECS 2019;
 *         spikecim/analog/devices.py PCMDevice.read_noise_std_us):
 *         g = u*span + G_min, Q_s = 1/max(exp(0.65 ln(|g|/G_max)), 0.044)
 *         (= min(0.0088/max((|g|/G_max)^0.65, 1e-3), 0.2) / 0.0088),
 *         sigma = |Q_s*c0*g| with c0 = 0.0088*sqrt(ln((t0 + t_read)/(2 t_read)))*scale,
 *         g = max(g + sigma*z_r, 0), u = (g - G_min)/span, z_r = normal of element total + j
 *   mt = u * sign
 * where j is the element's flat index in mt and total = B*n_in*R*n_out*S*C: the normals are
 * those of noise_run's stream for the same seed, whatever the number of threads. */

typedef struct {
    int64_t B, K, N, R, C, n_in, n_out, S;
    int64_t L1, s0, s1, sK, sN; /* b's strides (above) */
    uint64_t seed;
    int32_t calibrated, clip, q_max, base, cond_n, read_pcm;
    real bound, shift, top, ws, floor, span, g_min, g_max, c0;
    const real *b;
    real *out;   /* mt */
    real *scale; /* [B, n_in, n_out] */
} written_args;

#if defined(REAL_IS_DOUBLE)
INLINE double pow065(double x) { return exp(log(x) * 0.65); }
#else
/* exp(y) for |y| < 80 (cephes.h), n = y log2(e) rounded half away from zero. */
INLINE float exp_small(float y) {
    const float t = y * 1.44269504088896341f;
    const int32_t n = (int32_t)(t + (t < 0 ? -0.5f : 0.5f));
    const float p = cephes_exp_reduced(y, (float)n);
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* x^0.65 = exp(0.65 ln x) for the PCM read noise, whose Q_s only uses it above 0.044, i.e.
 * for x above 0.044^(1/0.65) = 0.00828: smaller x (0, subnormals) are evaluated at 0.008,
 * which gives 0.0434 < 0.044 and the same Q_s. cephes_logf holds for every positive normal
 * float. */
INLINE float pow065(float x) {
    x = x > 0.008f ? x : 0.008f;
    return exp_small(cephes_logf(x) * 0.65f);
}
#endif

/* The noise of elements j0 .. j0+n-1 of mt, in place on their levels u, then the signs sg
 * (NULL: none). */
INLINE void written_noise(const written_args *a, int64_t n, const real *zw, const real *zr, const real *sg,
                                 real *u) {
    const real ws = a->ws, lo = a->floor, span = a->span, g_min = a->g_min, c0 = a->c0;
    /* reciprocals: a product instead of a division per cell (the values move by an ulp) */
    const real inv_g_max = (real)1 / a->g_max, inv_span = (real)1 / span;
    if (zw)
        for (int64_t k = 0; k < n; k++) {
            const real v = zw[k] * (SQRT(u[k]) * ws) + u[k];
            u[k] = v < lo ? lo : v;
        }
    if (zr)
        for (int64_t k = 0; k < n; k++) {
            const real g = u[k] * span + g_min;
            real p = pow065(FABS(g) * inv_g_max);
            p = p < (real)0.044 ? (real)0.044 : p;
            const real sd = (real)1 / p * c0 * g, sigma = sd < 0 ? -sd : sd;
            real v = zr[k] * sigma + g;
            v = v < 0 ? 0 : v;
            u[k] = (v - g_min) * inv_span;
        }
    if (sg)
        for (int64_t k = 0; k < n; k++) u[k] = u[k] * sg[k];
}

/* x[0 .. n) (one row of one tile) -> |wn| after ClipFormer in x, the sign in sg. */
INLINE void written_magnitudes(real *x, real *sg, int64_t n, real scale, int calibrated, int clip, real shift,
                               real top) {
    for (int64_t c = 0; c < n; c++) {
        real wn = x[c] / scale;
        if (calibrated) wn = wn < -1 ? -1 : (wn > 1 ? 1 : wn);
        real mg = FABS(wn);
        if (clip) {
            mg = mg - shift;
            mg = mg < 0 ? 0 : mg;
            mg = mg > top ? top : mg;
        }
        const real s = (real)((wn > 0) - (wn < 0));
        x[c] = mg;
        sg[c] = (mg > 0 ? s : (real)0) + (mg - mg); /* + 0, or NaN: NaN stays NaN */
    }
}

/* max(m, |x[0 .. n)|); *nan set when an x is NaN (m is then returned unchanged). */
INLINE real abs_max(const real *x, int64_t n, real m, int *nan) {
    ubits mb = 0;
    for (int64_t c = 0; c < n; c++) {
        const ubits b = abs_bits(x[c]);
        mb = b > mb ? b : mb;
    }
    if (mb > INF_BITS) {
        *nan = 1;
        return m;
    }
    real v;
    memcpy(&v, &mb, sizeof v);
    return v > m ? v : m;
}

/* One work item: rows i*R .. i*R+R-1 of matrix b (item = b*n_in + i), the contiguous
 * elements item*R*W .. of mt. mag, sgn: R*n_out*C reals each (mag unused, may be NULL, with
 * one slice); zw, zr: CHUNK reals each. */
CLONES static void written_item(const written_args *a, int64_t item, real *mag, real *sgn, real *zw,
                         real *zr) {
    const int64_t R = a->R, C = a->C, n_out = a->n_out, K = a->K, N = a->N, S = a->S, NC = n_out * C;
    const int64_t bi = item / a->n_in, i = item % a->n_in, W = n_out * S * C, L = R * W;
    const int64_t total = a->B * a->n_in * L, sK = a->sK, sN = a->sN;
    const real *bm = a->b + (bi / a->L1) * a->s0 + (bi % a->L1) * a->s1;
    real *scale = a->scale + item * n_out, *out = a->out + item * L;
    if (S == 1) mag = out; /* one slice: mt's layout is (r, o, c), the magnitudes' own */
    /* the item's rows of b, each padded with zeros to n_out*C (rows beyond K: zeros) */
    const int64_t rows = K - i * R < R ? K - i * R : R;
    for (int64_t r = 0; r < rows; r++) {
        const real *src = bm + (i * R + r) * sK;
        real *mr = mag + r * NC;
        if (sN == 1)
            memcpy(mr, src, sizeof(real) * (size_t)N);
        else
            for (int64_t c = 0; c < N; c++) mr[c] = src[c * sN];
        memset(mr + N, 0, sizeof(real) * (size_t)(NC - N));
    }
    memset(mag + rows * NC, 0, sizeof(real) * (size_t)((R - rows) * NC));
    for (int64_t o = 0; o < n_out; o++) {
        real m = 0;
        if (a->calibrated) {
            m = a->bound;
        } else {
            const int64_t c_end = N - o * C < C ? N - o * C : C;
            int nan = 0;
            for (int64_t r = 0; r < rows; r++) m = abs_max(mag + r * NC + o * C, c_end, m, &nan);
            /* all zero, or a NaN (amax is NaN, which nonzero_scale maps to 1): 1; a NaN entry
             * stays NaN in its cells */
            m = m > 0 && !nan ? m : 1;
        }
        scale[o] = m;
    }
    /* |entry| after ClipFormer, and its sign: loops the compiler vectorises (no branch on
     * the entries' signs) */
    const real shift = a->shift, top = a->top;
    if (n_out == 1) /* N = C: the item's rows are one block, one pass */
        written_magnitudes(mag, sgn, R * N, scale[0], a->calibrated, a->clip, shift, top);
    else
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < n_out; o++)
                written_magnitudes(mag + r * NC + o * C, sgn + r * NC + o * C, C, scale[o], a->calibrated, a->clip,
                                   shift, top);
    /* the target levels of each slice, in mt's order (r, o, s, c) */
    const int bpc = __builtin_ctz((unsigned)a->base);
    const int64_t digit_mask = a->base - 1;
    const real q_max = (real)a->q_max, cond_n = (real)a->cond_n, top_digit = (real)(a->base - 1);
    for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t s = 0; s < S; s++) {
                const real *mr = mag + r * NC + o * C;
                real *u = out + r * W + (o * S + s) * C;
                if (a->q_max)
                    for (int64_t c = 0; c < C; c++) {
                        real q = (real)rint(mr[c] * q_max);
                        q = q > q_max ? q_max : q;
                        u[c] = (real)((((int64_t)q) >> (s * bpc)) & digit_mask) / top_digit;
                    }
                else if (u != mr)
                    for (int64_t c = 0; c < C; c++) u[c] = mr[c];
                if (a->cond_n)
                    for (int64_t c = 0; c < C; c++) {
                        real q = (real)rint(u[c] * cond_n);
                        q = q < 0 ? 0 : (q > cond_n ? cond_n : q);
                        u[c] = q / cond_n;
                    }
            }
    /* write and read noise over the item's contiguous elements (and, for one slice, whose
     * signs are in mt's layout, the sign) */
    if (a->ws != 0 || a->read_pcm || S == 1)
        for (int64_t j0 = 0; j0 < L; j0 += CHUNK) {
            const int64_t n = L - j0 < CHUNK ? L - j0 : CHUNK, first = item * L + j0;
            const real *pw = 0, *pr = 0;
            if (a->ws != 0) normals(a->seed, first, n, zw), pw = zw;
            if (a->read_pcm) normals(a->seed, total + first, n, zr), pr = zr;
            written_noise(a, n, pw, pr, S == 1 ? sgn + j0 : 0, out + j0);
        }
    /* the sign of several slices */
    if (S > 1)
        for (int64_t r = 0; r < R; r++)
            for (int64_t o = 0; o < n_out; o++)
                for (int64_t s = 0; s < S; s++) {
                    const real *sr = sgn + r * NC + o * C;
                    real *u = out + r * W + (o * S + s) * C;
                    for (int64_t c = 0; c < C; c++) u[c] = u[c] * sr[c];
                }
}

/* The work of written_run: set `failed` when an item's buffer could not be allocated. */
typedef struct {
    const written_args *a;
    int32_t failed;
} written_job;

/* One item (parallel.h hands them out): its magnitudes and signs, R*n_out*C reals each (one
 * slice writes its magnitudes straight into mt), in a buffer of its own; its normals, CHUNK
 * at a time, on the stack as run_chunk's. */
static void written_one(const void *p, int64_t item) {
    written_job *job = (written_job *)p;
    const written_args *a = job->a;
    const int64_t width = a->R * a->n_out * a->C;
    real *buf = (real *)malloc(sizeof(real) * (size_t)((a->S == 1 ? 1 : 2) * width));
    if (!buf) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    real zw[CHUNK], zr[CHUNK];
    written_item(a, item, a->S == 1 ? 0 : buf + width, buf, zw, zr);
    free(buf);
}

/* Returns 0, or 1 when a work buffer could not be allocated (the caller falls back). */
int written_run(const written_args *a, int threads) {
    written_job job = {a, 0};
    run_items(&job, written_one, a->B * a->n_in, threads);
    return job.failed;
}
