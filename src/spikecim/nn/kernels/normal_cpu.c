/* Gaussian draws for the analog crossbars: a counter-based generator and fused noise passes.
 *
 * Generator: Philox4x64-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
 * as 1, 2, 3", SC 2011; docs/references.md#philox), key (seed, 0), counter (b, 0, 0, 0) for
 * block b: its four 64-bit words are words 4b .. 4b+3 of the stream, the same words as
 * numpy.random.Philox(key=seed, counter=b - 1).random_raw() (numpy steps its counter before
 * each block).
 *
 * Transform: Box-Muller. Word j gives the normals of elements 2j and 2j + 1: with
 * r1 = its low 32 bits, r2 = its high 32 bits, u1 = (r1 + 1)/2^32 in (0, 1],
 * u2 = r2/2^32 in [0, 1), R = sqrt(-2 ln u1):
 *     z[2j] = R cos(2 pi u2),  z[2j + 1] = R sin(2 pi u2).
 * Element i's normal depends on (seed, i) only: the result does not depend on how the work
 * is split over threads. float64 evaluates the formula with libm; float32 with Cephes'
 * logf polynomial and Taylor polynomials of sin and cos on a quadrant (absolute error of z
 * about 1e-6) in loops the compiler vectorises. Philox4x64 is scalar (64x64 -> 128-bit
 * products): about 1.3 ns per normal on one core, Box-Muller about 1 ns.
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
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"

#ifndef REAL
#define REAL float
#endif
typedef REAL real;
#if defined(REAL_IS_DOUBLE)
#define SQRT sqrt
#define FABS fabs
#else
#define SQRT sqrtf
#define FABS fabsf
#endif

#define CHUNK 4096 /* elements per work item (even: a word's two normals stay together) */
#define MAX_THREADS 64
#define INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NO_CLONES)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

enum { OP_NORMAL = 0, OP_READ = 1, OP_DIFF_READ = 2, OP_ADD = 3, OP_WRITE = 4 };

typedef struct {
    int64_t n;     /* elements of out */
    uint64_t seed; /* Philox key word 0 */
    int32_t op;
    real alpha, floor;
    real *out;
    const real *g, *std;
} noise_args;

/* ---- Philox4x64-10 ------------------------------------------------------------------ */

#define PHILOX_M0 0xD2E7470EE14C6C93ULL
#define PHILOX_M1 0xCA5A826395121157ULL
#define PHILOX_W0 0x9E3779B97F4A7C15ULL
#define PHILOX_W1 0xBB67AE8584CAA73BULL

