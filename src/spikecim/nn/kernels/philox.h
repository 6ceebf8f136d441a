/* Philox4x32-10 and the Box-Muller transform: the N(0, 1) draws of spikecim's C kernels.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
 * as 1, 2, 3", SC 2011; Random123's philox.h; docs/references.md#philox). A block is four
 * 32-bit words, a keyed bijection of a 128-bit counter (c0, c1, c2, c3), ten rounds of
 *     (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
 * with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key (k0, k1) bumped by
 * (0x9E3779B9, 0xBB67AE85) between rounds. The stream of a 64-bit seed: key
 * (seed mod 2^32, seed / 2^32), block b at counter (b mod 2^32, b / 2^32, 0, 0).
 *
 * Transform: Box-Muller. Block b gives the normals of elements 4b .. 4b+3, words (w0, w1)
 * the first pair and (w2, w3) the second: with u1 = (w0 + 1)/2^32 in (0, 1],
 * u2 = w1/2^32 in [0, 1), R = sqrt(-2 ln u1),
 *     z[4b] = R cos(2 pi u2),  z[4b + 1] = R sin(2 pi u2)      (w2, w3: z[4b + 2], z[4b + 3]).
 * Element i's normal depends on (seed, i) only, not on how the work is split over threads.
 *
 * Speed (one core, CPU time, benchmarks/bench_noise.py): Philox4x32's 32 x 32 -> 64-bit
 * products are vpmuludq, so philox4x32_10_avx512 and _avx2 run a block per 64-bit vector
 * lane, 16 or 8 blocks per step (about 0.35 and 0.7 ns per word, where Philox4x64-10's
 * scalar 128-bit products took 1.4 ns per normal), chosen at run time. float32 Box-Muller:
 * Cephes' logf polynomial, and Cephes' sinf and cosf polynomials on [-pi/4, pi/4] after an
 * exact quadrant reduction of u2's bits (absolute error of z about 1e-6), in a loop the
 * compiler vectorises, cloned for AVX-512, AVX2 and a default target (about 0.6, 0.9 and
 * 1.5 ns per normal); the clones give the same bits (the same IEEE operations, no
 * contraction: cbuild.FLAGS has -ffp-contract=off). float64: libm, one pair after the other.
 *
 * Include it in a kernel built with cbuild.FLAGS (no -march=native: the Philox loops carry
 * their own target attributes, the Box-Muller loop is a target clone).
 */
#ifndef SPIKECIM_PHILOX_H
#define SPIKECIM_PHILOX_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PHILOX_INLINE static inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NO_CLONES)
#define PHILOX_CLONES __attribute__((target_clones("avx512f", "avx2", "default"), unused))
#else
#define PHILOX_CLONES __attribute__((unused))
#endif
#define PHILOX_GROUP 256 /* blocks per pass of the vectorised loops (1024 normals) */

/* ---- Philox4x32-10 -------------------------------------------------------------------- */

/* The block of counter (b mod 2^32, b / 2^32, c2, c3) under key (k0, k1). */
PHILOX_INLINE void philox4x32_10(uint64_t b, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, uint32_t w[4]) {
    uint32_t x0 = (uint32_t)b, x1 = (uint32_t)(b >> 32), x2 = c2, x3 = c3;
#pragma GCC unroll 10
    for (int r = 0; r < 10; r++) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * x0, p1 = (uint64_t)0xCD9E8D57u * x2;
        const uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0, y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x1 = (uint32_t)p1;
        x3 = (uint32_t)p0;
        x0 = y0;
        x2 = y2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    w[0] = x0;
    w[1] = x1;
    w[2] = x2;
    w[3] = x3;
}

/* The four words of blocks b0 .. b0+nb-1 (counter words 2, 3: c2, c3) as four arrays:
 * w[k][j] is word k of block b0 + j. */
typedef struct {
    uint32_t *restrict w0, *restrict w1, *restrict w2, *restrict w3;
} philox_words;

