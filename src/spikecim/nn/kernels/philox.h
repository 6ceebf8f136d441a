/* Philox4x32-10 and its normal transforms: the N(0, 1) draws of spikecim's C kernels.
 *
 * Generator: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy
 * as 1, 2, 3", SC 2011; Random123's philox.h; docs/references.md#philox). A block is four
 * 32-bit words, a keyed bijection of a 128-bit counter (c0, c1, c2, c3), ten rounds of
 *     (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2), hi(M0*c0) ^ c3 ^ k1, lo(M0*c0))
 * with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the key (k0, k1) bumped by
 * (0x9E3779B9, 0xBB67AE85) between rounds. The stream of a 64-bit seed: key
 * (seed mod 2^32, seed / 2^32), block b at counter (b mod 2^32, b / 2^32, 0, 0).
 *
 * float32 transform: the inverse CDF by table interpolation (the method of Intel MKL's
 * VSL_RNG_METHOD_GAUSSIAN_ICDF; docs/references.md#gaussian-icdf), one normal per word:
 * element 4b + k is the normal of word k of block b. Word r gives u = v 2^-33 in (0, 1/2)
 * (v = 2 (r mod 2^31) + 1, rounded once to float) and z = +-|Phi^-1(u)|, negative when r's
 * top bit is set. |Phi^-1| comes from a table over u's float binades (2^-33 .. 1/2) and the
 * top 7 bits of its mantissa (4097 edges, both edges of a bin side by side: 32 KB), computed
 * once at load time in double precision (Acklam's rational approximation and a Halley step),
 * linearly interpolated with the remaining 16 mantissa bits: |error| at most 3.3e-6 (the
 * interpolation remainder h^2/8 |Phi^-1''|, largest near |z| = 1.15), |z| up to 6.34.
 * float64 transform: Box-Muller with libm, block b giving elements 4b .. 4b+3 from the pairs
 * (w0, w1) and (w2, w3): with u1 = (w0 + 1)/2^32 in (0, 1], u2 = w1/2^32 in [0, 1),
 * R = sqrt(-2 ln u1), z[4b] = R cos(2 pi u2), z[4b + 1] = R sin(2 pi u2). float32 and
 * float64 draws of one key therefore differ. Element i's normal depends on (seed, i) only,
 * not on how the work is split over threads.
 *
 * Vector loops: Philox4x32's 32 x 32 -> 64-bit products are vpmuludq, so
 * philox4x32_10_avx512 and _avx2 run a block per 64-bit vector lane, 16 or 8 blocks per
 * step, chosen at run time. The float32 transform: icdf_blocks_avx512 and _avx2 read both
 * edges of 4 bins per 64-bit gather (_mm256_i32gather_pd) and
 * interleave the four words' normals into element order, chosen at run time,
 * icdf_blocks_scalar elsewhere; all three give the same bits (the same IEEE operations, no contraction: cbuild.FLAGS has
 * -ffp-contract=off). float64: libm, one pair after the other.
 *
 * Include it in a kernel built with cbuild.FLAGS (no -march=native: the vector loops carry
 * their own target attributes; -DNO_CLONES keeps the transform to its scalar loop).
 */
#ifndef SPIKECIM_PHILOX_H
#define SPIKECIM_PHILOX_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define PHILOX_INLINE static inline __attribute__((always_inline))
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

/* The loops below write the four words of blocks b0 .. b0+nb-1 (counter words 2, 3: c2, c3)
 * as four arrays ws apart: w[k·ws + j] is word k of block b0 + j. (A pointer and a stride in
 * registers: a struct of four pointers passed by value is stored in four parts and loaded
 * in one, which stalls the load at every call.) */
