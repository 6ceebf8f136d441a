/* An analog convolution with its converters in one pass, float32 on CPUs with AVX-512 or
 * AVX2 with FMA (chosen at run time, the same bits): the patch DAC, the tile products and the
 * column ADC with the digital stage, without writing the patches or the column outputs to
 * memory (an implicit GEMM).
 *
 * The values are those of the three passes it replaces (spikecim/analog/tiles.py with
 * converters_cpu.c; formulas at the top of that file), for x [N, C, H, W] contiguous and
 * input tiles of R rows (patches.h):
 *   DAC: per input tile i and patch l of sample n, s = the abs-max of the patch's rows on
 *       tile i (scale_of: 1 when it is zero or NaN), levels = rint(x·gain_of(s, n_dac));
 *       with `dac` 0 (the DAC off, or binary spikes, which it leaves unchanged) levels = x
 *       and s = 1, as the direct convolution of the passes;
 *   MVM: y[i, n, col, l] = Σ_r m[i, r, col]·levels[r, l] over the tile's rows r ascending,
 *       one fused multiply-add per row (where the passes multiply with oneDNN's blocking:
 *       the two agree to float rounding, as two BLAS libraries do);
 *   output noise (out_noise): y + z·alpha, z the normal of y's flat index in
 *       [n_in, N, cols, L] in the stream of `seed` (philox.h): the passes' normals;
 *   ADC and digital stage: v = clamp(rint(y·k), −q, q) (adc on), (v·gain[i, o, s])·s, and
 *       out[n, o·c_tile + c, l] the left-to-right sum over (i, s), i outer, s inner, for
 *       col = (o·S + s)·c_tile + c.
 *
 * Work: one item per sample and panel of ho_rows whole output rows (the caller picks about
 * 256 patches: panels of 512 rows × 256 patches stay in L2), or per `samples` samples where
 * a panel holds a whole map (8 × 8: 4 samples an item, one set of work buffers). An item
 * writes its patches' levels for one input tile into a panel [R_i, ldp] (ldp: the patches
 * rounded up to 16; it stays in L2), multiplies it with the packed read matrix NR columns at
 * a time (micro-tiles of NR columns × 64 or 16 patches held in 24 or 6 AVX-512 registers,
 * or NR columns × 16 patches in 12 AVX2 registers, with 2 for the levels and one for the
 * broadcast: one broadcast of m and one load of levels per row and vector), and passes each
 * micro-tile's columns through the ADC into the output, tile after tile. The packed read
 * matrix b[i][p][r][j] = m[i, r, p·NR + j] (0 past the last column) is built by the caller,
 * the same for both instruction sets.
 *
 * Instruction sets: each function with vector code has an AVX-512 version and an AVX2 + FMA
 * twin (suffix _avx2) that does the same IEEE operations in the same order lane by lane
 * (the fused multiply-adds over r ascending, rint, the clamps that keep NaN, the noise, the
 * gains, the sums), 8 lanes where the other has 16, so the two give the same bits; conv_rows
 * and conv_item are one body each, inlined into conv_item_avx512 and _avx2. `isa` (3 or 2,
 * at most conv_adc_available()) picks one per call.
 *
 * Built with cbuild.FLAGS (-ffp-contract=off: the DAC and ADC arithmetic is the passes'
 * operation by operation; the MVM's multiply-adds are explicit) and -DREAL=float.
 */
#include <tgmath.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "real.h"
#include "philox.h"
#include "converters.h"
#include "patches.h"

#define NR 6                 /* columns per micro-tile */
#define ROUND(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) /* rint */
#define ROUND_AVX2(v) _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