static void philox4x32_10_scalar(uint64_t b0, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, int64_t nb,
                                 philox_words w) {
    for (int64_t j = 0; j < nb; j++) {
        uint32_t x[4];
        philox4x32_10(b0 + (uint64_t)j, c2, c3, k0, k1, x);
        w.w0[j] = x[0];
        w.w1[j] = x[1];
        w.w2[j] = x[2];
        w.w3[j] = x[3];
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PHILOX_SIMD 1

/* One body for the AVX2 and AVX-512 loops: a block per 64-bit vector lane, its words in the
 * lanes' low halves (vpmuludq multiplies the low halves; the high halves hold junk that
 * never reaches a low half: xor is bitwise and a product's high half is shifted down from
 * a clean product), two vectors in flight to hide the product's latency. V: the vector
 * type, L: its lanes, SET1, ADD, SRLI, MUL, XOR: its operations, LANE: (0, 1, .., L-1),
 * STORE(dst, x): the low halves of x's lanes to dst[0 .. L). */
#define PHILOX_SIMD_BODY(V, L, SET1, ADD, SRLI, MUL, XOR, LANE, STORE)                           \
    const V m0 = SET1(0xD2511F53), m1 = SET1(0xCD9E8D57), lane = LANE;                          \
    V ka[10], kb[10];                                                                           \
    for (int r = 0; r < 10; r++) {                                                              \
        ka[r] = SET1(k0 + (uint32_t)r * 0x9E3779B9u);                                           \
        kb[r] = SET1(k1 + (uint32_t)r * 0xBB67AE85u);                                           \
    }                                                                                           \
    int64_t j = 0;                                                                              \
    for (; j + 2 * (L) <= nb; j += 2 * (L)) {                                                   \
        V x0[2], x1[2], x2[2], x3[2];                                                           \
        for (int v = 0; v < 2; v++) {                                                           \
            x0[v] = ADD(SET1((int64_t)(b0 + (uint64_t)(j + (L) * v))), lane);                   \
            x1[v] = SRLI(x0[v], 32);                                                            \
            x2[v] = SET1(c2);                                                                   \
            x3[v] = SET1(c3);                                                                   \
        }                                                                                       \
        _Pragma("GCC unroll 10") for (int r = 0; r < 10; r++)                                   \
            _Pragma("GCC unroll 2") for (int v = 0; v < 2; v++) {                               \
            const V p0 = MUL(x0[v], m0), p1 = MUL(x2[v], m1);                                   \
            x0[v] = XOR(XOR(SRLI(p1, 32), x1[v]), ka[r]);                                       \
            x2[v] = XOR(XOR(SRLI(p0, 32), x3[v]), kb[r]);                                       \
            x1[v] = p1;                                                                         \
            x3[v] = p0;                                                                         \
        }                                                                                       \
        for (int v = 0; v < 2; v++) {                                                           \
            STORE(w.w0 + j + (L) * v, x0[v]);                                                   \
            STORE(w.w1 + j + (L) * v, x1[v]);                                                   \
            STORE(w.w2 + j + (L) * v, x2[v]);                                                   \
            STORE(w.w3 + j + (L) * v, x3[v]);                                                   \
        }                                                                                       \
    }                                                                                           \
    const philox_words rest = {w.w0 + j, w.w1 + j, w.w2 + j, w.w3 + j};                         \
    philox4x32_10_scalar(b0 + (uint64_t)j, c2, c3, k0, k1, nb - j, rest);

/* the low halves of four 64-bit lanes: gather them in the low 128 bits */
#define PHILOX_STORE_AVX2(dst, x)                                                               \
    _mm_storeu_si128((__m128i *)(dst),                                                          \
                     _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7))))
#define PHILOX_STORE_AVX512(dst, x) _mm256_storeu_si256((__m256i *)(dst), _mm512_cvtepi64_epi32(x))