static void philox4x32_10_scalar(uint64_t b0, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1, int64_t nb,
                                 uint32_t *w, int64_t ws) {
    for (int64_t j = 0; j < nb; j++) {
        uint32_t x[4];
        philox4x32_10(b0 + (uint64_t)j, c2, c3, k0, k1, x);
        for (int k = 0; k < 4; k++) w[k * ws + j] = x[k];
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
            STORE(w + 0 * ws + j + (L) * v, x0[v]);                                                   \
            STORE(w + 1 * ws + j + (L) * v, x1[v]);                                                   \
            STORE(w + 2 * ws + j + (L) * v, x2[v]);                                                   \
            STORE(w + 3 * ws + j + (L) * v, x3[v]);                                                   \
        }                                                                                       \
    }                                                                                           \
    philox4x32_10_scalar(b0 + (uint64_t)j, c2, c3, k0, k1, nb - j, w + j, ws);

/* the low halves of four 64-bit lanes: gather them in the low 128 bits */
#define PHILOX_STORE_AVX2(dst, x)                                                               \
    _mm_storeu_si128((__m128i *)(dst),                                                          \
                     _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7))))
#define PHILOX_STORE_AVX512(dst, x) _mm256_storeu_si256((__m256i *)(dst), _mm512_cvtepi64_epi32(x))

__attribute__((target("avx2"))) static void philox4x32_10_avx2(uint64_t b0, uint32_t c2, uint32_t c3,
                                                                 uint32_t k0, uint32_t k1, int64_t nb,
                                                                 uint32_t *w, int64_t ws) {
    PHILOX_SIMD_BODY(__m256i, 4, _mm256_set1_epi64x, _mm256_add_epi64, _mm256_srli_epi64, _mm256_mul_epu32,
                     _mm256_xor_si256, _mm256_setr_epi64x(0, 1, 2, 3), PHILOX_STORE_AVX2)
}

__attribute__((target("avx512f"))) static void philox4x32_10_avx512(uint64_t b0, uint32_t c2, uint32_t c3,
                                                                      uint32_t k0, uint32_t k1, int64_t nb,
                                                                      uint32_t *w, int64_t ws) {
    PHILOX_SIMD_BODY(__m512i, 8, _mm512_set1_epi64, _mm512_add_epi64, _mm512_srli_epi64, _mm512_mul_epu32,
                     _mm512_xor_si512, _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), PHILOX_STORE_AVX512)
}
#undef PHILOX_SIMD_BODY
#undef PHILOX_STORE_AVX2
#undef PHILOX_STORE_AVX512
#endif

/* philox4x32_10_avx512 or _avx2 where the CPU has them, else one block after the other. */
static __attribute__((unused)) void philox4x32_10_blocks(uint64_t b0, uint32_t c2, uint32_t c3, uint32_t k0,
                                                        uint32_t k1, int64_t nb, uint32_t *w, int64_t ws) {
#ifdef PHILOX_SIMD
    if (__builtin_cpu_supports("avx512f")) {
        philox4x32_10_avx512(b0, c2, c3, k0, k1, nb, w, ws);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        philox4x32_10_avx2(b0, c2, c3, k0, k1, nb, w, ws);
        return;
    }
#endif
    philox4x32_10_scalar(b0, c2, c3, k0, k1, nb, w, ws);
}

/* ---- inverse CDF by table interpolation, float32 --------------------------------------- */

/* Phi^-1(p), the standard normal quantile, for p in (0, 1/2], in double precision: Acklam's
 * rational approximations (P. J. Acklam, "An algorithm for computing the inverse normal
 * cumulative distribution function", 2003; relative error below 1.15e-9) and one step of
 * Halley's method on erfc, as Acklam gives it, which brings it to about double precision. */
