/* The converters of hardware-aware training on the CPU, each in one pass over float32
 * tensors: the input DAC with a learned range (clip, levels, the clip masks and their count),
 * its backward (the masked input gradient and the range's share from the clipped inputs),
 * the clipped inputs' share of a convolution tile's range gradient read straight from the
 * output gradient, the moments of a convolution tile's patch entries (for the learned
 * range's initialisation) without the patches, and the output ADC (levels, bound, saturation mask, the sum over tiles).
 * spikecim/analog/hwa.py holds the torch passes they replace and their equations;
 * spikecim/analog/hwa_kernels.py builds and calls this file.
 *
 * Built with `cc -O2 -ftree-vectorize -ffp-contract=off`. The elementwise arithmetic follows
 * the torch passes operation by operation (no fused multiply-add; rint rounds half to even
 * in the default rounding mode, as torch.round), so the DAC's and the ADC's outputs are
 * bit-identical to them; the sums (counts are exact) accumulate in double.
 *
 * Clip codes, one byte per input: UPPER x >= r, LOWER x <= -r, OUTSIDE !(-r <= x <= r)
 * (|x| > r, or NaN: torch's clamp(x) != x).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "parallel.h"
#include "real.h"

#define UPPER 1
#define LOWER 2
#define OUTSIDE 4

/* DAC forward over n inputs in chunks of `chunk`. y = clamp(x, -r, r), then with `quantise`
 * rint(y·inv)·step (inv = n_levels/r, step = r/n_levels, computed by torch). Per chunk:
 * count[c] = #(x >= r) + #(x <= -r); with `copies` ([inner] floats, the input at position
 * i % inner copied that many times into the patches) weighted[c] = Σ copies over the inputs
 * where x >= r or x <= -r. */
typedef struct {
    const float *x, *copies; /* copies may be NULL */
    float *y;
    uint8_t *code;
    int64_t *count;
    double *weighted;
    int64_t n, chunk, inner;
    float r, inv, step;
    int32_t quantise;
} dac_args;

/* DAC backward: grad[i] = g[i], 0 where OUTSIDE; with `sums`, per chunk
 * sums[c] = Σ_{UPPER} min(g, 0) + Σ_{LOWER} min(−g, 0). grad may be g (in place). */
typedef struct {
    const float *g;
    const uint8_t *code;
    float *grad;
    double *sums; /* may be NULL */
    int64_t n, chunk;
} dac_back_args;

/* The clipped inputs' share of a convolution tile's range gradient, per sample b:
 * partial[b] = Σ over inputs (b, c, y, x) with code UPPER (LOWER), over the kernel taps (i, j)
 * whose window (oy, ox) = ((y + ph − i·dh)/sh, (x + pw − j·dw)/sw) exists, of min(±gp, 0),
 * gp = Σ_m kt[c, i, j, m] · g[b, m, oy, ox] (the patch entry's gradient Wᵀ·G), read from gt,
 * g with each window's M values side by side (the caller's one permuted copy). */
typedef struct {
    const uint8_t *code; /* [B, C, H, W], or [B, H, W, C] with nhwc (a channels-last input's) */
    const float *kt;     /* [C, kh, kw, M] */
    const float *gt;     /* [B, Ho, Wo, M]: the output gradient, each window's M values side by side */
    double *partial;     /* [B] */
    int64_t *windows;    /* [H·kh + W·kw] work space: window_table's rows, then columns */
    int64_t B, C, H, W, M, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, nhwc;
    const float *zeros;  /* [M] zeros (set by hwa_conv_range_grad): the taps that fill a set */
} range_args;

/* ADC: out = prev + v (prev may be NULL: out = v), with `quantise` k = rint(y·inv),
 * v = clamp(k, −q, q)·step, mask = OUTSIDE where k > q or k < −q; else v = clamp(y, −bound,
 * bound), mask = OUTSIDE where y > bound or y < −bound (hwa_dac_backward masks the gradient). saturated[c]: the chunk's count of masked outputs.
 * out may be y or prev (in place). */
typedef struct {
    const float *y, *prev;
    float *out;
    uint8_t *mask;
    int64_t *saturated;
    int64_t n, chunk;
    float inv, step, q, bound;
    int32_t quantise;
} adc_args;

/* Moments of a convolution tile's patch entries without the patches, per chunk:
 * s1[c] = Σ copies[i % inner]·x[i], s2[c] = Σ copies[i % inner]·(x[i]·x[i]) (the square
 * rounded to float, as torch's x.square()), in double. */