__attribute__((target("avx2"))) static void philox4x32_10_avx2(uint64_t b0, uint32_t c2, uint32_t c3,
                                                                 uint32_t k0, uint32_t k1, int64_t nb,
                                                                 philox_words w) {
    PHILOX_SIMD_BODY(__m256i, 4, _mm256_set1_epi64x, _mm256_add_epi64, _mm256_srli_epi64, _mm256_mul_epu32,
                     _mm256_xor_si256, _mm256_setr_epi64x(0, 1, 2, 3), PHILOX_STORE_AVX2)
}

__attribute__((target("avx512f"))) static void philox4x32_10_avx512(uint64_t b0, uint32_t c2, uint32_t c3,
                                                                      uint32_t k0, uint32_t k1, int64_t nb,
                                                                      philox_words w) {
    PHILOX_SIMD_BODY(__m512i, 8, _mm512_set1_epi64, _mm512_add_epi64, _mm512_srli_epi64, _mm512_mul_epu32,
                     _mm512_xor_si512, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), PHILOX_STORE_AVX512)
}
#undef PHILOX_SIMD_BODY
#undef PHILOX_STORE_AVX2
#undef PHILOX_STORE_AVX512
#endif

/* philox4x32_10_avx512 or _avx2 where the CPU has them, else one block after the other. */
static __attribute__((unused)) void philox4x32_10_blocks(uint64_t b0, uint32_t c2, uint32_t c3, uint32_t k0,
                                                        uint32_t k1, int64_t nb, philox_words w) {
#ifdef PHILOX_SIMD
    if (__builtin_cpu_supports("avx512f")) {
        philox4x32_10_avx512(b0, c2, c3, k0, k1, nb, w);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        philox4x32_10_avx2(b0, c2, c3, k0, k1, nb, w);
        return;
    }
#endif
    philox4x32_10_scalar(b0, c2, c3, k0, k1, nb, w);
}

/* ---- Box-Muller, float32 -------------------------------------------------------------- */

/* ln x for x in (0, 1] (and every positive normal float), Cephes logf: the mantissa in
 * [sqrt(1/2), sqrt(2)), a degree-9 polynomial, the exponent's ln 2 in two parts. */
PHILOX_INLINE float log_unit(float x) {
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

/* The pair (R cos 2 pi u2, R sin 2 pi u2) of words r1 (u1 = (r1 + 1)/2^32), r2 (u2 = r2/2^32). */
PHILOX_INLINE void box_muller_f32(uint32_t r1, uint32_t r2, float *zc, float *zs) {
    /* (r1 + 1)/2^32 rounded once: both parts are exact in float */
    const float u1 = ((float)(int32_t)(r1 >> 16) * 65536.0f + (float)(int32_t)((r1 & 0xffffu) + 1u)) * 0x1p-32f;
    const float r = sqrtf(-2.0f * log_unit(u1));
    /* 2 pi u2 = q pi/2 + t, t in [-pi/4, pi/4): an eighth of a turn added to r2 (mod 2^32)
     * puts the quadrant q in its top two bits */
    const uint32_t v = r2 + 0x20000000u;
    const int32_t q = (int32_t)(v >> 30);
    const float t = (float)((int32_t)(v & 0x3fffffffu) - 0x20000000) * (0x1p-30f * 1.57079632679489662f);
    const float t2 = t * t;
    /* Cephes sinf and cosf on [-pi/4, pi/4] */
    float s = -1.9515295891e-4f;
    s = s * t2 + 8.3321608736e-3f;
    s = s * t2 - 1.6666654611e-1f;
    s = s * t2 * t + t;
    float c = 2.443315711809948e-5f;
    c = c * t2 - 1.388731625493765e-3f;
    c = c * t2 + 4.166664568298827e-2f;
    c = c * t2 * t2 - 0.5f * t2 + 1.0f;
    /* rotate by q quarter turns: (cos, sin) -> (-sin, cos) per quarter */
    const int32_t odd = q & 1;
    const float cq = odd ? s : c, sq = odd ? c : s;
    const float sign_c = ((q + 1) & 2) ? -1.0f : 1.0f; /* q = 1, 2 */
    const float sign_s = (q & 2) ? -1.0f : 1.0f;     /* q = 2, 3 */
    *zc = r * (sign_c * cq);
    *zs = r * (sign_s * sq);
}

/* Box-Muller of nb blocks' words into z[0 .. 4nb), one block per vector lane. */
PHILOX_CLONES static void box_muller_blocks_f32(const uint32_t *restrict w0, const uint32_t *restrict w1,
                                                const uint32_t *restrict w2, const uint32_t *restrict w3,
                                                int64_t nb, float *restrict z) {
    for (int64_t j = 0; j < nb; j++) {
        box_muller_f32(w0[j], w1[j], z + 4 * j, z + 4 * j + 1);
        box_muller_f32(w2[j], w3[j], z + 4 * j + 2, z + 4 * j + 3);
    }
}

/* The normals of blocks b0 .. b0+nb-1 (nb <= PHILOX_GROUP) into z[0 .. 4nb). */
static __attribute__((unused)) void philox_normal_blocks_f32(uint64_t seed, uint64_t b0, int64_t nb, float *z) {
    uint32_t w[4][PHILOX_GROUP];
    const philox_words words = {w[0], w[1], w[2], w[3]};
    philox4x32_10_blocks(b0, 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32), nb, words);
    box_muller_blocks_f32(w[0], w[1], w[2], w[3], nb, z);
}

