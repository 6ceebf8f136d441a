/* 2-D average and max pooling on the CPU, for windows that tile the image: kernel = stride,
 * no padding, no dilation, the last partial window dropped (floor). Forward and backward, in
 * the order torch's CPU kernels (aten/src/ATen/native/cpu/AvgPoolKernel.cpp and
 * MaxPoolKernel.cpp) compute them, so the values are theirs bit for bit.
 *
 * Built by spikecim/nn/kernels/pool_cpu.py with `cc -O2 -ffp-contract=off -DREAL=float`
 * (and once more with double). Layout: x and gx are [planes, H, W], y, gy and idx
 * [planes, OH, OW], all contiguous (planes = batch x channels); or, with channels_last, x and
 * gx [planes, H, W, C], y, gy and idx [planes, OH, OW, C] (planes = batch: torch's
 * channels-last [N, C, H, W] as it lies in memory). Per output (oh, ow), with the window's
 * entries v_0 ... v_{kh*kw-1} in row-major order:
 *
 *   average:  y = (((0 + v_0) + v_1) + ...) / (kh*kw);   gx_i = gy / (kh*kw)
 *   max:      y = the first v_i that is larger than every earlier entry, or the last NaN
 *             (torch's `val > maxval || isnan(val)` from maxval = -inf); idx = its i;
 *             gx_i = gy where i = idx, else 0.
 *
 * torch's kernels walk one window at a time and branch per entry; here the forward passes
 * run along a row of outputs with the comparison as a select, so the loops vectorise and
 * nothing mispredicts (a ReLU output has no pattern to predict); the 2x2 max of short rows
 * runs in two stages (max2_forward_staged). The max's backward writes
 * zeros, then one gradient per output. idx holds the offset within the window as a byte
 * (kh*kw <= 255; torch keeps an int64 index into the plane). In channels-last the loops run
 * along the C channels of one position, which lie side by side (torch's channels-last
 * kernels do the same comparisons and sums per channel); the backward writes every entry
 * of a window once, the gradient where it was chosen and 0 elsewhere.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "real.h"

typedef struct {
    int64_t planes, H, W, kh, kw, OH, OW;
    int64_t per_item; /* planes per work item */
    const real *x;    /* forward input */
    real *y;          /* forward output */
    uint8_t *idx;     /* max: offset of each output's entry within its window */
    const real *gy;   /* backward: gradient of y */
    real *gx;         /* backward output */
    int64_t C;        /* channels: the innermost dimension when channels_last */
    int64_t channels_last; /* 0: [planes, H, W] planes; 1: [planes, H, W, C], per_item rows of outputs */
} pool_args;

#define INLINE static inline __attribute__((always_inline))

/* The bodies over one plane, with the window and the width as arguments: the wrappers below
 * call them with constants for the common 2x2 windows on rows of 8 to 64, so that the short
 * rows of small feature maps are unrolled and vectorised whole, and with the layer's values
 * otherwise. Loops run along the outputs of a row (j), each window column (k) inside. */
INLINE void avg_forward_plane(const real *restrict x, real *restrict y, const int64_t OH, const int64_t kh,
                              const int64_t kw, const int64_t OW, const int64_t W) {
    const real count = (real)(kh * kw);
    for (int64_t oh = 0; oh < OH; oh++) {
        real *restrict yr = y + oh * OW;
        for (int64_t j = 0; j < OW; j++) yr[j] = 0;
        for (int64_t i = 0; i < kh; i++) {
            const real *restrict xr = x + (oh * kh + i) * W;
            for (int64_t j = 0; j < OW; j++)
                for (int64_t k = 0; k < kw; k++) yr[j] += xr[j * kw + k];
        }
        for (int64_t j = 0; j < OW; j++) yr[j] /= count;
    }
}