typedef struct {
    const float *x;    /* [N, C, H, W] contiguous */
    const float *b;    /* packed read matrix [n_in][panels][R][NR] */
    const float *gain; /* [n_in, n_out, S] */
    float *out;        /* [N, out_f, L] */
    patch_geometry g;
    int64_t cols, n_out, S, c_tile, out_f, ho_rows, samples; /* per item: ho_rows output rows of `samples` samples */
    float n_dac, k, q, alpha;
    int32_t dac, adc, out_noise; /* dac 0: the input is the levels (DAC off, or spikes) */
    int32_t isa, failed;          /* isa: the loops to run, 3 AVX-512 or 2 AVX2 (conv_adc_available) */
    uint64_t seed;
} conv_adc_args;

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* y[j·ldy + l] = Σ_{r < K} b[r·NR + j]·a[r·lda + l] for j < NR, l < LANES·MV, r ascending, in
 * vectors V of LANES floats (a and y aligned to them) */
#define MICRO_TILE(NAME, TARGET, V, LANES, MV, ZERO, LOAD, SET1, FMADD, STORE)                           \
    __attribute__((target(TARGET))) static void NAME(int64_t K, const float *a, int64_t lda,            \
                                                     const float *b, float *y, int64_t ldy) {          \
        V acc[NR][MV];                                                                                \
        _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < MV; v++) acc[j][v] = ZERO();                  \
        for (int64_t r = 0; r < K; r++) {                                                             \
            V av[MV];                                                                                 \
            _Pragma("GCC unroll 8") for (int v = 0; v < MV; v++) av[v] = LOAD(a + r * lda + (LANES) * v); \
            _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++) {                                    \
                const V bj = SET1(b[r * NR + j]);                                                     \
                _Pragma("GCC unroll 8") for (int v = 0; v < MV; v++) acc[j][v] = FMADD(av[v], bj, acc[j][v]); \
            }                                                                                         \
        }                                                                                             \
        _Pragma("GCC unroll 8") for (int j = 0; j < NR; j++)                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < MV; v++) STORE(y + j * ldy + (LANES) * v, acc[j][v]); \
    }
#define MICRO_TILE_AVX512(NAME, MV)                                                                    \
    MICRO_TILE(NAME, "avx512f", __m512, 16, MV, _mm512_setzero_ps, _mm512_load_ps, _mm512_set1_ps,    \
               _mm512_fmadd_ps, _mm512_store_ps)
MICRO_TILE_AVX512(micro_tile_64, 4)
MICRO_TILE_AVX512(micro_tile_16, 1)
/* 6 × 2 accumulators, 2 vectors of levels and a broadcast: 15 of the 16 ymm registers */
MICRO_TILE(micro_tile_16_avx2, "avx2,fma", __m256, 8, 2, _mm256_setzero_ps, _mm256_load_ps, _mm256_set1_ps,
           _mm256_fmadd_ps, _mm256_store_ps)
#undef MICRO_TILE_AVX512
#undef MICRO_TILE

/* The widest loops this CPU runs, as cbuild.ISAS numbers them: 3 AVX-512 F, 2 AVX2 with FMA,
 * 0 none (the caller then runs the passes). */
int conv_adc_available(void) {
    if (__builtin_cpu_supports("avx512f")) return 3;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 2 : 0;
}
int conv_adc_tile_columns(void) { return NR; } /* the packed read matrix's column blocks, both ISAs */

#define AVX2_INLINE static inline __attribute__((target("avx2,fma"), always_inline))

/* The mask of lanes 0 .. n − 1 of 8 (all of them for n >= 8), for _mm256_maskload_ps and
 * _mm256_maskstore_ps, which load 0 into the other lanes and leave them unwritten. */
