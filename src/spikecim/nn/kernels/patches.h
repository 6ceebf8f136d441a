/* The geometry of a convolution's patches and their abs-max per input tile, shared by the
 * patch DAC (converters_cpu.c) and the convolution with its converters in one pass
 * (conv_adc_cpu.c).
 *
 * patch_geometry: x [N, C, H, W] contiguous, kernel kh × kw, strides sh, sw, zero padding
 * ph, pw, dilations dh, dw, output Ho × Wo (L = Ho·Wo patches per sample, K = C·kh·kw rows
 * per patch, row (c, ki, kj) as in F.unfold), input tiles of R rows, n_in of them.
 */
#ifndef SPIKECIM_PATCHES_H
#define SPIKECIM_PATCHES_H

#include <stdint.h>
#include <string.h>

#include "real.h"

#define PATCHES_INLINE static inline __attribute__((always_inline, unused))

typedef struct {
    int64_t N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, R, n_in;
} patch_geometry;

PATCHES_INLINE void max_into(ubits *m, const real *x, int64_t n) {
    for (int64_t p = 0; p < n; p++) m[p] = abs_bits(x[p]) > m[p] ? abs_bits(x[p]) : m[p];
}

/* m[l] = the abs-max of patch l over input tile rows [r0, r1), for the patches of output
 * rows ho0 .. ho1 − 1 (l = ho·Wo + wo), from the image: per kernel offset k = (ki, kj), the
 * largest |x| over the tile's channels with row (c, k) (every channel the tile covers whole,
 * plus the rows of the channels it cuts) on the input rows those patches read, then per
 * patch the largest of those maps at the pixels under the kernel (padding adds 0). That
 * reads the image about once instead of gathering every row of the patches. */
PATCHES_INLINE void tile_abs_max(const patch_geometry *g, const real *xn, int64_t r0, int64_t r1, int64_t ho0,
                                 int64_t ho1, ubits *m, ubits *maps) {
    const int64_t per = g->kh * g->kw, HW = g->H * g->W, W = g->W, Wo = g->Wo, sw = g->sw;
    int64_t h_lo = ho0 * g->sh - g->ph, h_hi = (ho1 - 1) * g->sh - g->ph + (g->kh - 1) * g->dh + 1;
    h_lo = h_lo < 0 ? 0 : h_lo;
    h_hi = h_hi > g->H ? g->H : h_hi;
    const int64_t first = h_lo * W, n = h_hi > h_lo ? (h_hi - h_lo) * W : 0; /* the pixels read */
    ubits *full = maps + per * HW;
    for (int64_t p = first; p < first + n; p++) full[p] = 0;
    int cut = 0;
    for (int64_t c = r0 / per; c <= (r1 - 1) / per; c++) {
        if (c * per >= r0 && (c + 1) * per <= r1) max_into(full + first, xn + c * HW + first, n);
        else cut = 1;
    }
    if (cut) {
        for (int64_t k = 0; k < per; k++) memcpy(maps + k * HW + first, full + first, n * sizeof *full);
        for (int64_t r = r0; r < r1; r++) {
            const int64_t c = r / per;
            if (!(c * per >= r0 && (c + 1) * per <= r1))
                max_into(maps + (r % per) * HW + first, xn + c * HW + first, n);
        }
    }
    for (int64_t l = ho0 * Wo; l < ho1 * Wo; l++) m[l] = 0;
    for (int64_t k = 0; k < per; k++) {
        const ubits *map = cut ? maps + k * HW : full;
        const int64_t ki = k / g->kw, kj = k % g->kw, off = kj * g->dw - g->pw;
        int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
        int64_t hi = W - off <= 0 ? 0 : (W - off + sw - 1) / sw;
        if (hi > Wo) hi = Wo;
        if (lo > hi) lo = hi;
        for (int64_t ho = ho0; ho < ho1; ho++) {
            const int64_t h = ho * g->sh - g->ph + ki * g->dh;
            if (h < 0 || h >= g->H) continue;
            const ubits *src = map + h * W + off;
            ubits *dst = m + ho * Wo;
            if (sw == 1)
                for (int64_t wo = lo; wo < hi; wo++) dst[wo] = src[wo] > dst[wo] ? src[wo] : dst[wo];
            else
                for (int64_t wo = lo; wo < hi; wo++) dst[wo] = src[wo * sw] > dst[wo] ? src[wo * sw] : dst[wo];
        }
    }
}

#endif
