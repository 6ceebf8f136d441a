/* Ways of reading the float32 inverse-CDF table of philox.h (two edges of a bin per 64-bit
 * entry), in ns per normal on one core, from the same Philox words:
 *   philox          the words alone (philox4x32_10_blocks);
 *   4-lane gathers  the shipped transform (icdf_blocks_avx512): four 4-lane 64-bit gathers
 *                   per 16 normals;
 *   8-lane gathers  two 8-lane 64-bit gathers per 16 normals;
 *   scalar loads    16 scalar 64-bit loads into a staging buffer, then vector loads;
 *   pair inserts    the 64-bit entries inserted two by two into vectors;
 *   no gathers      plain loads of 16 consecutive entries instead (wrong values: what the
 *                   transform costs without its table reads);
 * one line each, "<label><TAB><value>"; and the ns of an 8-lane gather with all lanes, half, a quarter and none on.
 * Without AVX-512, the AVX2 loops' words and transform alone ("philox (AVX2)", "AVX2 gathers").
 * Every variant but "no gathers" is checked to give the shipped transform's bits. Built by
 * benchmarks/bench_cpu_limits.py with the kernels' folder on the include path. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "philox.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define TARGET __attribute__((target("avx512f,avx512dq")))

/* icdf_avx512's arithmetic around a read of the 16 bins' edge pairs, the block after NAME giving the
 * pairs of lanes 0-7 in g0 and 8-15 in g1 */
#define ICDF_VARIANT(NAME, ...)                                                                               \
    TARGET static inline __m512 NAME(const uint32_t *w) {                                                    \
        const __m512i r = _mm512_loadu_si512(w);                                                             \
        const __m512i v = _mm512_or_si512(_mm512_slli_epi32(r, 1), _mm512_set1_epi32(1));                    \
        const __m512i bits = _mm512_castps_si512(_mm512_cvtepu32_ps(v));                                     \
        const __m512i i = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23 - PHILOX_ICDF_K),                      \
                                           _mm512_set1_epi32(127 << PHILOX_ICDF_K));                         \
        const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(bits, _mm512_set1_epi32(PHILOX_ICDF_FRAC))), \
                                       _mm512_set1_ps(PHILOX_ICDF_STEP));                                    \
        __m512 g0, g1;                                                                                       \
        __VA_ARGS__                                                                                          \
        const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);     \
        const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);     \
        const __m512 lo = _mm512_permutex2var_ps(g0, ev, g1), hi = _mm512_permutex2var_ps(g0, od, g1);      \
        const __m512 a = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_sub_ps(hi, lo), t));                        \
        return _mm512_castsi512_ps(                                                                          \
            _mm512_xor_si512(_mm512_castps_si512(a), _mm512_and_si512(r, _mm512_set1_epi32((int)0x80000000u)))); \
    }

static const uint64_t *TABLE(void) { return (const uint64_t *)philox_icdf_table; }

ICDF_VARIANT(icdf_scalar_loads, {
    int32_t idx[16] __attribute__((aligned(64)));
    uint64_t pairs[16] __attribute__((aligned(64)));
    _mm512_store_si512(idx, i);
    for (int l = 0; l < 16; l++) pairs[l] = TABLE()[idx[l]];
    g0 = _mm512_load_ps(pairs), g1 = _mm512_load_ps(pairs + 8);
})

ICDF_VARIANT(icdf_pair_inserts, {
    int32_t idx[16] __attribute__((aligned(64)));
    _mm512_store_si512(idx, i);
    const long long *tab = (const long long *)TABLE();
    __m128i q[8];
    for (int l = 0; l < 8; l++) q[l] = _mm_insert_epi64(_mm_cvtsi64_si128(tab[idx[2 * l]]), tab[idx[2 * l + 1]], 1);
    const __m256i h0 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[0]), q[1], 1);
    const __m256i h1 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[2]), q[3], 1);
    const __m256i h2 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[4]), q[5], 1);
    const __m256i h3 = _mm256_inserti128_si256(_mm256_castsi128_si256(q[6]), q[7], 1);
    g0 = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1));
    g1 = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(h2), h3, 1));
})

/* spikecim's transform before: two 8-lane gathers of the pairs in the order that two
 * in-lane shuffles deinterleave */