AVX2_INLINE __m256i lanes_avx2(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The input rows that output rows ho0 .. ho0 + nho − 1 read, of the tile's channels
 * c0 .. c1 − 1, zero-padded: pad[(c − c0)·rows·Wp + t·Wp + pw + w] = x[c, ho0·sh − ph + t, w]
 * (rows = (nho − 1)·sh + (kh − 1)·dh + 1, Wp = W + 2·pw). */
static void pad_rows(const patch_geometry *g, const float *xn, int64_t c0, int64_t c1, int64_t ho0, int64_t nho,
                     float *pad) {
    const int64_t rows = (nho - 1) * g->sh + (g->kh - 1) * g->dh + 1, Wp = g->W + 2 * g->pw;
    const int64_t h0 = ho0 * g->sh - g->ph;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t t = 0; t < rows; t++) {
            float *d = pad + ((c - c0) * rows + t) * Wp;
            const int64_t h = h0 + t;
            if (h < 0 || h >= g->H) {
                memset(d, 0, (size_t)Wp * sizeof *d);
                continue;
            }
            memset(d, 0, (size_t)g->pw * sizeof *d);
            memcpy(d + g->pw, xn + (c * g->H + h) * g->W, (size_t)g->W * sizeof *d);
            memset(d + g->pw + g->W, 0, (size_t)g->pw * sizeof *d);
        }
}

/* One panel row of a convolution with column stride 1: the levels of output rows
 * 0 .. nho − 1 at one tap of one channel into dst[ho·Wo + wo], rint(x·gain) from the padded
 * row src (output row ho a run at src + ho·step) and the gains gl; without `levels` (no DAC)
 * x·1, x itself. 16 lanes at a time (the last vector masked), two rows to a vector when they
 * are 8 or fewer patches wide. */
__attribute__((target("avx512f"))) static inline void pack_row(const float *src, int64_t step, float *dst,
                                                               const float *gl, int64_t Wo, int64_t nho, int levels) {
    const int64_t full = Wo / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (Wo - full)) - 1u);
    int64_t ho = 0;
    if (Wo == 8) /* rows ho and ho + 1 in the two halves, by plain 8-lane loads */
        for (; ho + 2 <= nho; ho += 2, src += 2 * step) {
            const __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(src)));
            __m512 v = _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_loadu_ps(src + step)), 1));
            v = _mm512_mul_ps(v, _mm512_loadu_ps(gl + ho * Wo));
            _mm512_storeu_ps(dst + ho * Wo, levels ? ROUND(v) : v);
        }
    if (Wo < 8) /* rows ho and ho + 1 in lanes 0 .. Wo − 1 and Wo .. 2·Wo − 1 */
        for (; ho + 2 <= nho; ho += 2, src += 2 * step) {
            const __mmask16 first = (__mmask16)((1u << Wo) - 1u), both = (__mmask16)((1u << 2 * Wo) - 1u);
            __m512 v = _mm512_maskz_loadu_ps(first, src);
            v = _mm512_mask_loadu_ps(v, (__mmask16)(both & ~first), src + step - Wo);
            v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(both, gl + ho * Wo));
            _mm512_mask_storeu_ps(dst + ho * Wo, both,
                                  levels ? ROUND(v) : v);
        }
    for (; ho < nho; ho++, src += step) {
        float *d = dst + ho * Wo;
        const float *gw = gl + ho * Wo;
        int64_t wo = 0;
        for (; wo < full; wo += 16) {
            const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(src + wo), _mm512_loadu_ps(gw + wo));
            _mm512_storeu_ps(d + wo, levels ? ROUND(v) : v);
        }
        if (tail) {
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, src + wo), _mm512_maskz_loadu_ps(tail, gw + wo));
            _mm512_mask_storeu_ps(d + wo, tail, levels ? ROUND(v) : v);
        }
    }
}

/* pack_row with 8-lane vectors: a row of 8 patches fills one, two rows go to a vector when
 * they are 4 or fewer patches wide; the last vector of a row masked. */