INLINE void philox4x64_10(uint64_t block, uint64_t k0, uint64_t k1, uint64_t out[4]) {
    uint64_t c0 = block, c1 = 0, c2 = 0, c3 = 0;
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        const __uint128_t p0 = (__uint128_t)PHILOX_M0 * c0;
        const __uint128_t p1 = (__uint128_t)PHILOX_M1 * c2;
        const uint64_t hi0 = (uint64_t)(p0 >> 64), lo0 = (uint64_t)p0;
        const uint64_t hi1 = (uint64_t)(p1 >> 64), lo1 = (uint64_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* Two blocks in lockstep: their products are independent, so the CPU overlaps them (one
 * block alone waits on the latency of every round; more than two spill registers). Not
 * vectorised: AVX2 has no 64 x 64 -> 128-bit product. */
__attribute__((optimize("no-tree-vectorize", "unroll-loops"))) static void philox_pair(
    uint64_t block0, uint64_t seed, uint64_t *w) {
    uint64_t c0[2] = {block0, block0 + 1}, c1[2] = {0, 0}, c2[2] = {0, 0}, c3[2] = {0, 0};
    uint64_t k0 = seed, k1 = 0;
    for (int r = 0; r < 10; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        for (int l = 0; l < 2; l++) {
            const __uint128_t p0 = (__uint128_t)PHILOX_M0 * c0[l];
            const __uint128_t p1 = (__uint128_t)PHILOX_M1 * c2[l];
            const uint64_t n0 = (uint64_t)(p1 >> 64) ^ c1[l] ^ k0, n2 = (uint64_t)(p0 >> 64) ^ c3[l] ^ k1;
            c1[l] = (uint64_t)p1;
            c3[l] = (uint64_t)p0;
            c0[l] = n0;
            c2[l] = n2;
        }
    }
    for (int l = 0; l < 2; l++) {
        w[4 * l] = c0[l];
        w[4 * l + 1] = c1[l];
        w[4 * l + 2] = c2[l];
        w[4 * l + 3] = c3[l];
    }
}

/* Words w0 .. w0+nw-1 of the stream of `seed`. */
static void philox_words(uint64_t seed, int64_t w0, int64_t nw, uint64_t *w) {
    int64_t j = 0;
    uint64_t buf[4];
    while (j < nw) {
        const int64_t word = w0 + j, lane = word & 3;
        if (lane == 0 && nw - j >= 8) { /* two whole blocks straight into w */
            philox_pair((uint64_t)(word >> 2), seed, w + j);
            j += 8;
            continue;
        }
        philox4x64_10((uint64_t)(word >> 2), seed, 0, buf);
        for (int64_t k = lane; k < 4 && j < nw; k++) w[j++] = buf[k];
    }
}

/* ---- Box-Muller ------------------------------------------------------------------- */

#if defined(REAL_IS_DOUBLE)
CLONES static void box_muller(const uint64_t *w, int64_t nw, real *z) {
    for (int64_t j = 0; j < nw; j++) {
        const double u1 = ((double)(uint32_t)w[j] + 1.0) * 0x1p-32;
        const double u2 = (double)(uint32_t)(w[j] >> 32) * 0x1p-32;
        const double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
        z[2 * j] = r * cos(t);
        z[2 * j + 1] = r * sin(t);
    }
}
#else
/* ln x for x in (0, 1], Cephes logf (the mantissa in [sqrt(1/2), sqrt(2)), a degree-9
 * polynomial, the exponent's ln 2 in two parts). */
INLINE float log_unit(float x) {
    uint32_t ix;
    memcpy(&ix, &x, 4);
    int32_t e = (int32_t)(ix >> 23) - 126; /* x = m * 2^e, m in [0.5, 1) */
    ix = (ix & 0x007fffffu) | 0x3f000000u;
    float m;
    memcpy(&m, &ix, 4);
    const int small = m < 0.707106781186547524f;
    e -= small;
    const float f = (small ? m + m : m) - 1.0f;
    const float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    const float fe = (float)e;
    float y = f * z * p;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return f + y + 0.693359375f * fe;
}

/* Box-Muller on words w[0 .. nw) (nw <= BM_BLOCK), in three loops the compiler vectorises
 * eight lanes wide: split the words, transform, interleave the pairs. */
#define BM_BLOCK 512
CLONES static void box_muller_block(const uint64_t *w, int64_t nw, real *z) {
    uint32_t lo[BM_BLOCK], hi[BM_BLOCK];
    float zc[BM_BLOCK], zs[BM_BLOCK];
    const float half_pi = 1.57079632679489662f;
    for (int64_t j = 0; j < nw; j++) {
        lo[j] = (uint32_t)w[j];
        hi[j] = (uint32_t)(w[j] >> 32);
    }
    for (int64_t j = 0; j < nw; j++) {
        const uint32_t r1 = lo[j], r2 = hi[j];
        /* (r1 + 1)/2^32 rounded once: both parts are exact in float */
        const float u1 = ((float)(int32_t)(r1 >> 16) * 65536.0f + (float)(int32_t)((r1 & 0xffffu) + 1u)) * 0x1p-32f;
        const float r = sqrtf(-2.0f * log_unit(u1));
        /* 2 pi u2 = q pi/2 + t: quadrant q from the top two bits, t in [0, pi/2) */
        const int32_t q = (int32_t)(r2 >> 30);
        const float t = (float)(int32_t)(r2 & 0x3fffffffu) * (0x1p-30f * half_pi);
        const float t2 = t * t;
        /* Taylor to t^13 and t^14: remainders below 6e-8 and 7e-9 on [0, pi/2) */
        float s = -1.6059043836821614e-10f;
        s = s * t2 + 2.5052108385441720e-8f;
        s = s * t2 - 2.7557319223985893e-6f;
        s = s * t2 + 1.9841269841269841e-4f;
        s = s * t2 - 8.3333333333333333e-3f;
        s = s * t2 + 1.6666666666666667e-1f;
        s = t - t * t2 * s;
        float c = 1.1470745597729725e-11f;
        c = c * t2 - 2.0876756987868099e-9f;
        c = c * t2 + 2.7557319223985888e-7f;
        c = c * t2 - 2.4801587301587302e-5f;
        c = c * t2 + 1.3888888888888889e-3f;
        c = c * t2 - 4.1666666666666667e-2f;
        c = c * t2 + 0.5f;
        c = 1.0f - t2 * c;
        /* rotate by q quarter turns: (cos, sin) -> (-sin, cos) per quarter */
        const int32_t odd = q & 1;
        const float cq = odd ? s : c, sq = odd ? c : s;
        const float sign_c = ((q + 1) & 2) ? -1.0f : 1.0f; /* q = 1, 2 */
        const float sign_s = (q & 2) ? -1.0f : 1.0f;     /* q = 2, 3 */
        zc[j] = r * (sign_c * cq);
        zs[j] = r * (sign_s * sq);
    }
    for (int64_t j = 0; j < nw; j++) {
        z[2 * j] = zc[j];
        z[2 * j + 1] = zs[j];
    }
}

static void box_muller(const uint64_t *w, int64_t nw, real *z) {
    for (int64_t j = 0; j < nw; j += BM_BLOCK)
        box_muller_block(w + j, nw - j < BM_BLOCK ? nw - j : BM_BLOCK, z + 2 * j);
}
#endif

/* The normals of elements i0 .. i0+n-1 (n <= CHUNK) in z[skip ...]: returns skip (0 or 1). */
static int64_t normals(uint64_t seed, int64_t i0, int64_t n, uint64_t *w, real *z) {
    const int64_t skip = i0 & 1, nw = (skip + n + 1) >> 1;
    philox_words(seed, i0 >> 1, nw, w);
    box_muller(w, nw, z);
    return skip;
}

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
    uint64_t w[CHUNK / 2 + 1];
    real z[CHUNK + 2], z1[CHUNK + 2];
    const int64_t s0 = normals(a->seed, i0, n, w, z);
    int64_t s1 = 0;
    if (a->op == OP_DIFF_READ) s1 = normals(a->seed, a->n + i0, n, w, z1);
    apply(a, i0, n, z + s0, z1 + s1);
}

/* One item: a chunk of CHUNK values (parallel.h hands them out); which thread draws a chunk
 * changes nothing in it. */
static void noise_item(const void *p, int64_t c) {
    const noise_args *a = (const noise_args *)p;
    const int64_t i0 = c * CHUNK;
    run_chunk(a, i0, a->n - i0 < CHUNK ? a->n - i0 : CHUNK);
}

void noise_run(const noise_args *a, int threads) { run_items(a, noise_item, (a->n + CHUNK - 1) / CHUNK, threads); }

/* The raw stream, for tests against numpy's Philox: words w0 .. w0+nw-1 of `seed`. */
void philox_raw(uint64_t seed, int64_t w0, int64_t nw, uint64_t *w) { philox_words(seed, w0, nw, w); }

/* ---- crossbars written at run time: operand tiles to the signed read matrix ----------
 *
 * spikecim/analog/dynamic.py (AnalogMatMul) writes b [B, K, N] into tiles of R rows x C
 * columns at every call. For the differential mapping whose idle cell (G_min) reads
 * exactly, this pass goes from b to the matrix the product needs,
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
    uint64_t seed;
    int32_t calibrated, clip, q_max, base, cond_n, read_pcm;
    real bound, shift, top, ws, floor, span, g_min, g_max, c0;
    const real *b;
    real *out;   /* mt */
    real *scale; /* [B, n_in, n_out] */
} written_args;