static double philox_inverse_normal_lower(double p) {
    static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                3.754408661907416e+00};
    double x;
    if (p < 0.02425) {
        const double q = sqrt(-2.0 * log(p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else {
        const double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    }
    const double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
    const double u = e * sqrt(2.0 * M_PI) * exp(x * x / 2.0);
    return x - u / (1.0 + x * u / 2.0);
}

/* The table: word r's u is v * 2^-33 with v = 2 (r mod 2^31) + 1 (odd, so u in (0, 1/2),
 * never 0), v rounded once to float f in [1, 2^32]. f's exponent e (0 .. 32) and the top
 * PHILOX_ICDF_K bits j of its mantissa name the bin i = e * 2^K + j (i is f's bit pattern
 * shifted right by 23 - K, less 127 * 2^K), whose left edge is u_i = 2^(e - 33) (1 + j/2^K);
 * the next bin's left edge is this bin's right edge, also across binades. The table holds
 * -Phi^-1(u_i) >= 0 rounded to float, u_{32 * 2^K} = 1/2 (z = 0), and one entry more so
 * that f = 2^32 reads a right edge too. */
#define PHILOX_ICDF_K 7
#define PHILOX_ICDF_BINS (32 << PHILOX_ICDF_K)
#define PHILOX_ICDF_FRAC ((1u << (23 - PHILOX_ICDF_K)) - 1u) /* the mantissa bits below the bin's */
#define PHILOX_ICDF_STEP (1.0f / (float)(1u << (23 - PHILOX_ICDF_K)))
/* bin i's two edges side by side, (2i, 2i + 1): one 64-bit gather reads both */
static float philox_icdf_table[2 * (PHILOX_ICDF_BINS + 1)];

__attribute__((constructor)) static void philox_icdf_table_init(void) {
    float edge[PHILOX_ICDF_BINS + 2];
    for (int i = 0; i < PHILOX_ICDF_BINS; i++) {
        const double u = ldexp(1.0 + (double)(i & ((1 << PHILOX_ICDF_K) - 1)) / (1 << PHILOX_ICDF_K),
                               (i >> PHILOX_ICDF_K) - 33);
        edge[i] = (float)-philox_inverse_normal_lower(u);
    }
    edge[PHILOX_ICDF_BINS] = edge[PHILOX_ICDF_BINS + 1] = 0.0f; /* u = 1/2 */
    for (int i = 0; i <= PHILOX_ICDF_BINS; i++) {
        philox_icdf_table[2 * i] = edge[i];
        philox_icdf_table[2 * i + 1] = edge[i + 1];
    }
}

/* The normal of word r: |z| = -Phi^-1(u) interpolated linearly inside u's bin with the
 * remaining 23 - K mantissa bits of f, z = -|z| when r's top bit is set. */
PHILOX_INLINE float icdf_f32(uint32_t r) {
    const uint32_t v = (r << 1) | 1u;
    /* v rounded once: both parts are exact in float */
    const float f = (float)(int32_t)(v >> 16) * 65536.0f + (float)(int32_t)(v & 0xffffu);
    uint32_t bits;
    memcpy(&bits, &f, 4);
    const int32_t i = (int32_t)(bits >> (23 - PHILOX_ICDF_K)) - (127 << PHILOX_ICDF_K);
    const float t = (float)(int32_t)(bits & PHILOX_ICDF_FRAC) * PHILOX_ICDF_STEP;
    const float lo = philox_icdf_table[2 * i], hi = philox_icdf_table[2 * i + 1];
    const float a = lo + (hi - lo) * t;
    uint32_t za;
    memcpy(&za, &a, 4);
    za ^= r & 0x80000000u;
    float z;
    memcpy(&z, &za, 4);
    return z;
}

/* The transform of nb blocks' words into z[0 .. 4nb): z[4j + k] = icdf_f32(wk[j]). */
static void icdf_blocks_scalar(const uint32_t *restrict w0, const uint32_t *restrict w1,
                               const uint32_t *restrict w2, const uint32_t *restrict w3, int64_t nb,
                               float *restrict z) {
    for (int64_t j = 0; j < nb; j++) {
        z[4 * j] = icdf_f32(w0[j]);
        z[4 * j + 1] = icdf_f32(w1[j]);
        z[4 * j + 2] = icdf_f32(w2[j]);
        z[4 * j + 3] = icdf_f32(w3[j]);
    }
}

#ifdef PHILOX_SIMD
/* icdf_f32 on 8 (AVX2) or 16 (AVX-512) words: the same IEEE operations, the table read by
 * 4-lane 64-bit gathers of a bin's two edges (_mm256_i32gather_pd). */
__attribute__((target("avx2"))) static inline __m256 icdf_avx2(const uint32_t *w) {
    const __m256i r = _mm256_loadu_si256((const __m256i *)w);
    const __m256i v = _mm256_or_si256(_mm256_slli_epi32(r, 1), _mm256_set1_epi32(1));
    const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 16)), _mm256_set1_ps(65536.0f)),
                                   _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0xffff))));
    const __m256i bits = _mm256_castps_si256(f);
    const __m256i i = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23 - PHILOX_ICDF_K),
                                       _mm256_set1_epi32(127 << PHILOX_ICDF_K));
    const __m256 t = _mm256_mul_ps(
        _mm256_cvtepi32_ps(_mm256_and_si256(bits, _mm256_set1_epi32(PHILOX_ICDF_FRAC))), _mm256_set1_ps(PHILOX_ICDF_STEP));
    /* the pairs of elements (0 1 4 5) and (2 3 6 7): per 128-bit half the even floats are
     * the left edges of four elements in order, the odd ones the right edges */
    const __m256i ip = _mm256_permute4x64_epi64(i, 0xD8);
    const __m256 g0 = _mm256_castpd_ps(_mm256_i32gather_pd((const double *)philox_icdf_table, _mm256_castsi256_si128(ip), 8));
    const __m256 g1 = _mm256_castpd_ps(_mm256_i32gather_pd((const double *)philox_icdf_table, _mm256_extracti128_si256(ip, 1), 8));
    const __m256 lo = _mm256_shuffle_ps(g0, g1, 0x88), hi = _mm256_shuffle_ps(g0, g1, 0xDD);
    const __m256 a = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_sub_ps(hi, lo), t));
    return _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0x80000000u))));
}