__attribute__((target("avx2,fma"))) static inline void pack_row_avx2(const float *src, int64_t step, float *dst,
                                                                     const float *gl, int64_t Wo, int64_t nho,
                                                                     int levels) {
    const int64_t full = Wo / 8 * 8;
    const __m256i tail = lanes_avx2(Wo - full);
    int64_t ho = 0;
    if (Wo == 8) /* row ho in a vector, by plain loads */
        for (; ho < nho; ho++, src += step) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src), _mm256_loadu_ps(gl + ho * Wo));
            _mm256_storeu_ps(dst + ho * Wo, levels ? ROUND_AVX2(v) : v);
        }
    if (2 * Wo <= 8) /* rows ho and ho + 1 in lanes 0 .. Wo − 1 and Wo .. 2·Wo − 1 */
        for (; ho + 2 <= nho; ho += 2, src += 2 * step) {
            const __m256i first = lanes_avx2(Wo), both = lanes_avx2(2 * Wo);
            const __m256i second = _mm256_andnot_si256(first, both);
            __m256 v = _mm256_blendv_ps(_mm256_maskload_ps(src, first), _mm256_maskload_ps(src + step - Wo, second),
                                        _mm256_castsi256_ps(second));
            v = _mm256_mul_ps(v, _mm256_maskload_ps(gl + ho * Wo, both));
            _mm256_maskstore_ps(dst + ho * Wo, both, levels ? ROUND_AVX2(v) : v);
        }
    for (; ho < nho; ho++, src += step) {
        float *d = dst + ho * Wo;
        const float *gw = gl + ho * Wo;
        int64_t wo = 0;
        for (; wo < full; wo += 8) {
            const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + wo), _mm256_loadu_ps(gw + wo));
            _mm256_storeu_ps(d + wo, levels ? ROUND_AVX2(v) : v);
        }
        if (wo < Wo) {
            const __m256 v = _mm256_mul_ps(_mm256_maskload_ps(src + wo, tail), _mm256_maskload_ps(gw + wo, tail));
            _mm256_maskstore_ps(d + wo, tail, levels ? ROUND_AVX2(v) : v);
        }
    }
}

#define CONV_INLINE static inline __attribute__((always_inline))

/* The levels of patches l0 .. l0 + nl − 1 (nho output rows) on input tile rows r0 .. r1 − 1
 * into panel[(r − r0)·ldp + l − l0] (zeros up to ldp), row by row (pack_row, or pack_row_avx2
 * for `isa` 2; with a column stride, one level at a time) from the padded rows (pad_rows),
 * gains gl[l − l0]. */
CONV_INLINE void pack_panel(const patch_geometry *g, const float *pad, int64_t c0, int64_t r0, int64_t r1,
                            int64_t nho, int64_t ldp, const float *gl, int levels, float *panel, int isa) {
    const int64_t per = g->kh * g->kw, nl = nho * g->Wo, Wp = g->W + 2 * g->pw;
    const int64_t rows = (nho - 1) * g->sh + (g->kh - 1) * g->dh + 1, step = g->sh * Wp;
    int64_t c = r0 / per, ki = r0 % per / g->kw, kj = r0 % g->kw; /* row r's (channel, tap), counted along */
    for (int64_t r = r0; r < r1; r++) {
        const float *src = pad + (c - c0) * rows * Wp + ki * g->dh * Wp + kj * g->dw;
        float *dst = panel + (r - r0) * ldp;
        if (g->sw == 1)
            (isa == 3 ? pack_row : pack_row_avx2)(src, step, dst, gl, g->Wo, nho, levels);
        else /* a column stride: the levels one by one */
            for (int64_t ho = 0; ho < nho; ho++)
                for (int64_t wo = 0; wo < g->Wo; wo++) {
                    const float x = src[ho * step + wo * g->sw];
                    dst[ho * g->Wo + wo] = levels ? rint(x * gl[ho * g->Wo + wo]) : x;
                }
        for (int64_t l = nl; l < ldp; l++) dst[l] = 0;
        if (++kj == g->kw) { /* the next row: the next tap, or the next channel's first */
            kj = 0;
            if (++ki == g->kh) ki = 0, c++;
        }
    }
}