/* ---- Box-Muller, float64 (libm) ------------------------------------------------------- */

/* The normals of blocks b0 .. b0+nb-1 (nb <= PHILOX_GROUP) into z[0 .. 4nb). */
static __attribute__((unused)) void philox_normal_blocks_f64(uint64_t seed, uint64_t b0, int64_t nb, double *z) {
    uint32_t w[4][PHILOX_GROUP];
    const philox_words words = {w[0], w[1], w[2], w[3]};
    philox4x32_10_blocks(b0, 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32), nb, words);
    for (int64_t j = 0; j < 2 * nb; j++) {
        const uint32_t *lo = j & 1 ? w[2] : w[0], *hi = j & 1 ? w[3] : w[1];
        const double u1 = ((double)lo[j >> 1] + 1.0) * 0x1p-32, u2 = (double)hi[j >> 1] * 0x1p-32;
        const double r = sqrt(-2.0 * log(u1)), t = 2.0 * M_PI * u2;
        z[2 * j] = r * cos(t);
        z[2 * j + 1] = r * sin(t);
    }
}

/* ---- any range of elements ------------------------------------------------------------ */

/* The normals of elements i0 .. i0+n-1 of the stream of `seed` into z[0 .. n). */
#define PHILOX_NORMALS(NAME, REAL_T, BLOCKS)                                                    \
    static __attribute__((unused)) void NAME(uint64_t seed, int64_t i0, int64_t n, REAL_T *z) {  \
        REAL_T buf[4 * PHILOX_GROUP];                                                           \
        for (int64_t e = i0, end = i0 + n; e < end;) {                                          \
            const int64_t b0 = e >> 2, skip = e & 3;                                            \
            int64_t nb = (end - 4 * b0 + 3) >> 2;                                               \
            nb = nb < PHILOX_GROUP ? nb : PHILOX_GROUP;                                         \
            if (skip == 0 && 4 * nb <= end - e) { /* whole blocks straight into z */            \
                BLOCKS(seed, (uint64_t)b0, nb, z + (e - i0));                                   \
                e += 4 * nb;                                                                    \
                continue;                                                                       \
            }                                                                                   \
            BLOCKS(seed, (uint64_t)b0, nb, buf);                                                \
            const int64_t take = 4 * nb - skip < end - e ? 4 * nb - skip : end - e;             \
            memcpy(z + (e - i0), buf + skip, sizeof(REAL_T) * (size_t)take);                    \
            e += take;                                                                          \
        }                                                                                       \
    }
PHILOX_NORMALS(philox_normals_f32, float, philox_normal_blocks_f32)
PHILOX_NORMALS(philox_normals_f64, double, philox_normal_blocks_f64)
#undef PHILOX_NORMALS

#endif
