/* A 16 × 16 block transpose of floats in AVX-512 registers, for spikecim's CPU kernels
 * (included by converters_cpu.c and spike_conv_cpu.c; cbuild hashes it into their build keys).
 *
 * transpose16_avx512(dst, ds, src, ss, nr, nl): dst[l·ds + r] = src[r·ss + l] for r < nr ≤ 16,
 * l < nl ≤ 16. The caller checks that the CPU has AVX-512 F.
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
#endif
#endif