__attribute__((target("avx512f"), noinline)) static void pack_levels(const patch_geometry *g, const float *pad, int64_t c0,
                                                           int64_t r0, int64_t r1, int64_t nho, int64_t ldp,
                                                           const float *gl, int levels, float *panel) {
    pack_panel(g, pad, c0, r0, r1, nho, ldp, gl, levels, panel, 3);
}
__attribute__((target("avx2,fma"), noinline)) static void pack_levels_avx2(const patch_geometry *g, const float *pad,
                                                                  int64_t c0, int64_t r0, int64_t r1, int64_t nho,
                                                                  int64_t ldp, const float *gl, int levels,
                                                                  float *panel) {
    pack_panel(g, pad, c0, r0, r1, nho, ldp, gl, levels, panel, 2);
}

/* The output noise, the ADC and the digital stage of one column's nl outputs y (z: their
 * normals), into dst (first: the first term of the sum): v = y + z·alpha, v = rint(v·k)
 * clamped to ±q (NaN stays NaN: the compares are false for it), (v·gain)·rs[l]. These are
 * converters.h's adc_level and the ADC kernel's sums, written in AVX-512 operations: the
 * same loop over adc_level left to the compiler made VGG-9's second layer 15–20 % slower
 * (18.8–19.6 against 16.3–16.4 ms, batch 32, one thread). */
__attribute__((target("avx512f"))) static void adc_column(const conv_adc_args *a, float *dst, const float *y,
                                                          const float *z, float gain, const float *rs, int64_t nl,
                                                          int first) {
    const __m512 k = _mm512_set1_ps(a->k), q = _mm512_set1_ps(a->q), nq = _mm512_set1_ps(-a->q);
    const __m512 alpha = _mm512_set1_ps(a->alpha), gv = _mm512_set1_ps(gain);
    for (int64_t l = 0; l < nl; l += 16) {
        const __mmask16 lanes = nl - l >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nl - l)) - 1u);
        __m512 v = _mm512_maskz_loadu_ps(lanes, y + l);
        if (a->out_noise) v = _mm512_add_ps(v, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, z + l), alpha));
        if (a->adc) {
            v = ROUND(_mm512_mul_ps(v, k));
            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, nq, _CMP_LT_OQ), v, nq);
            v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, q, _CMP_GT_OQ), v, q);
        }
        v = _mm512_mul_ps(_mm512_mul_ps(v, gv), _mm512_maskz_loadu_ps(lanes, rs + l));
        if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, dst + l), v);
        _mm512_mask_storeu_ps(dst + l, lanes, v);
    }
}

/* adc_column's operations on the 8 outputs at y, z, rs and dst: all 8 by plain loads and a
 * plain store (whole), else the lanes of `lanes`, masked. */
AVX2_INLINE void adc_lanes_avx2(const conv_adc_args *a, float *dst, const float *y, const float *z, __m256 gv,
                                const float *rs, __m256i lanes, int whole, int first) {
    const __m256 k = _mm256_set1_ps(a->k), q = _mm256_set1_ps(a->q), nq = _mm256_set1_ps(-a->q);
    const __m256 alpha = _mm256_set1_ps(a->alpha);
#define LOAD(p) (whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes))
    __m256 v = LOAD(y);
    if (a->out_noise) v = _mm256_add_ps(v, _mm256_mul_ps(LOAD(z), alpha));
    if (a->adc) {
        v = ROUND_AVX2(_mm256_mul_ps(v, k));
        v = _mm256_blendv_ps(v, nq, _mm256_cmp_ps(v, nq, _CMP_LT_OQ));
        v = _mm256_blendv_ps(v, q, _mm256_cmp_ps(v, q, _CMP_GT_OQ));
    }
    v = _mm256_mul_ps(_mm256_mul_ps(v, gv), LOAD(rs));
    if (!first) v = _mm256_add_ps(LOAD(dst), v);
#undef LOAD
    if (whole)
        _mm256_storeu_ps(dst, v);
    else
        _mm256_maskstore_ps(dst, lanes, v);
}