__attribute__((target("avx512f"))) static inline __m512 icdf_avx512(const uint32_t *w) {
    const __m512i r = _mm512_loadu_si512(w);
    const __m512i v = _mm512_or_si512(_mm512_slli_epi32(r, 1), _mm512_set1_epi32(1));
    const __m512 f = _mm512_cvtepu32_ps(v); /* rounded to nearest, as the two exact parts' sum */
    const __m512i bits = _mm512_castps_si512(f);
    const __m512i i = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23 - PHILOX_ICDF_K),
                                       _mm512_set1_epi32(127 << PHILOX_ICDF_K));
    const __m512 t = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_and_si512(bits, _mm512_set1_epi32(PHILOX_ICDF_FRAC))), _mm512_set1_ps(PHILOX_ICDF_STEP));
    /* the edge pairs of elements 0 .. 7 in g0 and 8 .. 15 in g1, by four 4-lane gathers (on
     * Zen 5 6 % faster than two 8-lane ones: benchmarks/bench_cpu_limits.py); the even floats
     * are the left edges, the odd ones the right edges */
    const __m256i i0 = _mm512_castsi512_si256(i), i1 = _mm512_extracti64x4_epi64(i, 1);
    const double *table = (const double *)philox_icdf_table;
    const __m256d p0 = _mm256_i32gather_pd(table, _mm256_castsi256_si128(i0), 8);
    const __m256d p1 = _mm256_i32gather_pd(table, _mm256_extracti128_si256(i0, 1), 8);
    const __m256d p2 = _mm256_i32gather_pd(table, _mm256_castsi256_si128(i1), 8);
    const __m256d p3 = _mm256_i32gather_pd(table, _mm256_extracti128_si256(i1, 1), 8);
    const __m512 g0 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(p0), p1, 1));
    const __m512 g1 = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(p2), p3, 1));
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512 lo = _mm512_permutex2var_ps(g0, even, g1);
    const __m512 hi = _mm512_permutex2var_ps(g0, _mm512_add_epi32(even, _mm512_set1_epi32(1)), g1);
    const __m512 a = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_sub_ps(hi, lo), t));
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(a), _mm512_and_si512(r, _mm512_set1_epi32((int)0x80000000u))));
}