typedef struct {
    const float *x, *copies;
    double *s1, *s2;
    int64_t n, chunk, inner;
} moments_args;

static void moments_chunk(const void *p, int64_t c) {
    const moments_args *a = (const moments_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    double s1 = 0.0, s2 = 0.0;
    int64_t pos = lo % a->inner;
    for (int64_t i = lo; i < hi; i++) {
        const float x = a->x[i];
        const double w = a->copies[pos];
        s1 += w * x;
        s2 += w * (double)(x * x);
        if (++pos == a->inner) pos = 0;
    }
    a->s1[c] = s1;
    a->s2[c] = s2;
}

void hwa_moments(const moments_args *a, int threads) {
    run_items(a, moments_chunk, (a->n + a->chunk - 1) / a->chunk, threads);
}

CLONES static void dac_chunk(const void *p, int64_t c) {
    const dac_args *a = (const dac_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    const float r = a->r, nr = -r, inv = a->inv, step = a->step;
    const float *restrict xs = a->x;
    float *restrict y = a->y;
    uint8_t *restrict code = a->code;
    int64_t count = 0;
    for (int64_t i = lo; i < hi; i++) {
        const float x = xs[i];
        float v = x < nr ? nr : x;
        v = v > r ? r : v;
        y[i] = a->quantise ? rintf(v * inv) * step : v;
        const int up = x >= r, down = x <= nr;
        code[i] = (uint8_t)(up * UPPER + down * LOWER + !(x >= nr && x <= r) * OUTSIDE);
        count += up + down;
    }
    a->count[c] = count;
    if (a->copies && count) {
        double w = 0.0;
        for (int64_t i = lo; i < hi; i++)
            if (code[i] & (UPPER | LOWER)) w += a->copies[i % a->inner];
        a->weighted[c] = w;
    } else if (a->weighted) {
        a->weighted[c] = 0.0;
    }
}

void hwa_dac_forward(const dac_args *a, int threads) {
    run_items(a, dac_chunk, (a->n + a->chunk - 1) / a->chunk, threads);
}

CLONES static void dac_back_chunk(const void *p, int64_t c) {
    const dac_back_args *a = (const dac_back_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    const float *restrict gs = a->g;
    const uint8_t *restrict code = a->code;
    float *grad = a->grad; /* may be g */
    for (int64_t i = lo; i < hi; i++) grad[i] = (code[i] & OUTSIDE) ? 0.0f : gs[i];
    if (!a->sums) return;
    double s = 0.0;
    for (int64_t i = lo; i < hi; i++) {
        const uint8_t k = code[i];
        if (!(k & (UPPER | LOWER))) continue;
        const float g = gs[i];
        if (k & UPPER) s += g < 0.0f ? g : 0.0f;
        if (k & LOWER) s += -g < 0.0f ? -g : 0.0f;
    }
    a->sums[c] = s;
}

void hwa_dac_backward(const dac_back_args *a, int threads) {
    run_items(a, dac_back_chunk, (a->n + a->chunk - 1) / a->chunk, threads);
}

/* Up to TAPS dot products Σ_m w[t][m]·g[t][m] of length M at once: each in its own vector
 * of 8 partial sums (independent chains, so they run at the loads' pace), then the lanes.
 * TAPS = 9 holds a 3 × 3 kernel's taps; a full set unrolls, accumulators in registers. */
#define TAPS 9
typedef float v8 __attribute__((vector_size(32)));

static inline __attribute__((always_inline)) v8 load8(const float *p) {
    v8 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) float lanes(v8 v, const float *w, const float *g, int64_t m, int64_t M) {
    float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    for (; m < M; m++) s += w[m] * g[m];
    return s;
}

/* The lane sums of eight vectors as one vector (s[t] = Σ lanes of a[t]): three levels of
 * pairwise shuffles and adds instead of eight sequential reductions. */
#if defined(__clang__)
#define SHUF(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#else
typedef int32_t i8v __attribute__((vector_size(32)));
#define SHUF(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shuffle(a, b, (i8v){i0, i1, i2, i3, i4, i5, i6, i7})
#endif

static inline __attribute__((always_inline)) v8 sums8(const v8 *a) {
    v8 p[4], q[2];
    for (int i = 0; i < 4; i++) /* [a0+a1, b0+b1, a2+a3, b2+b3, ...] */
        p[i] = SHUF(a[2 * i], a[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               SHUF(a[2 * i], a[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int i = 0; i < 2; i++) /* [a0..3, b0..3, c0..3, d0..3, a4..7, b4..7, c4..7, d4..7] */
        q[i] = SHUF(p[2 * i], p[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               SHUF(p[2 * i], p[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return SHUF(q[0], q[1], 0, 1, 2, 3, 8, 9, 10, 11) + SHUF(q[0], q[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

static inline __attribute__((always_inline)) void dots(const float *const *w, const float *const *g, int n, int64_t M, float *out) {
    v8 acc[TAPS];
    int64_t m = 0;
    if (n == TAPS) {
#pragma GCC unroll 9
        for (int t = 0; t < TAPS; t++) acc[t] = (v8){0};
        for (; m + 8 <= M; m += 8)
#pragma GCC unroll 9
            for (int t = 0; t < TAPS; t++) acc[t] += load8(w[t] + m) * load8(g[t] + m);
        const v8 s8 = sums8(acc);
        for (int t = 0; t < 8; t++) {
            float s = s8[t];
            for (int64_t r = m; r < M; r++) s += w[t][r] * g[t][r];
            out[t] = s;
        }
        out[8] = lanes(acc[8], w[8], g[8], m, M);
        return;
    } else {
        for (int t = 0; t < n; t++) acc[t] = (v8){0};
        for (; m + 8 <= M; m += 8)
            for (int t = 0; t < n; t++) acc[t] += load8(w[t] + m) * load8(g[t] + m);
    }
    for (int t = 0; t < n; t++) out[t] = lanes(acc[t], w[t], g[t], m, M);
}

/* Σ of min(gp, 0) (UPPER) and min(−gp, 0) (LOWER) over the n taps' dot products. */
static inline __attribute__((always_inline)) double clipped_sum(uint8_t k, const float *const *w, const float *const *g, int n, int64_t M) {
    float gp[TAPS], up[TAPS], lo[TAPS];
    double s = 0.0;
    dots(w, g, n, M, gp);
    for (int t = 0; t < n; t++) { /* selects (min against 0), not branches on the sign */
        up[t] = gp[t] < 0.0f ? gp[t] : 0.0f;
        lo[t] = -gp[t] < 0.0f ? -gp[t] : 0.0f;
    }
    for (int t = 0; t < n; t++) {
        if (k & UPPER) s += up[t];
        if (k & LOWER) s += lo[t];
    }
    return s;
}

/* The share of input (b, c, y, x), clip code k (UPPER or LOWER set): its taps' dot products
 * gathered TAPS at a time. */
static inline __attribute__((always_inline)) double input_share(const range_args *a, int64_t b, int64_t c, int64_t y,
                                                                int64_t x, uint8_t k) {
    const int64_t M = a->M, kh = a->kh, kw = a->kw;
    const int64_t *rows = a->windows, *cols = a->windows + a->H * kh;
    const float *kc = a->kt + c * kh * kw * M;
    const float *ws[TAPS], *gs[TAPS];
    double s = 0.0;
    int n = 0; /* taps gathered for the next dots() */
    for (int64_t i = 0; i < kh; i++) {
        const int64_t oy = rows[y * kh + i];
        if (oy < 0) continue;
        for (int64_t j = 0; j < kw; j++) {
            const int64_t ox = cols[x * kw + j];
            if (ox < 0) continue;
            ws[n] = kc + (i * kw + j) * M;
            gs[n] = a->gt + ((b * a->Ho + oy) * a->Wo + ox) * M;
            if (++n == TAPS) {
                s += clipped_sum(k, ws, gs, n, M);
                n = 0;
            }
        }
    }
    if (n && a->zeros) { /* filled with zero taps (gp = 0 adds nothing): the unrolled set */
        for (int t = n; t < TAPS; t++) ws[t] = gs[t] = a->zeros;
        s += clipped_sum(k, ws, gs, TAPS, M);
    } else if (n)
        s += clipped_sum(k, ws, gs, n, M);
    return s;
}

/* Whether none of the 8 codes at p is UPPER or LOWER (most inputs clip nowhere). */
static inline __attribute__((always_inline)) int none_clipped8(const uint8_t *p) {
    uint64_t word;
    __builtin_memcpy(&word, p, 8);
    return !(word & 0x0303030303030303ULL);
}

/* Sample b's inputs in the order the codes lie: channel by channel (NCHW), or position by
 * position with the channels side by side (NHWC); eight codes skipped at once where none
 * clipped. */
CLONES static void range_sample(const void *p, int64_t b) {
    const range_args *a = (const range_args *)p;
    const int64_t C = a->C, W = a->W, plane = a->H * a->W;
    double s = 0.0;
    if (a->nhwc) {
        for (int64_t yx = 0; yx < plane; yx++) {
            const uint8_t *code = a->code + (b * plane + yx) * C;
            const int64_t y = yx / W, x = yx - y * W;
            for (int64_t c = 0; c < C; c++) {
                if (c + 8 <= C && none_clipped8(code + c)) {
                    c += 7;
                    continue;
                }
                if (code[c] & (UPPER | LOWER)) s += input_share(a, b, c, y, x, code[c]);
            }
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            const uint8_t *code = a->code + (b * C + c) * plane;
            for (int64_t yx = 0; yx < plane; yx++) {
                if (yx + 8 <= plane && none_clipped8(code + yx)) {
                    yx += 7;
                    continue;
                }
                if (code[yx] & (UPPER | LOWER)) s += input_share(a, b, c, yx / W, yx % W, code[yx]);
            }
        }
    }
    a->partial[b] = s;
}

/* The window (output row, column) that input row y (column x) meets through kernel row i
 * (column j), or −1 where the stride skips it or it lies outside the output. */
static void window_table(int64_t *t, int64_t n, int64_t k, int64_t pad, int64_t dil, int64_t stride, int64_t out) {
    for (int64_t y = 0; y < n; y++)
        for (int64_t i = 0; i < k; i++) {
            const int64_t o = y + pad - i * dil;
            t[y * k + i] = (o < 0 || o % stride || o / stride >= out) ? -1 : o / stride;
        }
}

void hwa_conv_range_grad(const range_args *a, int threads) {
    window_table(a->windows, a->H, a->kh, a->ph, a->dh, a->sh, a->Ho);
    window_table(a->windows + a->H * a->kh, a->W, a->kw, a->pw, a->dw, a->sw, a->Wo);
    range_args b = *a;
    float *zeros = (float *)calloc((size_t)a->M, sizeof(float));
    b.zeros = zeros;
    if (zeros) {
        run_items(&b, range_sample, a->B, threads);
        free(zeros);
    } else { /* no room for M zeros: each partial set as it is */
        b.zeros = 0;
        run_items(&b, range_sample, a->B, threads);
    }
}

/* The ADC over elements lo .. hi-1, quantise and add (out = prev + v) constants at each call:
 * one body, no branch on them inside the loop (`prev ? prev[i] + v : v` inside it compiles to
 * masked loads from prev's address, a microcode assist each with prev NULL). Returns the
 * count of saturated elements. */
static inline __attribute__((always_inline)) int64_t adc_range(const adc_args *a, int64_t lo, int64_t hi,
                                                              const int quantise, const int add) {
    const float *ys = a->y, *prev = a->prev;
    float *out = a->out; /* may be y or prev */
    uint8_t *restrict mask = a->mask;
    const float inv = a->inv, step = a->step, q = a->q, nq = -q, b = a->bound, nb = -b;
    int64_t saturated = 0;
    for (int64_t i = lo; i < hi; i++) {
        float v;
        int o;
        if (quantise) {
            const float k = rintf(ys[i] * inv);
            o = k > q || k < nq;
            v = (k < nq ? nq : (k > q ? q : k)) * step;
        } else {
            const float y = ys[i];
            o = y > b || y < nb;
            v = y < nb ? nb : (y > b ? b : y);
        }
        mask[i] = (uint8_t)(o * OUTSIDE);
        saturated += o;
        out[i] = add ? prev[i] + v : v;
    }
    return saturated;
}

CLONES static void adc_chunk(const void *p, int64_t c) {
    const adc_args *a = (const adc_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    int64_t saturated;
    if (a->quantise && a->prev) saturated = adc_range(a, lo, hi, 1, 1);
    else if (a->quantise) saturated = adc_range(a, lo, hi, 1, 0);
    else if (a->prev) saturated = adc_range(a, lo, hi, 0, 1);
    else saturated = adc_range(a, lo, hi, 0, 0);
    a->saturated[c] = saturated;
}

void hwa_adc_forward(const adc_args *a, int threads) {
    run_items(a, adc_chunk, (a->n + a->chunk - 1) / a->chunk, threads);
}