/* adc_column with 8-lane vectors, the last one masked. */
__attribute__((target("avx2,fma"))) static void adc_column_avx2(const conv_adc_args *a, float *dst, const float *y,
                                                                const float *z, float gain, const float *rs,
                                                                int64_t nl, int first) {
    const __m256 gv = _mm256_set1_ps(gain);
    int64_t l = 0;
    for (; l + 8 <= nl; l += 8) adc_lanes_avx2(a, dst + l, y + l, z + l, gv, rs + l, lanes_avx2(8), 1, first);
    if (l < nl) adc_lanes_avx2(a, dst + l, y + l, z + l, gv, rs + l, lanes_avx2(nl - l), 0, first);
}

/* An item's work buffers, allocated once for its samples (conv_item). */
typedef struct {
    float *panel, *y, *z, *gl, *rs, *pad;
    ubits *m, *maps;
} conv_buffers;


/* Output rows ho0 .. ho1 − 1 of sample n, every input tile after the other, by the loops of
 * `isa` (3 AVX-512, 2 AVX2: a constant where conv_item_avx512 and _avx2 inline it). */
CONV_INLINE void conv_rows(const conv_adc_args *a, int64_t n, int64_t ho0, int64_t ho1, const conv_buffers *w,
                           int isa) {
    const patch_geometry *g = &a->g;
    const int64_t L = g->Ho * g->Wo, l0 = ho0 * g->Wo, nl = (ho1 - ho0) * g->Wo, ldp = (nl + 15) / 16 * 16;
    const int64_t per = g->kh * g->kw, K = g->C * per, R = g->R, cols = a->cols, panels = (cols + NR - 1) / NR;
    const int64_t S = a->S, ct = a->c_tile;
    const float *xn = a->x + n * g->C * g->H * g->W;
    float *panel = w->panel, *y = w->y, *z = w->z, *gl = w->gl, *rs = w->rs;
    void (*const normals)(uint64_t, int64_t, int64_t, float *) = isa == 3 ? philox_normals_f32 : philox_normals_f32_avx2;
    for (int64_t i = 0; i < g->n_in; i++) {
        const int64_t r0 = i * R, r1 = r0 + R < K ? r0 + R : K;
        if (a->dac) {
            tile_abs_max(g, xn, r0, r1, ho0, ho1, w->m, w->maps);
            for (int64_t l = 0; l < nl; l++) {
                rs[l] = scale_of(w->m[l0 + l]);
                gl[l] = gain_of(rs[l], a->n_dac);
            }
        } else /* no DAC: the input as it is (rint(x·1) = x for spikes) */
            for (int64_t l = 0; l < nl; l++) rs[l] = gl[l] = 1;
        const int64_t c0 = r0 / per, c1 = (r1 - 1) / per + 1;
        pad_rows(g, xn, c0, c1, ho0, ho1 - ho0, w->pad);
        (isa == 3 ? pack_levels : pack_levels_avx2)(g, w->pad, c0, r0, r1, ho1 - ho0, ldp, gl, a->dac, panel);
        for (int64_t pn = 0; pn < panels; pn++) {
            const float *bp = a->b + (i * panels + pn) * R * NR;
            int64_t l = 0;
            if (isa == 3) {
                for (; l + 64 <= ldp; l += 64) micro_tile_64(r1 - r0, panel + l, ldp, bp, y + l, ldp);
                for (; l < ldp; l += 16) micro_tile_16(r1 - r0, panel + l, ldp, bp, y + l, ldp);
            } else
                for (; l < ldp; l += 16) micro_tile_16_avx2(r1 - r0, panel + l, ldp, bp, y + l, ldp);
            const int64_t col0 = pn * NR, nc = cols - col0 < NR ? cols - col0 : NR;
            /* the normals of the micro-tile's columns: one run when the item holds whole columns */
            const int64_t e0 = ((i * g->N + n) * cols + col0) * L + l0;
            if (a->out_noise && nl == L) normals(a->seed, e0, nc * L, z);
            for (int64_t j = 0; j < nc; j++) {
                const int64_t col = col0 + j, o = col / (S * ct), s = col / ct % S, oc = o * ct + col % ct;
                if (oc >= a->out_f) continue;
                const float *zj = z + j * nl;
                if (a->out_noise && nl != L) normals(a->seed, e0 + j * L, nl, z + j * nl);
                (isa == 3 ? adc_column : adc_column_avx2)(a, a->out + (n * a->out_f + oc) * L + l0, y + j * ldp, zj,
                                                          a->gain[(i * a->n_out + o) * S + s], rs, nl,
                                                          i == 0 && s == 0);
            }
        }
    }
}