TARGET static inline __m512 icdf_8lane_gathers(const uint32_t *w) {
    const __m512i r = _mm512_loadu_si512(w);
    const __m512i v = _mm512_or_si512(_mm512_slli_epi32(r, 1), _mm512_set1_epi32(1));
    const __m512i bits = _mm512_castps_si512(_mm512_cvtepu32_ps(v));
    const __m512i i = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23 - PHILOX_ICDF_K), _mm512_set1_epi32(127 << PHILOX_ICDF_K));
    const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(bits, _mm512_set1_epi32(PHILOX_ICDF_FRAC))),
                                   _mm512_set1_ps(PHILOX_ICDF_STEP));
    const __m512i ip = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), i);
    const __m512 g0 = _mm512_castpd_ps(_mm512_i32gather_pd(_mm512_castsi512_si256(ip), TABLE(), 8));
    const __m512 g1 = _mm512_castpd_ps(_mm512_i32gather_pd(_mm512_extracti64x4_epi64(ip, 1), TABLE(), 8));
    const __m512 lo = _mm512_shuffle_ps(g0, g1, 0x88), hi = _mm512_shuffle_ps(g0, g1, 0xDD);
    const __m512 a = _mm512_add_ps(lo, _mm512_mul_ps(_mm512_sub_ps(hi, lo), t));
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(a), _mm512_and_si512(r, _mm512_set1_epi32((int)0x80000000u))));
}

ICDF_VARIANT(icdf_no_gathers, {
    const int first = _mm_cvtsi128_si32(_mm512_castsi512_si128(i)) & 2047; /* inside the table, wrong values */
    g0 = _mm512_loadu_ps((const float *)(TABLE() + first)), g1 = _mm512_loadu_ps((const float *)(TABLE() + first + 8));
})

/* z[0 .. 4nb) from the four word arrays, in the shipped element order */
#define BLOCKS(NAME, F)                                                                                        \
    TARGET static void NAME(const uint32_t *w0, const uint32_t *w1, const uint32_t *w2, const uint32_t *w3, \
                            int64_t nb, float *z) {                                                            \
        for (int64_t j = 0; j + 16 <= nb; j += 16) {                                                           \
            const __m512 a = F(w0 + j), b = F(w1 + j), c = F(w2 + j), d = F(w3 + j);                           \
            const __m512d ab_lo = _mm512_castps_pd(_mm512_unpacklo_ps(a, b)),                                  \
                          ab_hi = _mm512_castps_pd(_mm512_unpackhi_ps(a, b));                                  \
            const __m512d cd_lo = _mm512_castps_pd(_mm512_unpacklo_ps(c, d)),                                  \
                          cd_hi = _mm512_castps_pd(_mm512_unpackhi_ps(c, d));                                  \
            const __m512 t0 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_lo, cd_lo));                              \
            const __m512 t1 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_lo, cd_lo));                              \
            const __m512 t2 = _mm512_castpd_ps(_mm512_unpacklo_pd(ab_hi, cd_hi));                              \
            const __m512 t3 = _mm512_castpd_ps(_mm512_unpackhi_pd(ab_hi, cd_hi));                              \
            const __m512 u0 = _mm512_shuffle_f32x4(t0, t1, 0x44), u1 = _mm512_shuffle_f32x4(t2, t3, 0x44);    \
            const __m512 u2 = _mm512_shuffle_f32x4(t0, t1, 0xEE), u3 = _mm512_shuffle_f32x4(t2, t3, 0xEE);    \
            float *o = z + 4 * j;                                                                              \
            _mm512_storeu_ps(o, _mm512_shuffle_f32x4(u0, u1, 0x88));                                           \
            _mm512_storeu_ps(o + 16, _mm512_shuffle_f32x4(u0, u1, 0xDD));                                      \
            _mm512_storeu_ps(o + 32, _mm512_shuffle_f32x4(u2, u3, 0x88));                                      \
            _mm512_storeu_ps(o + 48, _mm512_shuffle_f32x4(u2, u3, 0xDD));                                      \
        }                                                                                                      \
    }
BLOCKS(blocks_scalar_loads, icdf_scalar_loads)
BLOCKS(blocks_pair_inserts, icdf_pair_inserts)
BLOCKS(blocks_8lane_gathers, icdf_8lane_gathers)
BLOCKS(blocks_no_gathers, icdf_no_gathers)

typedef void (*blocks_fn)(const uint32_t *, const uint32_t *, const uint32_t *, const uint32_t *, int64_t, float *);

#define WORDS (1 << 16) /* blocks of Philox words, 1 MB: the table stays in L1 and L2, the words in L2 */