INLINE void max_forward_plane(const real *restrict x, real *restrict y, uint8_t *restrict idx, const int64_t OH,
                              const int64_t kh, const int64_t kw, const int64_t OW, const int64_t W) {
    for (int64_t oh = 0; oh < OH; oh++) {
        real *restrict yr = y + oh * OW;
        uint8_t *restrict ir = idx + oh * OW;
        for (int64_t j = 0; j < OW; j++) {
            yr[j] = -INFINITY;
            ir[j] = 0;
        }
        for (int64_t i = 0; i < kh; i++) {
            const real *restrict xr = x + (oh * kh + i) * W;
            for (int64_t j = 0; j < OW; j++)
                for (int64_t k = 0; k < kw; k++) {
                    const real v = xr[j * kw + k];
                    const int take = (v > yr[j]) | (v != v);
                    yr[j] = take ? v : yr[j];
                    ir[j] = take ? (uint8_t)(i * kw + k) : ir[j];
                }
        }
    }
}

/* The rows and columns past the last whole window receive no gradient. */
INLINE void zero_margins(real *gx, const int64_t H, const int64_t OH, const int64_t kh, const int64_t kw,
                         const int64_t OW, const int64_t W) {
    const int64_t used_w = OW * kw;
    if (used_w < W)
        for (int64_t h = 0; h < OH * kh; h++)
            for (int64_t w = used_w; w < W; w++) gx[h * W + w] = 0;
    for (int64_t h = OH * kh; h < H; h++)
        for (int64_t w = 0; w < W; w++) gx[h * W + w] = 0;
}

INLINE void avg_backward_plane(const real *restrict gy, real *restrict gx, const int64_t H, const int64_t OH,
                               const int64_t kh, const int64_t kw, const int64_t OW, const int64_t W) {
    const real count = (real)(kh * kw);
    for (int64_t oh = 0; oh < OH; oh++) {
        const real *restrict gr = gy + oh * OW;
        for (int64_t i = 0; i < kh; i++) {
            real *restrict xr = gx + (oh * kh + i) * W;
            for (int64_t j = 0; j < OW; j++)
                for (int64_t k = 0; k < kw; k++) xr[j * kw + k] = gr[j] / count;
        }
    }
    zero_margins(gx, H, OH, kh, kw, OW, W);
}

/* The max's gradient: zeros, then each output's gradient written at its entry (one store
 * per output; a select per entry is slower). */
INLINE void max_backward_plane(const real *restrict gy, const uint8_t *restrict idx, real *restrict gx,
                               const int64_t H, const int64_t OH, const int64_t kh, const int64_t kw,
                               const int64_t OW, const int64_t W) {
    memset(gx, 0, sizeof(real) * (size_t)(H * W));
    for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t j = 0; j < OW; j++) {
            const int64_t at = idx[oh * OW + j];
            gx[(oh * kh + at / kw) * W + j * kw + at % kw] = gy[oh * OW + j];
        }
}

/* The 2x2 window written out for n outputs, its entries at r0[s·j], r0[s·j + o], r1[s·j] and
 * r1[s·j + o] (a row of outputs: s = 2, o = 1; the channels of one position in channels-last:
 * s = 1, o = C): the window's four entries in registers, so the loop vectorises (a window loop
 * keeps a running max in memory, which it does not). */
INLINE void max2_forward_run(const real *restrict r0, const real *restrict r1, real *restrict yr,
                             uint8_t *restrict ir, const int64_t n, const int64_t s, const int64_t o) {
    for (int64_t j = 0; j < n; j++) {
        /* from -inf: the first entry is taken unless it is -inf, which leaves -inf at 0 */
        const real a = r0[s * j], b = r0[s * j + o], c = r1[s * j], d = r1[s * j + o];
        const int tb = (b > a) | (b != b);
        real m = tb ? b : a;
        const int tc = (c > m) | (c != c);
        m = tc ? c : m;
        const int td = (d > m) | (d != d);
        yr[j] = td ? d : m;
        ir[j] = (uint8_t)(td ? 3 : tc ? 2 : tb);
    }
}