/* Item: `samples` samples' output rows ho0 .. ho1 − 1 (several samples only when each item
 * holds whole maps), with one set of work buffers, by the loops of `isa` (conv_rows). */
CONV_INLINE void conv_item(const void *p, int64_t item, int isa) {
    const conv_adc_args *a = (const conv_adc_args *)p;
    const patch_geometry *g = &a->g;
    const int64_t chunks = (g->Ho + a->ho_rows - 1) / a->ho_rows, ho0 = item % chunks * a->ho_rows;
    const int64_t n0 = item / chunks * a->samples, n1 = n0 + a->samples < g->N ? n0 + a->samples : g->N;
    const int64_t ho1 = ho0 + a->ho_rows < g->Ho ? ho0 + a->ho_rows : g->Ho;
    const int64_t L = g->Ho * g->Wo, nl = (ho1 - ho0) * g->Wo, ldp = (nl + 15) / 16 * 16, per = g->kh * g->kw;
    const int64_t channels = (g->R + per - 1) / per + 1, pad_rows_n = (ho1 - ho0 - 1) * g->sh + (g->kh - 1) * g->dh + 1;
    conv_buffers w = {
        .panel = aligned_alloc(64, (size_t)(g->R * ldp + 16) * sizeof(float)),
        .y = aligned_alloc(64, (size_t)(NR * ldp + 16) * sizeof(float)),
        .z = malloc((size_t)(NR * nl + 1) * sizeof(float)),
        .gl = malloc((size_t)(2 * nl + 1) * sizeof(float)),
        .pad = malloc((size_t)(channels * pad_rows_n * (g->W + 2 * g->pw) + 1) * sizeof(float)),
        .m = malloc((size_t)(L + 1) * sizeof(ubits)),
        .maps = malloc((size_t)((per + 1) * g->H * g->W + 1) * sizeof(ubits)),
    };
    if (w.panel && w.y && w.z && w.gl && w.pad && w.m && w.maps) {
        w.rs = w.gl + nl;
        for (int64_t n = n0; n < n1; n++) conv_rows(a, n, ho0, ho1, &w, isa);
    } else
        __atomic_store_n(&((conv_adc_args *)a)->failed, 1, __ATOMIC_RELAXED); /* the caller raises */
    free(w.panel), free(w.y), free(w.z), free(w.gl), free(w.pad), free(w.m), free(w.maps);
}

__attribute__((target("avx512f"))) static void conv_item_avx512(const void *p, int64_t item) { conv_item(p, item, 3); }
__attribute__((target("avx2,fma"))) static void conv_item_avx2(const void *p, int64_t item) { conv_item(p, item, 2); }

/* The AVX-512 loops for isa 3 on a CPU that has them, else the AVX2 ones (the caller runs the
 * kernel only where conv_adc_available() is 2 or 3, with an isa no higher). */
void conv_adc(const conv_adc_args *a, int threads) {
    const int64_t chunks = (a->g.Ho + a->ho_rows - 1) / a->ho_rows;
    const item_fn item = a->isa == 3 && conv_adc_available() == 3 ? conv_item_avx512 : conv_item_avx2;
    run_items(a, item, (a->g.N + a->samples - 1) / a->samples * chunks, threads);
}
#else
int conv_adc_available(void) { return 0; }
int conv_adc_tile_columns(void) { return NR; }
void conv_adc(const conv_adc_args *a, int threads) {
    (void)threads;
    ((conv_adc_args *)a)->failed = 1;
}
#endif