TARGET static double masked_gather_ns(__mmask8 mask) {
    static uint32_t idx[4096];
    for (int i = 0; i < 4096; i++) idx[i] = (uint32_t)(i * 2654435761u) % 4096;
    const double *tab = (const double *)TABLE();
    __m512d acc = _mm512_setzero_pd();
    const double t = now();
    for (int r = 0; r < 20000; r++)
        for (int i = 0; i < 4096; i += 8)
            acc = _mm512_add_pd(acc, _mm512_mask_i32gather_pd(_mm512_setzero_pd(), mask,
                                                              _mm256_loadu_si256((const __m256i *)(idx + i)), tab, 8));
    const double dt = now() - t;
    volatile double sink = _mm512_reduce_add_pd(acc);
    (void)sink;
    return dt / (20000.0 * 512) * 1e9;
}

/* A CPU without AVX-512 runs the AVX2 loops: their words and their transform, timed apart
 * as above (the other ways of reading the table are AVX-512 code). */
static int avx2_only(void) {
    uint32_t *w = malloc(4 * (size_t)WORDS * sizeof *w);
    float *z = aligned_alloc(64, 4 * (size_t)WORDS * sizeof *z);
    double best[2] = {1e30, 1e30};
    for (int r = 0; r < 15; r++)
        for (int v = 0; v < 2; v++) {
            const double t = now();
            if (v == 0) philox4x32_10_avx2((uint64_t)r * WORDS, 0, 0, 123, 456, WORDS, w, WORDS);
            else
                for (int64_t b = 0; b < WORDS; b += PHILOX_GROUP)
                    icdf_blocks_avx2(w + b, w + WORDS + b, w + 2 * WORDS + b, w + 3 * WORDS + b, PHILOX_GROUP, z + 4 * b);
            const double dt = now() - t;
            best[v] = dt < best[v] ? dt : best[v];
        }
    printf("philox (AVX2)\t%.3f\n", best[0] / (4.0 * WORDS) * 1e9);
    printf("AVX2 gathers (the shipped transform there)\t%.3f\n", best[1] / (4.0 * WORDS) * 1e9);
    return 0;
}

int main(void) {
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq")) {
        if (__builtin_cpu_supports("avx2")) return avx2_only();
        puts("skipped: no AVX-512 (F, DQ) nor AVX2");
        return 0;
    }
    uint32_t *w = malloc(4 * (size_t)WORDS * sizeof *w);
    float *z = aligned_alloc(64, 4 * (size_t)WORDS * sizeof *z), *ref = aligned_alloc(64, 4 * (size_t)WORDS * sizeof *ref);
    philox4x32_10_blocks(0, 0, 0, 123, 456, WORDS, w, WORDS);
    icdf_blocks_avx512(w, w + WORDS, w + 2 * WORDS, w + 3 * WORDS, WORDS, ref);
    const char *names[] = {"philox", "4-lane gathers", "8-lane gathers", "scalar loads", "pair inserts", "no gathers"};
    blocks_fn fns[] = {0, icdf_blocks_avx512, blocks_8lane_gathers, blocks_scalar_loads, blocks_pair_inserts,
                       blocks_no_gathers};
    double best[6] = {1e30, 1e30, 1e30, 1e30, 1e30, 1e30};
    int same[6] = {1, 1, 1, 1, 1, 1};
    for (int r = 0; r < 15; r++) /* rounds, the variants interleaved in each */
        for (int v = 0; v < 6; v++) {
            const double t = now();
            if (v == 0) philox4x32_10_blocks((uint64_t)r * WORDS, 0, 0, 123, 456, WORDS, w, WORDS);
            else /* in groups of PHILOX_GROUP blocks, as philox_normal_blocks_f32 calls it */
                for (int64_t b = 0; b < WORDS; b += PHILOX_GROUP)
                    fns[v](w + b, w + WORDS + b, w + 2 * WORDS + b, w + 3 * WORDS + b, PHILOX_GROUP, z + 4 * b);
            const double dt = now() - t;
            best[v] = dt < best[v] ? dt : best[v];
            if (v == 0) philox4x32_10_blocks(0, 0, 0, 123, 456, WORDS, w, WORDS); /* the reference's words again */
            else if (v < 5) same[v] &= memcmp(z, ref, 4 * (size_t)WORDS * sizeof *z) == 0;
        }
    for (int v = 0; v < 6; v++)
        printf("%s%s\t%.3f\n", names[v], same[v] ? "" : " (other bits!)", best[v] / (4.0 * WORDS) * 1e9);
    const __mmask8 masks[] = {0xFF, 0x0F, 0x03, 0x00};
    for (int m = 0; m < 4; m++)
        printf("8-lane gather, %d lanes on (ns per gather)\t%.2f\n", __builtin_popcount(masks[m]), masked_gather_ns(masks[m]));
    return 0;
}