INLINE void max2_forward_plane(const real *restrict x, real *restrict y, uint8_t *restrict idx, const int64_t OH,
                               const int64_t OW, const int64_t W) {
    for (int64_t oh = 0; oh < OH; oh++)
        max2_forward_run(x + 2 * oh * W, x + (2 * oh + 1) * W, y + oh * OW, idx + oh * OW, OW, 2, 1);
}

/* The 2x2 max in two stages, for rows of 4 and 8 outputs (8x8 and 16x16 maps: too short for
 * the loop above to fill a vector) and for widths without a constant copy of it: first the larger of each
 * horizontal pair over a flat run of whole rows (W even, so no pair straddles two rows: one
 * long vectorised loop), then the larger of the two rows' winners (max2_vertical). The order of
 * comparisons is the window's: each stage takes the later entry only if it is larger or
 * NaN, which is what the scan of the four entries takes. */
CLONES static void max2_pairs(const real *restrict x, real *restrict h, uint8_t *restrict hi, const int64_t n) {
    for (int64_t q = 0; q < n; q++) {
        const real a = x[2 * q], b = x[2 * q + 1];
        const int t = (b > a) | (b != b);
        h[q] = t ? b : a;
        hi[q] = (uint8_t)t;
    }
}

/* The second stage, in two steps: the larger of every row of first-stage winners and the row
 * below it, as one flat loop over the run (vectorised; a loop per row of 4 compiles to a
 * branch per output, mispredicted on real activations), then the rows of even offset within
 * their plane copied out. n = entries of the run less one row. */
CLONES static void max2_below(const real *restrict h, const uint8_t *restrict hi, real *restrict m,
                              uint8_t *restrict mi, const int64_t n, const int64_t ow) {
    for (int64_t q = 0; q < n; q++) { /* the choice as a byte first: GCC does not vectorise */
        const real u = h[q], v = h[q + ow]; /* a select of bytes on a comparison of reals */
        const int t = (v > u) | (v != v);
        m[q] = t ? v : u;
        mi[q] = (uint8_t)t;
    }
    for (int64_t q = 0; q < n; q++) { /* and as masks: GCC branches on a select of bytes */
        const uint8_t later = (uint8_t)-mi[q];
        mi[q] = (uint8_t)((hi[q] & (uint8_t)~later) | ((uint8_t)(2 + hi[q + ow]) & later));
    }
}

static void max2_vertical(const pool_args *a, const real *h, const uint8_t *hi, real *m, uint8_t *mi, int64_t p0,
                          int64_t p1) {
    const int64_t ow = a->W / 2, n = (p1 - p0) * a->H * ow - ow;
    max2_below(h, hi, m, mi, n, ow);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t oh = 0; oh < a->OH; oh++) {
            const int64_t r = ((p - p0) * a->H + 2 * oh) * ow, o = (p * a->OH + oh) * ow;
            if (ow == 4) { /* 8x8 maps: copies of a constant size, one move each */
                memcpy(a->y + o, m + r, 4 * sizeof *m);
                memcpy(a->idx + o, mi + r, 4);
            } else {
                memcpy(a->y + o, m + r, ow * sizeof *m);
                memcpy(a->idx + o, mi + r, ow);
            }
        }
}

/* Planes [p0, p1) by the two stages; 0 when the buffers between them cannot be had. */
static int max2_forward_staged(const pool_args *a, int64_t p0, int64_t p1) {
    const int64_t half = (p1 - p0) * a->H * (a->W / 2);
    real *h = (real *)malloc(sizeof(real) * (size_t)half), *m = (real *)malloc(sizeof(real) * (size_t)half);
    uint8_t *hi = (uint8_t *)malloc((size_t)half), *mi = (uint8_t *)malloc((size_t)half);
    const int ok = h && hi && m && mi;
    if (ok) {
        max2_pairs(a->x + p0 * a->H * a->W, h, hi, half);
        max2_vertical(a, h, hi, m, mi, p0, p1);
    }
    free(h);
    free(hi);
    free(m);
    free(mi);
    return ok;
}