typedef struct {
    const written_args *a;
    int64_t items, next;
} written_pool;

#if defined(REAL_IS_DOUBLE)
INLINE double pow065(double x) { return exp(log(x) * 0.65); }
#else
/* exp(y) for |y| < 80, Cephes expf: y = n ln 2 + f, |f| <= ln 2 / 2, a degree-5 polynomial
 * of f, 2^n put in the exponent bits (relative error about 1e-7, in loops the compiler
 * vectorises, where libm's expf is a call per element). */
INLINE float exp_small(float y) {
    const float t = y * 1.44269504088896341f;
    const int32_t n = (int32_t)(t + (t < 0 ? -0.5f : 0.5f));
    const float fn = (float)n;
    float f = y - fn * 0.693359375f;
    f = f - fn * -2.12194440e-4f;
    const float z = f * f;
    float p = 1.9875691500e-4f;
    p = p * f + 1.3981999507e-3f;
    p = p * f + 8.3334519073e-3f;
    p = p * f + 4.1665795894e-2f;
    p = p * f + 1.6666665459e-1f;
    p = p * f + 5.0000001201e-1f;
    p = p * z + f + 1.0f;
    const uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* x^0.65 = exp(0.65 ln x) for the PCM read noise, whose Q_s only uses it above 0.044, i.e.
 * for x above 0.044^(1/0.65) = 0.00828: smaller x (0, subnormals) are evaluated at 0.008,
 * which gives 0.0434 < 0.044 and the same Q_s. log_unit (Cephes logf) holds for every
 * positive normal float. */
INLINE float pow065(float x) {
    x = x > 0.008f ? x : 0.008f;
    return exp_small(log_unit(x) * 0.65f);
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
INLINE void written_magnitudes(real *x, real *sg, int64_t n, real scale, int calibrated, int clip,
                                      real bound, real shift, real top) {
    (void)bound;
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

/* |v| as its bit pattern: for non-negative reals the unsigned order of the bits is the order
 * of the values and every NaN lies above +inf, so an integer max (which vectorises, where a
 * compare of reals with a NaN test is a chain of scalar steps) finds the abs-max. */
#if defined(REAL_IS_DOUBLE)
typedef uint64_t real_bits;
#define ABS_MASK 0x7fffffffffffffffULL
#define INF_BITS 0x7ff0000000000000ULL
#else
typedef uint32_t real_bits;
#define ABS_MASK 0x7fffffffU
#define INF_BITS 0x7f800000U
#endif

/* max(m, |x[0 .. n)|); *nan set when an x is NaN (m is then returned unchanged). */
INLINE real abs_max(const real *x, int64_t n, real m, int *nan) {
    real_bits mb = 0;
    for (int64_t c = 0; c < n; c++) {
        real_bits b;
        memcpy(&b, x + c, sizeof b);
        b &= ABS_MASK;
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
 * elements item*R*W .. of mt. mag, sgn: R*n_out*C reals each. */
CLONES static void written_item(const written_args *a, int64_t item, real *mag, real *sgn, uint64_t *w, real *zw,
                         real *zr) {
    const int64_t R = a->R, C = a->C, n_out = a->n_out, K = a->K, N = a->N, S = a->S, NC = n_out * C;
    const int64_t bi = item / a->n_in, i = item % a->n_in, W = n_out * S * C, L = R * W;
    const int64_t total = a->B * a->n_in * L;
    const real *bm = a->b + bi * K * N;
    real *scale = a->scale + item * n_out, *out = a->out + item * L;
    for (int64_t o = 0; o < n_out; o++) {
        real m = 0;
        if (a->calibrated) {
            m = a->bound;
        } else {
            const int64_t r_end = K - i * R < R ? K - i * R : R, c_end = N - o * C < C ? N - o * C : C;
            int nan = 0;
            for (int64_t r = 0; r < r_end; r++) m = abs_max(bm + (i * R + r) * N + o * C, c_end, m, &nan);
            /* all zero, or a NaN (amax is NaN, which nonzero_scale maps to 1): 1; a NaN entry
             * stays NaN in its cells */
            m = m > 0 && !nan ? m : 1;
        }
        scale[o] = m;
    }
    /* |entry| after ClipFormer, and its sign: each row padded with zeros, then loops the
     * compiler vectorises (no branch on the entries' signs) */
    const real bound = a->bound, shift = a->shift, top = a->top;
    if (S == 1) mag = out; /* one slice: mt's layout is (r, o, c), the magnitudes' own */
    if (n_out == 1) { /* N = C: the item's rows are one contiguous block of b, one pass */
        const int64_t rows = K - i * R < R ? K - i * R : R;
        memcpy(mag, bm + i * R * N, sizeof(real) * (size_t)(rows * N));
        memset(mag + rows * N, 0, sizeof(real) * (size_t)((R - rows) * N));
        written_magnitudes(mag, sgn, R * N, scale[0], a->calibrated, a->clip, bound, shift, top);
    } else
    for (int64_t r = 0; r < R; r++) {
        const int64_t k = i * R + r, valid = k < K ? N : 0;
        real *mr = mag + r * NC, *sr = sgn + r * NC;
        if (valid) memcpy(mr, bm + k * N, sizeof(real) * (size_t)N);
        memset(mr + valid, 0, sizeof(real) * (size_t)(NC - valid));
        for (int64_t o = 0; o < n_out; o++)
            written_magnitudes(mr + o * C, sr + o * C, C, scale[o], a->calibrated, a->clip, bound, shift, top);
    }
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
            if (a->ws != 0) pw = zw + normals(a->seed, first, n, w, zw);
            if (a->read_pcm) pr = zr + normals(a->seed, total + first, n, w, zr);
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

static void *written_worker(void *p) {
    written_pool *q = (written_pool *)p;
    const written_args *a = q->a;
    const int64_t width = a->R * a->n_out * a->C;
    real *buf = (real *)malloc(sizeof(real) * (size_t)(2 * width + 2 * (CHUNK + 2)));
    uint64_t *w = (uint64_t *)malloc(sizeof(uint64_t) * (CHUNK / 2 + 1));
    if (!buf || !w) {
        free(buf);
        free(w);
        return (void *)1;
    }
    for (;;) {
        const int64_t it = __atomic_fetch_add(&q->next, 1, __ATOMIC_RELAXED);
        if (it >= q->items) break;
        written_item(a, it, buf, buf + width, w, buf + 2 * width, buf + 2 * width + CHUNK + 2);
    }
    free(buf);
    free(w);
    return 0;
}

/* Returns 0, or 1 when a work buffer could not be allocated (the caller falls back). */
int written_run(const written_args *a, int threads) {
    written_pool q = {a, a->B * a->n_in, 0};
    if (threads > q.items) threads = (int)q.items;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int k = 1; k < threads; k++) started[k] = pthread_create(&tid[k], 0, written_worker, &q) == 0;
    int failed = written_worker(&q) != 0;
    for (int k = 1; k < threads; k++)
        if (started[k]) {
            void *r = 0;
            pthread_join(tid[k], &r);
            failed |= r != 0;
        }
    return failed;
}
