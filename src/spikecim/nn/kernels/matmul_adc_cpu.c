/* The product of crossbars written at run time on the CPU: DAC and MVM in one pass, then the
 * ADC and the digital stage in one pass (the output noise is added between them by
 * spikecim/analog/noise.py). spikecim/analog/dynamic.py (AnalogMatMul._crossbar) holds the
 * torch passes they replace; spikecim/analog/matmul_kernel.py builds and calls this file.
 *
 * Built with cbuild.FLAGS (-ffp-contract=off: no fused multiply-add) and -DREAL=float, once
 * more with -DREAL=double -DREAL_IS_DOUBLE=1.
 *
 * Columns: a is [B, M, K], read through strides (entry (m, k) of matrix b at
 * a[(b / L1)*s0 + (b % L1)*s1 + m*sM + k*sK]: a view such as the queries of attention split
 * into heads is read where it lies), mt [B, n_in, R, W] contiguous (W = n_out*S*C, the
 * signed read matrix of spikecim/analog/written_kernel.py), y [B, n_in, M, W]. For every
 * (b, i, m), the row x = a[b, m, i*R .. i*R + R) (rows beyond K hold no entry: zero), with the
 * DAC on: s = max |x|, s = 1 where !(s > 0) (an all-zero row, or a NaN in it: torch.where(s >
 * 0, s, 1) after amax), x = rint(x * ((1/s) * n_dac)), dac_scale[b, i, m] = s (the
 * arithmetic of spikecim/analog/converter_kernels.py dac_levels, the same levels); then
 *     y[b, i, m, w] = sum_r x[r] * mt[b, i, r, w],   r ascending
 * (torch's bmm sums in another order: the same values to float rounding).
 *
 * Output: y as above (after the output noise), out [B, M, N]. For every element, v = y, or
 * v = clamp(rint(y*k), -q, q) with the ADC on; then as the torch path:
 *   one slice:  v = v * (w_scale[b, i, o] * gain[0])
 *   S slices:   v = (sum_s v_s * gain[s]) * w_scale[b, i, o],  s ascending
 * (gain: the slice gains over the signal's unit), v = v * dac_scale[b, i, m] (DAC on), and
 * out is the sum over input tiles i, ascending.
 */
#include <stdint.h>
#include <string.h>
#include <tgmath.h> /* rint in the precision of its argument */

#include "parallel.h"
#include "real.h"
#include "converters.h"

#define MAX_ROWS 4096 /* R above this: the caller uses the torch passes */

typedef struct {
    const real *a, *mt;
    real *y, *dac_scale; /* dac_scale: [B, n_in, M], written with the DAC on */
    int64_t B, M, K, R, n_in, W;
    int64_t L1, s0, s1, sM, sK; /* a's strides (above) */
    int32_t dac;
    real n_dac;
} columns_args;

typedef struct {
    const real *y, *w_scale, *gain, *dac_scale; /* w_scale [B, n_in, n_out]; dac_scale may be NULL */
    real *out;
    int64_t B, M, N, n_in, n_out, S, C;
    int32_t adc;
    real k, q;
} output_args;

/* GCC vector extensions: 32 bytes of reals (eight floats or four doubles), kept in registers
 * while the rows of a tile are accumulated (a loop over memory would store and reload the
 * sums at every row). */