/* Planes [p0, p1) of one pass, for one window and width (constants or the layer's). */
#define PASSES(suffix, KH, KW, WW)                                                                            \
    CLONES static void avg_forward_##suffix(const pool_args *a, int64_t p0, int64_t p1) {                     \
        const int64_t ow = (WW) / (KW);                                                                       \
        for (int64_t p = p0; p < p1; p++)                                                                     \
            avg_forward_plane(a->x + p * a->H * (WW), a->y + p * a->OH * ow, a->OH, KH, KW, ow, WW);          \
    }                                                                                                         \
    CLONES static void max_forward_rows_##suffix(const pool_args *a, int64_t p0, int64_t p1) {                \
        const int64_t ow = (WW) / (KW);                                                                       \
        for (int64_t p = p0; p < p1; p++) {                                                                   \
            const int64_t o = p * a->OH * ow;                                                                 \
            MAX_FORWARD(a->x + p * a->H * (WW), a->y + o, a->idx + o, a->OH, KH, KW, ow, WW);                 \
        }                                                                                                     \
    }                                                                                                         \
    CLONES static void avg_backward_##suffix(const pool_args *a, int64_t p0, int64_t p1) {                    \
        const int64_t ow = (WW) / (KW);                                                                       \
        for (int64_t p = p0; p < p1; p++)                                                                     \
            avg_backward_plane(a->gy + p * a->OH * ow, a->gx + p * a->H * (WW), a->H, a->OH, KH, KW, ow, WW); \
    }                                                                                                         \
    CLONES static void max_backward_##suffix(const pool_args *a, int64_t p0, int64_t p1) {                    \
        const int64_t ow = (WW) / (KW);                                                                       \
        for (int64_t p = p0; p < p1; p++) {                                                                   \
            const int64_t o = p * a->OH * ow;                                                                 \
            MAX_BACKWARD(a->gy + o, a->idx + o, a->gx + p * a->H * (WW), a->H, a->OH, KH, KW, ow, WW);        \
        }                                                                                                     \
    }

#define MAX_FORWARD(x, y, idx, OH, kh, kw, OW, W) max2_forward_plane(x, y, idx, OH, OW, W)
#define MAX_BACKWARD max_backward_plane
PASSES(2x2_w8, 2, 2, 8)
PASSES(2x2_w16, 2, 2, 16)
PASSES(2x2_w32, 2, 2, 32)
PASSES(2x2_w64, 2, 2, 64)
PASSES(2x2, 2, 2, a->W)
#undef MAX_FORWARD
#define MAX_FORWARD max_forward_plane
PASSES(any, a->kh, a->kw, a->W)

/* One work item: planes [item * per_item, ...), on the variant for the layer's window. */
#define ITEM(pass)                                                                          \
    static void pass##_item(const void *args, int64_t item) {                               \
        const pool_args *a = (const pool_args *)args;                                       \
        const int64_t p0 = item * a->per_item;                                              \
        const int64_t p1 = p0 + a->per_item < a->planes ? p0 + a->per_item : a->planes;     \
        if (a->kh == 2 && a->kw == 2) switch (a->W) {                                       \
                case 8: pass##_2x2_w8(a, p0, p1); return;                                   \
                case 16: pass##_2x2_w16(a, p0, p1); return;                                 \
                case 32: pass##_2x2_w32(a, p0, p1); return;                                 \
                case 64: pass##_2x2_w64(a, p0, p1); return;                                 \
                default: pass##_2x2(a, p0, p1); return;                                     \
            }                                                                               \
        pass##_any(a, p0, p1);                                                              \
    }

ITEM(avg_forward)
ITEM(max_forward_rows)
ITEM(avg_backward)
ITEM(max_backward)

static void max_forward_item(const void *args, int64_t item) {
    const pool_args *a = (const pool_args *)args;
    /* rows of 16 and 32 outputs fill their vectors in one stage (W = 16 runs faster staged:
     * 0.26 against 0.54 ms for [64, 64, 16, 16], benchmarks/bench_layers.py) */
    if (a->kh == 2 && a->kw == 2 && a->W % 2 == 0 && a->W != 32 && a->W != 64) {
        const int64_t p0 = item * a->per_item;
        const int64_t p1 = p0 + a->per_item < a->planes ? p0 + a->per_item : a->planes;
        if (max2_forward_staged(a, p0, p1)) return;
    }
    max_forward_rows_item(args, item);
}

