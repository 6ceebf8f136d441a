/* Block transposes of floats in vector registers, for spikecim's CPU kernels (included by
 * converters_cpu.c, spike_conv_cpu.c and winograd_cpu.c; cbuild hashes it into their build keys).
 *
 * transpose16_avx512(dst, ds, src, ss, nr, nl): dst[l·ds + r] = src[r·ss + l] for r < nr ≤ 16,
 * l < nl ≤ 16. The caller checks that the CPU has AVX-512 F.
 * transpose8_avx2(dst, ds, src, ss, nr, nl): the same for r < nr ≤ 8, l < nl ≤ 8. The caller
 * checks that the CPU has AVX2.
 */
#ifndef SPIKECIM_TRANSPOSE_H
#define SPIKECIM_TRANSPOSE_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>

/* One block of at most 16 × 16: rows past nr read as zeros, lanes past nl are not loaded or
 * stored. Pairs of rows interleaved by 1, 2, 4 and 8 lanes in turn, every loop unrolled so
 * the 16 rows stay in registers (rolled, they go through the stack at 3× the time). */
__attribute__((target("avx512f"), unused)) static void transpose16_avx512(float *dst, int64_t ds,
                                                                          const float *src, int64_t ss, int nr,
                                                                          int nl) {
    const __mmask16 lanes = nl >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nl) - 1);
    const __mmask16 rows = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    __m512 v[16], t[16];
    #pragma GCC unroll 16
    for (int r = 0; r < 16; r++) v[r] = r < nr ? _mm512_maskz_loadu_ps(lanes, src + r * ss) : _mm512_setzero_ps();
    #pragma GCC unroll 16
    for (int r = 0; r < 16; r += 2) {
        t[r] = _mm512_unpacklo_ps(v[r], v[r + 1]);
        t[r + 1] = _mm512_unpackhi_ps(v[r], v[r + 1]);
    }
    #pragma GCC unroll 16
    for (int r = 0; r < 16; r += 4) {
        v[r] = _mm512_shuffle_ps(t[r], t[r + 2], 0x44);
        v[r + 1] = _mm512_shuffle_ps(t[r], t[r + 2], 0xEE);
        v[r + 2] = _mm512_shuffle_ps(t[r + 1], t[r + 3], 0x44);
        v[r + 3] = _mm512_shuffle_ps(t[r + 1], t[r + 3], 0xEE);
    }
    #pragma GCC unroll 16
    for (int r = 0; r < 4; r++) {
        t[r] = _mm512_shuffle_f32x4(v[r], v[r + 4], 0x88);
        t[r + 4] = _mm512_shuffle_f32x4(v[r], v[r + 4], 0xDD);
        t[r + 8] = _mm512_shuffle_f32x4(v[r + 8], v[r + 12], 0x88);
        t[r + 12] = _mm512_shuffle_f32x4(v[r + 8], v[r + 12], 0xDD);
    }
    #pragma GCC unroll 16
    for (int r = 0; r < 8; r++) {
        v[r] = _mm512_shuffle_f32x4(t[r], t[r + 8], 0x88);
        v[r + 8] = _mm512_shuffle_f32x4(t[r], t[r + 8], 0xDD);
    }
    #pragma GCC unroll 16
    for (int l = 0; l < 16; l++)
        if (l < nl) _mm512_mask_storeu_ps(dst + l * ds, rows, v[l]);
}

/* One block of at most 8 × 8, as transpose16_avx512: rows past nr read as zeros, lanes past nl
 * are not loaded or stored (masked loads and stores only for a partial block). Pairs of rows
 * interleaved by 1 and 2 lanes, then the 128-bit halves exchanged. */
__attribute__((target("avx2"), unused)) static void transpose8_avx2(float *dst, int64_t ds, const float *src,
                                                                    int64_t ss, int nr, int nl) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(nl), iota);
    const __m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), iota);
    __m256 v[8], t[8];
    #pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
        v[r] = r >= nr ? _mm256_setzero_ps()
               : nl >= 8 ? _mm256_loadu_ps(src + r * ss)
                         : _mm256_maskload_ps(src + r * ss, lanes);
    #pragma GCC unroll 8
    for (int r = 0; r < 8; r += 2) {
        t[r] = _mm256_unpacklo_ps(v[r], v[r + 1]);
        t[r + 1] = _mm256_unpackhi_ps(v[r], v[r + 1]);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < 8; r += 4) {
        v[r] = _mm256_shuffle_ps(t[r], t[r + 2], 0x44);
        v[r + 1] = _mm256_shuffle_ps(t[r], t[r + 2], 0xEE);
        v[r + 2] = _mm256_shuffle_ps(t[r + 1], t[r + 3], 0x44);
        v[r + 3] = _mm256_shuffle_ps(t[r + 1], t[r + 3], 0xEE);
    }
    #pragma GCC unroll 8
    for (int r = 0; r < 4; r++) {
        t[r] = _mm256_permute2f128_ps(v[r], v[r + 4], 0x20);
        t[r + 4] = _mm256_permute2f128_ps(v[r], v[r + 4], 0x31);
    }
    #pragma GCC unroll 8
    for (int l = 0; l < 8; l++)
        if (l < nl) {
            if (nr >= 8)
                _mm256_storeu_ps(dst + l * ds, t[l]);
            else
                _mm256_maskstore_ps(dst + l * ds, rows, t[l]);
        }
}
#endif
#endif