/* 8 blocks' normals: a, b, c, d (words 0 .. 3 of blocks j .. j+7) interleaved into z[0 .. 32) */
__attribute__((target("avx2"))) static void icdf_blocks_avx2(const uint32_t *restrict w0, const uint32_t *restrict w1,
                                                             const uint32_t *restrict w2, const uint32_t *restrict w3,
                                                             int64_t nb, float *restrict z) {
    int64_t j = 0;
    for (; j + 8 <= nb; j += 8) {
        const __m256 a = icdf_avx2(w0 + j), b = icdf_avx2(w1 + j), c = icdf_avx2(w2 + j), d = icdf_avx2(w3 + j);
        /* per 128-bit half h: ab_lo = (a0 b0 a1 b1), ab_hi = (a2 b2 a3 b3) of its four blocks */
        const __m256d ab_lo = _mm256_castps_pd(_mm256_unpacklo_ps(a, b)), ab_hi = _mm256_castps_pd(_mm256_unpackhi_ps(a, b));
        const __m256d cd_lo = _mm256_castps_pd(_mm256_unpacklo_ps(c, d)), cd_hi = _mm256_castps_pd(_mm256_unpackhi_ps(c, d));
        /* tk: block 4h + k of each half h */
        const __m256 t0 = _mm256_castpd_ps(_mm256_unpacklo_pd(ab_lo, cd_lo));
        const __m256 t1 = _mm256_castpd_ps(_mm256_unpackhi_pd(ab_lo, cd_lo));
        const __m256 t2 = _mm256_castpd_ps(_mm256_unpacklo_pd(ab_hi, cd_hi));
        const __m256 t3 = _mm256_castpd_ps(_mm256_unpackhi_pd(ab_hi, cd_hi));
        float *o = z + 4 * j;
        _mm256_storeu_ps(o, _mm256_permute2f128_ps(t0, t1, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(t2, t3, 0x20));
        _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(t0, t1, 0x31));
        _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(t2, t3, 0x31));
    }
    icdf_blocks_scalar(w0 + j, w1 + j, w2 + j, w3 + j, nb - j, z + 4 * j);
}

__attribute__((target("avx512f"))) static void icdf_blocks_avx512(const uint32_t *restrict w0,
                                                                  const uint32_t *restrict w1,
                                                                  const uint32_t *restrict w2,
                                                                  const uint32_t *restrict w3, int64_t nb,
                                                                  float *restrict z) {
    int64_t j = 0;
    for (; j + 16 <= nb; j += 16) {
        const __m512 a = icdf_avx512(w0 + j), b = icdf_avx512(w1 + j), c = icdf_avx512(w2 + j),
                     d = icdf_avx512(w3 + j);
        const __m512d ab_lo = _mm512_castps_pd(_mm512_unpacklo_ps(a, b)), ab_hi = _mm512_castps_pd(_mm512_unpackhi_ps(a, b));
        const __m512d cd_lo = _mm512_castps_pd(_mm512_unpacklo_ps(c, d)), cd_hi = _mm512_castps_pd(_mm512_unpackhi_ps(c, d));
        /* tk: block 4l + k of each 128-bit lane l */
        const __m512 t0 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_lo, cd_lo));
        const __m512 t1 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_lo, cd_lo));
        const __m512 t2 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_hi, cd_hi));
        const __m512 t3 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_hi, cd_hi));
        /* the 4 x 4 transpose of 128-bit lanes: u0 = blocks (0 4 1 5), u1 = (2 6 3 7), u2 = (8 12 9 13), u3 = (10 14 11 15) */
        const __m512 u0 = _mm512_shuffle_f32x4(t0, t1, 0x44), u1 = _mm512_shuffle_f32x4(t2, t3, 0x44);
        const __m512 u2 = _mm512_shuffle_f32x4(t0, t1, 0xEE), u3 = _mm512_shuffle_f32x4(t2, t3, 0xEE);
        float *o = z + 4 * j;
        _mm512_storeu_ps(o, _mm512_shuffle_f32x4(u0, u1, 0x88));
        _mm512_storeu_ps(o + 16, _mm512_shuffle_f32x4(u0, u1, 0xDD));
        _mm512_storeu_ps(o + 32, _mm512_shuffle_f32x4(u2, u3, 0x88));
        _mm512_storeu_ps(o + 48, _mm512_shuffle_f32x4(u2, u3, 0xDD));
    }
    icdf_blocks_scalar(w0 + j, w1 + j, w2 + j, w3 + j, nb - j, z + 4 * j);
}
#endif