/* ---- channels-last: [planes, H, W, C]; a work item is per_item rows of outputs (plane, oh) ---- */

/* the output row r = plane·OH + oh: its outputs y + r·OW·C, the window's input row i at
 * x + ((plane·H + oh·kh + i)·W)·C */
#define CL_ROW(a, r, i) (((r) / (a)->OH * (a)->H + (r) % (a)->OH * (a)->kh + (i)) * (a)->W * (a)->C)

/* Both forwards of output rows [r0, r1) for any window, scanned in row-major order along the
 * channels: the average's running sum, then the division, or the max's running choice
 * (max: a constant where the two passes below inline it). */
INLINE void forward_cl(const pool_args *a, int64_t r0, int64_t r1, const int max) {
    const int64_t C = a->C, OW = a->OW, kw = a->kw, n = OW * C;
    const real count = (real)(a->kh * kw);
    for (int64_t r = r0; r < r1; r++) {
        real *restrict yr = a->y + r * n;
        uint8_t *restrict ir = max ? a->idx + r * n : 0;
        for (int64_t j = 0; j < n; j++) yr[j] = max ? -INFINITY : 0;
        if (max) memset(ir, 0, (size_t)n);
        for (int64_t i = 0; i < a->kh; i++) {
            const real *restrict xr = a->x + CL_ROW(a, r, i);
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t k = 0; k < kw; k++) {
                    const real *restrict xv = xr + (ow * kw + k) * C;
                    real *restrict yv = yr + ow * C;
                    const uint8_t at = (uint8_t)(i * kw + k);
                    if (max)
                        for (int64_t c = 0; c < C; c++) {
                            const real v = xv[c];
                            const int take = (v > yv[c]) | (v != v);
                            yv[c] = take ? v : yv[c];
                            ir[ow * C + c] = take ? at : ir[ow * C + c];
                        }
                    else
                        for (int64_t c = 0; c < C; c++) yv[c] += xv[c];
                }
        }
        if (!max)
            for (int64_t j = 0; j < n; j++) yr[j] /= count;
    }
}

CLONES static void avg_forward_cl(const pool_args *a, int64_t r0, int64_t r1) {
    const int64_t C = a->C, n = a->OW * C;
    if (a->kh != 2 || a->kw != 2) {
        forward_cl(a, r0, r1, 0);
        return;
    }
    for (int64_t r = r0; r < r1; r++) { /* 2x2: the window's sum in a register, in its order */
        const real *x0 = a->x + CL_ROW(a, r, 0), *x1 = a->x + CL_ROW(a, r, 1);
        for (int64_t ow = 0; ow < a->OW; ow++) {
            const real *restrict p0 = x0 + 2 * ow * C, *restrict p1 = x1 + 2 * ow * C;
            real *restrict yv = a->y + r * n + ow * C;
            for (int64_t c = 0; c < C; c++) yv[c] = ((((real)0 + p0[c]) + p0[C + c]) + p1[c]) + p1[C + c];
            for (int64_t c = 0; c < C; c++) yv[c] /= (real)4;
        }
    }
}

CLONES static void max_forward_cl(const pool_args *a, int64_t r0, int64_t r1) {
    const int64_t C = a->C, n = a->OW * C;
    if (a->kh != 2 || a->kw != 2) {
        forward_cl(a, r0, r1, 1);
        return;
    }
    for (int64_t r = r0; r < r1; r++) { /* 2x2: the window in registers (max2_forward_run) */
        const real *x0 = a->x + CL_ROW(a, r, 0), *x1 = a->x + CL_ROW(a, r, 1);
        for (int64_t ow = 0; ow < a->OW; ow++)
            max2_forward_run(x0 + 2 * ow * C, x1 + 2 * ow * C, a->y + r * n + ow * C, a->idx + r * n + ow * C, C,
                             1, C);
    }
}

