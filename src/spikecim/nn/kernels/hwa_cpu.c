/* The converters of hardware-aware training on the CPU, each in one pass over float32
 * tensors: the input DAC with a learned range (clip, levels, the clip masks and their count),
 * its backward (the masked input gradient and the range's share from the clipped inputs),
 * the clipped inputs' share of a convolution tile's range gradient read straight from the
 * output gradient, and the output ADC (levels, bound, saturation mask, the sum over tiles).
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

#include "parallel.h"

#define UPPER 1
#define LOWER 2
#define OUTSIDE 4

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

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
 * gp = Σ_m kt[c, i, j, m] · gt[b, oy, ox, m] (the patch entry's gradient Wᵀ·G). */
typedef struct {
    const uint8_t *code; /* [B, C, H, W] */
    const float *kt;     /* [C, kh, kw, M] */
    const float *gt;     /* [B, Ho, Wo, M] */
    double *partial;     /* [B] */
    int64_t B, C, H, W, M, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw;
} range_args;

/* ADC: out = prev + v (prev may be NULL: out = v), with `quantise` k = rint(y·inv),
 * v = clamp(k, −q, q)·step, mask = k > q or k < −q; else v = clamp(y, −bound, bound),
 * mask = y > bound or y < −bound. saturated[c]: the chunk's count of masked outputs.
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

CLONES static void dac_chunk(const void *p, int64_t c) {
    const dac_args *a = (const dac_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    const float r = a->r, nr = -r, inv = a->inv, step = a->step;
    const float *restrict xs = a->x;
    float *restrict y = a->y;
    uint8_t *restrict code = a->code;
    int64_t count = 0;
    if (a->quantise) {
        for (int64_t i = lo; i < hi; i++) {
            const float x = xs[i];
            float v = x < nr ? nr : x;
            v = v > r ? r : v;
            y[i] = rintf(v * inv) * step;
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
            const float x = xs[i];
            const float v = x < nr ? nr : x;
            y[i] = v > r ? r : v;
        }
    }
    for (int64_t i = lo; i < hi; i++) {
        const float x = xs[i];
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

/* Σ_m w[m]·g[m] over LANES interleaved partial sums (they vectorise), then the lanes. */
#define LANES 8
CLONES static float dot(const float *restrict w, const float *restrict g, int64_t M) {
    float acc[LANES] = {0};
    int64_t m = 0;
    for (; m + LANES <= M; m += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += w[m + l] * g[m + l];
    float s = 0.0f;
    for (; m < M; m++) s += w[m] * g[m];
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

static void range_sample(const void *p, int64_t b) {
    const range_args *a = (const range_args *)p;
    const int64_t M = a->M, plane = a->H * a->W;
    double s = 0.0;
    for (int64_t c = 0; c < a->C; c++) {
        const uint8_t *code = a->code + (b * a->C + c) * plane;
        for (int64_t yx = 0; yx < plane; yx++) {
            const uint8_t k = code[yx];
            if (!(k & (UPPER | LOWER))) continue;
            const int64_t y = yx / a->W, x = yx % a->W;
            for (int64_t i = 0; i < a->kh; i++) {
                const int64_t oy = y + a->ph - i * a->dh;
                if (oy < 0 || oy % a->sh || oy / a->sh >= a->Ho) continue;
                for (int64_t j = 0; j < a->kw; j++) {
                    const int64_t ox = x + a->pw - j * a->dw;
                    if (ox < 0 || ox % a->sw || ox / a->sw >= a->Wo) continue;
                    const float *w = a->kt + ((c * a->kh + i) * a->kw + j) * M;
                    const float *g = a->gt + ((b * a->Ho + oy / a->sh) * a->Wo + ox / a->sw) * M;
                    const float gp = dot(w, g, M);
                    if (k & UPPER) s += gp < 0.0f ? gp : 0.0f;
                    if (k & LOWER) s += -gp < 0.0f ? -gp : 0.0f;
                }
            }
        }
    }
    a->partial[b] = s;
}

void hwa_conv_range_grad(const range_args *a, int threads) { run_items(a, range_sample, a->B, threads); }

CLONES static void adc_chunk(const void *p, int64_t c) {
    const adc_args *a = (const adc_args *)p;
    const int64_t lo = c * a->chunk, hi = lo + a->chunk < a->n ? lo + a->chunk : a->n;
    const float *restrict ys = a->y, *restrict prev = a->prev;
    float *out = a->out; /* may be y or prev */
    uint8_t *restrict mask = a->mask;
    int64_t saturated = 0;
    if (a->quantise) {
        const float inv = a->inv, step = a->step, q = a->q, nq = -q;
        for (int64_t i = lo; i < hi; i++) {
            const float k = rintf(ys[i] * inv);
            const int o = k > q || k < nq;
            mask[i] = (uint8_t)o;
            saturated += o;
        }
        if (prev)
            for (int64_t i = lo; i < hi; i++) {
                const float k = rintf(ys[i] * inv);
                out[i] = prev[i] + (k < nq ? nq : (k > q ? q : k)) * step;
            }
        else
            for (int64_t i = lo; i < hi; i++) {
                const float k = rintf(ys[i] * inv);
                out[i] = (k < nq ? nq : (k > q ? q : k)) * step;
            }
    } else {
        const float b = a->bound, nb = -b;
        for (int64_t i = lo; i < hi; i++) {
            const float y = ys[i];
            const int o = y > b || y < nb;
            mask[i] = (uint8_t)o;
            saturated += o;
        }
        for (int64_t i = lo; i < hi; i++) {
            const float y = ys[i];
            float v = y < nb ? nb : y;
            v = v > b ? b : v;
            out[i] = prev ? prev[i] + v : v;
        }
    }
    a->saturated[c] = saturated;
}

void hwa_adc_forward(const adc_args *a, int threads) {
    run_items(a, adc_chunk, (a->n + a->chunk - 1) / a->chunk, threads);
}