#define LANES (32 / (int64_t)sizeof(real))
typedef real vec __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) vec load(const real *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* y[0 .. W) = sum_r x[r] * m[r*W + w], r ascending (y is overwritten). */
static inline __attribute__((always_inline)) void row_times_tile(real *restrict y, const real *restrict m,
                                                               const real *restrict x, int64_t rows, int64_t W) {
    int64_t w0 = 0;
    for (; w0 + 2 * LANES <= W; w0 += 2 * LANES) {
        vec s0 = {0}, s1 = {0};
        for (int64_t r = 0; r < rows; r++) {
            const vec xv = x[r] - (vec){0}; /* x[r] in every lane */
            s0 = s0 + xv * load(m + r * W + w0);
            s1 = s1 + xv * load(m + r * W + w0 + LANES);
        }
        memcpy(y + w0, &s0, sizeof s0);
        memcpy(y + w0 + LANES, &s1, sizeof s1);
    }
    for (; w0 < W; w0++) {
        real acc = 0;
        for (int64_t r = 0; r < rows; r++) acc = acc + x[r] * m[r * W + w0];
        y[w0] = acc;
    }
}

/* One item: the rows of a of matrix b (item = b*n_in + i) through input tile i. */
CLONES static void columns_item(const void *p, int64_t item) {
    const columns_args *a = (const columns_args *)p;
    const int64_t b = item / a->n_in, i = item % a->n_in, R = a->R, W = a->W, M = a->M, K = a->K;
    const int64_t rows = K - i * R < R ? K - i * R : R;
    const real *mt = a->mt + item * R * W;
    const real *am = a->a + (b / a->L1) * a->s0 + (b % a->L1) * a->s1 + i * R * a->sK;
    const int64_t sM = a->sM, sK = a->sK;
    real x[MAX_ROWS];
    for (int64_t m = 0; m < M; m++) {
        const real *src = am + m * sM;
        real *restrict y = a->y + (item * M + m) * W;
        if (sK == 1)
            memcpy(x, src, sizeof(real) * (size_t)rows);
        else
            for (int64_t r = 0; r < rows; r++) x[r] = src[r * sK];
        if (a->dac) {
            ubits mx = 0;
            for (int64_t r = 0; r < rows; r++) mx = abs_bits(x[r]) > mx ? abs_bits(x[r]) : mx;
            const real s = scale_of(mx), g = gain_of(s, a->n_dac);
            for (int64_t r = 0; r < rows; r++) x[r] = rint(x[r] * g);
            a->dac_scale[item * M + m] = s;
        }
        row_times_tile(y, mt, x, rows, W);
    }
}

/* dst[c] (= or +=) rint-and-clamp(ys[c]*k)*g*ds (adc), else ys[c]*g*ds: one slice's outputs
 * of one row, one pass the compiler vectorises (adc and first are constants at each call). */
static inline __attribute__((always_inline)) void one_slice(const real *restrict ys, real *restrict dst, int64_t nc,
                                                          real k, real q, real g, real ds, int adc, int first) {
    for (int64_t c = 0; c < nc; c++) {
        real u = ys[c];
        if (adc) u = adc_level(u, k, q);
        u = u * g;
        u = u * ds;
        dst[c] = first ? u : dst[c] + u;
    }
}

#define CBLOCK 256 /* columns per block of the several-slice pass */

/* The several-slice outputs of one row: as one_slice with the slices summed first. */
static void slices(const output_args *a, const real *y, real *out, const real *ws, real ds, int first) {
    const int64_t S = a->S, C = a->C, n_out = a->n_out, N = a->N;
    const real k = a->k, q = a->q;
    real v[CBLOCK], t[CBLOCK];
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t c_end = N - o * C < C ? N - o * C : C;
        for (int64_t c0 = 0; c0 < c_end; c0 += CBLOCK) {
            const int64_t nc = c_end - c0 < CBLOCK ? c_end - c0 : CBLOCK;
            for (int64_t s = 0; s < S; s++) {
                const real *ys = y + (o * S + s) * C + c0;
                const real g = a->gain[s];
                if (a->adc)
                    for (int64_t c = 0; c < nc; c++) t[c] = adc_level(ys[c], k, q) * g;
                else
                    for (int64_t c = 0; c < nc; c++) t[c] = ys[c] * g;
                for (int64_t c = 0; c < nc; c++) v[c] = s ? v[c] + t[c] : t[c];
            }
            real *dst = out + o * C + c0;
            for (int64_t c = 0; c < nc; c++) {
                const real u = v[c] * ws[o] * ds;
                dst[c] = first ? u : dst[c] + u;
            }
        }
    }
}

/* One item: rows of matrix b (item = b), all their outputs. */
CLONES static void output_item(const void *p, int64_t b) {
    const output_args *a = (const output_args *)p;
    const int64_t M = a->M, S = a->S, C = a->C, n_out = a->n_out, N = a->N, W = n_out * S * C;
    const real k = a->k, q = a->q;
    for (int64_t i = 0; i < a->n_in; i++) {
        const int64_t tile = b * a->n_in + i;
        const real *ws = a->w_scale + tile * n_out;
        for (int64_t m = 0; m < M; m++) {
            const real *y = a->y + (tile * M + m) * W;
            real *out = a->out + (b * M + m) * N;
            const real ds = a->dac_scale ? a->dac_scale[tile * M + m] : (real)1;
            if (S > 1) {
                slices(a, y, out, ws, ds, i == 0);
                continue;
            }
            for (int64_t o = 0; o < n_out; o++) {
                const int64_t nc = N - o * C < C ? N - o * C : C;
                const real g = ws[o] * a->gain[0];
                const real *ys = y + o * C;
                real *dst = out + o * C;
                if (a->adc && i == 0)
                    one_slice(ys, dst, nc, k, q, g, ds, 1, 1);
                else if (a->adc)
                    one_slice(ys, dst, nc, k, q, g, ds, 1, 0);
                else if (i == 0)
                    one_slice(ys, dst, nc, k, q, g, ds, 0, 1);
                else
                    one_slice(ys, dst, nc, k, q, g, ds, 0, 0);
            }
        }
    }
}

int32_t max_rows(void) { return MAX_ROWS; }
void written_columns(const columns_args *a, int threads) { run_items(a, columns_item, a->B * a->n_in, threads); }
void written_output(const output_args *a, int threads) { run_items(a, output_item, a->B, threads); }