/* The input rows of output row r that no window covers past its last column, and, for the
 * plane's last output row, the rows below the last window: zeros. */
static void zero_margins_cl(const pool_args *a, int64_t r) {
    const int64_t C = a->C, used = a->OW * a->kw * C, row = a->W * C;
    if (used < row)
        for (int64_t i = 0; i < a->kh; i++) memset(a->gx + CL_ROW(a, r, i) + used, 0, sizeof(real) * (size_t)(row - used));
    if (r % a->OH == a->OH - 1 && a->OH * a->kh < a->H) {
        real *below = a->gx + CL_ROW(a, r, 0) + a->kh * row;
        memset(below, 0, sizeof(real) * (size_t)((a->H - a->OH * a->kh) * row));
    }
}

/* Both gradients of output rows [r0, r1), every window entry written once: the average's
 * gy/(kh·kw), or the max's gy where the entry was chosen and 0 elsewhere (max: a constant
 * where the two passes below inline it). */
INLINE void backward_cl(const pool_args *a, int64_t r0, int64_t r1, const int max) {
    const int64_t C = a->C, OW = a->OW, kw = a->kw;
    const real count = (real)(a->kh * kw);
    for (int64_t r = r0; r < r1; r++) {
        const real *restrict gr = a->gy + r * OW * C;
        const uint8_t *restrict ir = max ? a->idx + r * OW * C : 0;
        for (int64_t i = 0; i < a->kh; i++) {
            real *restrict xr = a->gx + CL_ROW(a, r, i);
            for (int64_t ow = 0; ow < OW; ow++)
                for (int64_t k = 0; k < kw; k++) {
                    real *restrict xv = xr + (ow * kw + k) * C;
                    const real *restrict gv = gr + ow * C;
                    const uint8_t at = (uint8_t)(i * kw + k);
                    if (max)
                        for (int64_t c = 0; c < C; c++) xv[c] = ir[ow * C + c] == at ? gv[c] : 0;
                    else
                        for (int64_t c = 0; c < C; c++) xv[c] = gv[c] / count;
                }
        }
        zero_margins_cl(a, r);
    }
}

CLONES static void avg_backward_cl(const pool_args *a, int64_t r0, int64_t r1) { backward_cl(a, r0, r1, 0); }
CLONES static void max_backward_cl(const pool_args *a, int64_t r0, int64_t r1) { backward_cl(a, r0, r1, 1); }
#undef CL_ROW

#define CL_ITEM(pass)                                                                       \
    static void pass##_cl_item(const void *args, int64_t item) {                            \
        const pool_args *a = (const pool_args *)args;                                       \
        const int64_t rows = a->planes * a->OH, r0 = item * a->per_item;                    \
        pass##_cl(a, r0, r0 + a->per_item < rows ? r0 + a->per_item : rows);                \
    }
CL_ITEM(avg_forward)
CL_ITEM(max_forward)
CL_ITEM(avg_backward)
CL_ITEM(max_backward)
#undef CL_ITEM

/* work items: of planes, or of output rows in channels-last */
static int64_t items(const pool_args *a) {
    const int64_t units = a->channels_last ? a->planes * a->OH : a->planes;
    return (units + a->per_item - 1) / a->per_item;
}

void avg_pool_forward(const pool_args *a, int threads) {
    run_items(a, a->channels_last ? avg_forward_cl_item : avg_forward_item, items(a), threads);
}
void max_pool_forward(const pool_args *a, int threads) {
    run_items(a, a->channels_last ? max_forward_cl_item : max_forward_item, items(a), threads);
}
void avg_pool_backward(const pool_args *a, int threads) {
    run_items(a, a->channels_last ? avg_backward_cl_item : avg_backward_item, items(a), threads);
}
void max_pool_backward(const pool_args *a, int threads) {
    run_items(a, a->channels_last ? max_backward_cl_item : max_backward_item, items(a), threads);
}
