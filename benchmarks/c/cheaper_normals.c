/* What a cheaper float32 normal generator would cost on this core, against philox.h's
 * (Philox4x32-10 words and the table inverse CDF), in ns per normal, one line each,
 * "<label><TAB><value>":
 *   philox.h                  philox_normals_f32, the generator spikecim ships;
 *   ARS-7 words               ARS4x32-7 (Salmon et al., SC 2011: AES rounds keyed by a Weyl
 *                             sequence; Random123's default round count), four blocks per
 *                             512-bit vector on VAES;
 *   polynomial transform      |Phi^-1(u)| as a degree-6 polynomial in the mantissa of u per
 *                             float binade of u (philox.h's u and sign from the same words),
 *                             its 7 coefficients picked from two registers per coefficient
 *                             (vpermt2ps) instead of table gathers;
 *   ARS-7 + polynomial        the two together, written straight in element order (a block's
 *                             four words are elements 4b .. 4b + 3, no transpose).
 * Checks, printed as plain lines: ARS with 10 rounds (the same code) gives Random123's known
 * answers (kat_vectors, "ars4x32 10"), and the polynomial's largest |error| against the
 * double-precision quantile (philox.h's Acklam + Halley) over every 613th word (7.0 M words) of all
 * 2^32. Best of 15 rounds, the variants interleaved in each. Built by
 * benchmarks/bench_cpu_limits.py with the kernels' folder on the include path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "philox.h"

#define WORDS (1 << 20) /* normals per variant and round */
#define DEGREE 6
#define TARGET __attribute__((target("avx512f,vaes")))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* coefficient k of binade e (u in [2^(e-33), 2^(e-32))) at lane (e + 127) mod 32: the lane a
 * float's biased exponent picks in vpermt2ps */
static float coefficient[DEGREE + 1][32];

/* Chebyshev interpolation of -Phi^-1(2^(e-33) (1 + t)) on t in [0, 1) at DEGREE + 1 nodes, in
 * double, turned into powers of t and rounded to float. */
static void fit_binades(void) {
    enum { N = DEGREE + 1 };
    for (int e = 0; e < 32; e++) {
        double f[N], c[N], basis[N][N] = {{0}}, power[N] = {0};
        for (int k = 0; k < N; k++)
            f[k] = -philox_inverse_normal_lower(ldexp(1.0 + (cos(M_PI * (k + 0.5) / N) + 1.0) / 2.0, e - 33));
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++) s += f[k] * cos(M_PI * j * (k + 0.5) / N);
            c[j] = s * 2.0 / N;
        }
        c[0] /= 2;
        basis[0][0] = 1; /* T_j(2t - 1) in powers of t */
        basis[1][0] = -1, basis[1][1] = 2;
        for (int j = 2; j < N; j++)
            for (int i = 0; i <= j; i++)
                basis[j][i] = -2 * basis[j - 1][i] - basis[j - 2][i] + (i ? 4 * basis[j - 1][i - 1] : 0);
        for (int j = 0; j < N; j++)
            for (int i = 0; i <= j; i++) power[i] += c[j] * basis[j][i];
        for (int i = 0; i < N; i++) coefficient[i][(e + 127) & 31] = (float)power[i];
    }
}

/* the normals of 16 words r: philox.h's u, bin and sign, |z| from the binade's polynomial */
TARGET static inline __m512 polynomial_normal(__m512i r, const __m512 *lo, const __m512 *hi) {
    const __m512i v = _mm512_or_si512(_mm512_slli_epi32(r, 1), _mm512_set1_epi32(1));
    const __m512i bits = _mm512_castps_si512(_mm512_cvtepu32_ps(v));
    const __m512i exponent = _mm512_srli_epi32(bits, 23);
    const __m512 t = _mm512_sub_ps(
        _mm512_castsi512_ps(_mm512_ternarylogic_epi32(bits, _mm512_set1_epi32(0x7FFFFF), _mm512_set1_epi32(0x3F800000), 0xEA)),
        _mm512_set1_ps(1.0f)); /* (bits & mantissa) | 1.0's exponent, less 1: exact */
    __m512 p = _mm512_permutex2var_ps(lo[DEGREE], exponent, hi[DEGREE]);
    for (int k = DEGREE - 1; k >= 0; k--) p = _mm512_fmadd_ps(p, t, _mm512_permutex2var_ps(lo[k], exponent, hi[k]));
    p = _mm512_maskz_mov_ps(~_mm512_cmpeq_epi32_mask(bits, _mm512_set1_epi32(0x4F800000)), p); /* u = 1/2: 0 */
    return _mm512_castsi512_ps(
        _mm512_ternarylogic_epi32(_mm512_castps_si512(p), r, _mm512_set1_epi32((int)0x80000000u), 0x78)); /* p ^ (r & sign) */
}

TARGET static void load_coefficients(__m512 *lo, __m512 *hi) {
    for (int k = 0; k <= DEGREE; k++) lo[k] = _mm512_loadu_ps(coefficient[k]), hi[k] = _mm512_loadu_ps(coefficient[k] + 16);
}

/* ARS4x32-R of blocks b0 .. b0 + nb - 1 (nb a multiple of 8) under the 64-bit key (seed, 0):
 * v = counter ^ k, then R - 1 AES rounds and a last one, the key bumped by the Weyl constants
 * before each; with `z`, their normals (polynomial_normal) into z, else their words into w */