/* icdf_blocks_avx512 or _avx2 where the CPU has them (not in a NO_CLONES build), else
 * icdf_blocks_scalar: the same bits. */
static __attribute__((unused)) void icdf_blocks_f32(const uint32_t *w0, const uint32_t *w1, const uint32_t *w2,
                                                   const uint32_t *w3, int64_t nb, float *z) {
#if defined(PHILOX_SIMD) && !defined(NO_CLONES)
    if (__builtin_cpu_supports("avx512f")) {
        icdf_blocks_avx512(w0, w1, w2, w3, nb, z);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        icdf_blocks_avx2(w0, w1, w2, w3, nb, z);
        return;
    }
#endif
    icdf_blocks_scalar(w0, w1, w2, w3, nb, z);
}

/* The normals of blocks b0 .. b0+nb-1 (nb <= PHILOX_GROUP) into z[0 .. 4nb). */
static __attribute__((unused)) void philox_normal_blocks_f32(uint64_t seed, uint64_t b0, int64_t nb, float *z) {
    uint32_t w[4][PHILOX_GROUP];
    philox4x32_10_blocks(b0, 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32), nb, w[0], PHILOX_GROUP);
    icdf_blocks_f32(w[0], w[1], w[2], w[3], nb, z);
}

#if defined(PHILOX_SIMD) && !defined(NO_CLONES)
/* philox_normal_blocks_f32 by the AVX2 loops whatever else the CPU has (the same bits): for a
 * kernel's AVX2 path (conv_adc_cpu.c), which runs on CPUs with AVX-512 too where asked to. */
static __attribute__((unused)) void philox_normal_blocks_f32_avx2(uint64_t seed, uint64_t b0, int64_t nb, float *z) {
    uint32_t w[4][PHILOX_GROUP];
    philox4x32_10_avx2(b0, 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32), nb, w[0], PHILOX_GROUP);
    icdf_blocks_avx2(w[0], w[1], w[2], w[3], nb, z);
}
#endif

/* ---- Box-Muller, float64 (libm) ------------------------------------------------------- */

/* The normals of blocks b0 .. b0+nb-1 (nb <= PHILOX_GROUP) into z[0 .. 4nb). */
static __attribute__((unused)) void philox_normal_blocks_f64(uint64_t seed, uint64_t b0, int64_t nb, double *z) {
    uint32_t w[4][PHILOX_GROUP];
    philox4x32_10_blocks(b0, 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32), nb, w[0], PHILOX_GROUP);
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
#if defined(PHILOX_SIMD) && !defined(NO_CLONES)
PHILOX_NORMALS(philox_normals_f32_avx2, float, philox_normal_blocks_f32_avx2) /* on a CPU with AVX2 */
#endif
#undef PHILOX_NORMALS

#endif