TARGET static void ars(int rounds, __m128i key, __m128i counter0, int64_t nb, uint32_t *w, float *z) {
    __m512 lo[DEGREE + 1], hi[DEGREE + 1];
    load_coefficients(lo, hi);
    const __m512i weyl = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)0xBB67AE8584CAA73Bull, (long long)0x9E3779B97F4A7C15ull));
    __m512i k[11];
    k[0] = _mm512_broadcast_i32x4(key);
    for (int i = 1; i <= rounds; i++) k[i] = _mm512_add_epi64(k[i - 1], weyl);
    __m512i counter = _mm512_add_epi64(_mm512_broadcast_i32x4(counter0), _mm512_setr_epi64(0, 0, 1, 0, 2, 0, 3, 0));
    const __m512i four = _mm512_setr_epi64(4, 0, 4, 0, 4, 0, 4, 0);
    for (int64_t j = 0; j < nb; j += 8) {
        __m512i x0 = _mm512_xor_si512(counter, k[0]);
        counter = _mm512_add_epi64(counter, four);
        __m512i x1 = _mm512_xor_si512(counter, k[0]);
        counter = _mm512_add_epi64(counter, four);
        for (int i = 1; i < rounds; i++) x0 = _mm512_aesenc_epi128(x0, k[i]), x1 = _mm512_aesenc_epi128(x1, k[i]);
        x0 = _mm512_aesenclast_epi128(x0, k[rounds]), x1 = _mm512_aesenclast_epi128(x1, k[rounds]);
        if (z) {
            _mm512_storeu_ps(z + 4 * j, polynomial_normal(x0, lo, hi));
            _mm512_storeu_ps(z + 4 * j + 16, polynomial_normal(x1, lo, hi));
        } else {
            _mm512_storeu_si512(w + 4 * j, x0);
            _mm512_storeu_si512(w + 4 * j + 16, x1);
        }
    }
}

TARGET static void transform(const uint32_t *w, int64_t n, float *z) {
    __m512 lo[DEGREE + 1], hi[DEGREE + 1];
    load_coefficients(lo, hi);
    for (int64_t i = 0; i < n; i += 16) _mm512_storeu_ps(z + i, polynomial_normal(_mm512_loadu_si512(w + i), lo, hi));
}

/* Random123's kat_vectors, "ars4x32 10": counter, key, expected block (words 0 .. 3) */
static int ars_known_answers(void) {
    static const uint32_t kat[2][12] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 0x8d73ee19, 0x506401ef, 0x13c2dbe4, 0x0cbe9c0d},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0x082efa98, 0xec4e6c89, 0xa516e7d6,
         0x8357ad74, 0x5b59b3ec, 0x8763fff3},
    };
    for (int i = 0; i < 2; i++) {
        const uint32_t *c = kat[i], *k = kat[i] + 4;
        uint32_t w[32];
        ars(10, _mm_setr_epi32((int)k[0], (int)k[1], (int)k[2], (int)k[3]), _mm_setr_epi32((int)c[0], (int)c[1], (int)c[2], (int)c[3]), 8, w, NULL);
        if (memcmp(w, kat[i] + 8, 16) != 0) return 0;
    }
    return 1;
}

static double polynomial_error(void) {
    double worst = 0;
    uint32_t w[16];
    float z[16];
    for (uint64_t r = 0; r < (1ull << 32); r += 16 * 613) {
        for (int l = 0; l < 16; l++) w[l] = (uint32_t)(r + 613u * (uint32_t)l);
        transform(w, 16, z);
        for (int l = 0; l < 16; l++) {
            const double u = ldexp((double)(float)((w[l] << 1) | 1u), -33), q = philox_inverse_normal_lower(u);
            const double e = fabs(z[l] - (w[l] >> 31 ? q : -q));
            worst = e > worst ? e : worst;
        }
    }
    return worst;
}

int main(void) {
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("vaes")) {
        puts("skipped: no AVX-512 F with VAES");
        return 0;
    }
    fit_binades();
    printf("checked: ARS4x32-10 %s Random123's known answers\n", ars_known_answers() ? "gives" : "does NOT give");
    printf("checked: polynomial transform, largest |error| %.2g against the double-precision quantile\n",
           polynomial_error());
    uint32_t *w = aligned_alloc(64, (size_t)WORDS * sizeof *w);
    float *z = aligned_alloc(64, (size_t)WORDS * sizeof *z);
    const char *names[] = {"philox.h", "ARS-7 words", "polynomial transform", "ARS-7 + polynomial"};
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    const __m128i key = _mm_setr_epi32(123, 0, 0, 0);
    ars(7, key, _mm_setzero_si128(), WORDS / 4, w, NULL); /* the transform's words */
    for (int r = 0; r < 15; r++)
        for (int v = 0; v < 4; v++) {
            const double t = now();
            for (int64_t b = 0; b < WORDS / 4; b += 256) /* 1024 normals a call, as the kernels draw them */
                if (v == 0) philox_normals_f32(123, 4 * b, 1024, z + 4 * b);
                else if (v == 1) ars(7, key, _mm_set_epi64x(0, b), 256, w + 4 * b, NULL);
                else if (v == 2) transform(w + 4 * b, 1024, z + 4 * b);
                else ars(7, key, _mm_set_epi64x(0, b), 256, NULL, z + 4 * b);
            const double dt = now() - t;
            best[v] = dt < best[v] ? dt : best[v];
        }
    for (int v = 0; v < 4; v++) printf("%s\t%.3f\n", names[v], best[v] / WORDS * 1e9);
    return 0;
}
