/* The crossbar's converters for the CPU, each in one pass: the input DAC (abs-max per input
 * vector, scale, round), the same fused with the unfolding of convolution patches, and the
 * column ADC with the digital stage (scale, round, clamp, times the slice / tile / drift
 * gain and the DAC's per-vector scale, summed over input tiles and bit slices).
 * spikecim/analog/tiles.py holds the torch passes they replace (docs/analog.md, "Passes of
 * the noisy forward"); spikecim/analog/converter_kernels.py builds and calls this file.
 *
 * Built with `cc -O2 -ftree-vectorize -ffp-contract=off -DREAL=float`, and once more with
 * `-DREAL=double -DREAL_IS_DOUBLE=1`. The arithmetic follows the torch passes operation by
 * operation (no fused multiply-add; rint rounds half to even in the default rounding mode,
 * as torch.round), so the results are bit-identical to them.
 *
 * DAC: x is [N, R, L] with element strides (sn, sr) and unit stride along L (L = 1 for a
 * matmul's rows). For every (n, l): s = max_r |x|, s = 1 where !(s > 0) (an all-zero
 * vector, or a NaN in it: torch.where(s > 0, s, 1) after amax); gain = (1/s)·n_dac;
 * out = rint(x·gain). With `given`, s is read from `scale`. out may be x (in place).
 *
 * Unfold + DAC: the patches of F.unfold(x) for x [N, C, H, W], [N, C·kh·kw, Ho·Wo], each
 * input tile's rows (R of them) turned into levels as above, s per tile and patch. With
 * `rows`, the same levels laid out as rows, tile by tile: tile i's patches are an
 * [N·Ho·Wo, R_i] matrix (R_i its rows: R, or fewer for the last tile) at element i·N·L·R.
 *
 * all_binary: whether a convolution's input is binary spikes, which need no DAC (the
 * direct-convolution path).
 *
 * ADC: y is [n_in, N, n_out, S, C, L] contiguous (with `rows`: [n_in, N, L, n_out, S, C], a
 * matrix product's column outputs for the N·L patches as rows; every element keeps the
 * flat index it has in the first layout, so the noise and the sums are the same), out
 * [N, out_f, L] contiguous. For every element, with out_noise: y = y + z·alpha, z the
 * normal of the element's flat index in the stream of `seed` (philox.h: the draws and the
 * sum of noise.add_normal_ on y); then v = clamp(rint(y·k), −q, q) (adc on),
 * v = v·gain[i, o, s], v = v·rs[i, n, l] (row_scale given), and out is the left-to-right
 * sum over (i, s), i outer. y is only read.
 */
#include <tgmath.h> /* rint in the precision of its argument */
#include <stdint.h>
#include <stdlib.h> /* malloc */
#include <string.h>

#include "parallel.h"
#include "real.h"
#include "philox.h"
#include "converters.h"
#include "patches.h"
#include "transpose.h"

#define INLINE static inline __attribute__((always_inline))
#define LCHUNK 256 /* patches per DAC block: R x LCHUNK stays in L2 between its two passes */

/* transpose(dst, ds, src, ss, nr, nl): dst[l·ds + r] = src[r·ss + l] for r < nr, l < nl,
 * the rows layout's only reordering. In blocks of 16 × 16 through AVX-512 shuffles where the
 * CPU has them (transpose.h; GCC does not vectorise a strided read), else one element at a
 * time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(REAL_IS_DOUBLE) && !defined(NO_CLONES)
#define TRANSPOSE_AVX512 1
#endif

static void transpose(real *dst, int64_t ds, const real *src, int64_t ss, int64_t nr, int64_t nl) {
#ifdef TRANSPOSE_AVX512
    if (__builtin_cpu_supports("avx512f")) {
        for (int64_t r = 0; r < nr; r += 16)
            for (int64_t l = 0; l < nl; l += 16)
                transpose16_avx512(dst + l * ds + r, ds, src + r * ss + l, ss, (int)(nr - r < 16 ? nr - r : 16),
                                   (int)(nl - l < 16 ? nl - l : 16));
        return;
    }
#endif
    for (int64_t r0 = 0; r0 < nr; r0 += 16) /* 16 × 16 blocks: the reads stay in a few lines */
        for (int64_t l = 0; l < nl; l++)
            for (int64_t r = r0; r < nr && r < r0 + 16; r++) dst[l * ds + r] = src[r * ss + l];
}

typedef struct {
    real *x, *out, *scale; /* scale: [N, L] contiguous, written (or read with given) */
    int64_t N, R, L;
    int64_t sn, sr;   /* element strides of x along N and R */
    int64_t on, orow; /* element strides of out along N and R */
    int32_t given;
    real n_dac;
} dac_args;

typedef struct {
    const real *x;     /* [N, C, H, W] contiguous */
    real *out, *scale; /* [N, K, L] contiguous (K = C·kh·kw, L = Ho·Wo), [n_in, N, L] */
    patch_geometry g;
    real n_dac;
    int32_t rows;   /* the patches as rows, tile by tile (header) */
    int32_t failed; /* set when a work buffer could not be allocated */
} unfold_args;

typedef struct {
    const real *y, *gain, *row_scale; /* row_scale may be NULL */
    real *out;
    int64_t n_in, N, n_out, S, C, L, out_f;
    int32_t adc, out_noise, rows; /* rows: y in the rows layout (header) */
    real k, q, alpha;
    uint64_t seed; /* out_noise: the key of the output noise's normals */
} adc_args;

CLONES static void dac_one(const dac_args *a, int64_t n) {
    const real *x = a->x + n * a->sn;
    real *out = a->out + n * a->on;
    real *scale = a->scale + n * a->L;
    const int64_t R = a->R, L = a->L, sr = a->sr, orow = a->orow;
    if (L == 1) {
        if (!a->given) {
            ubits m = 0;
            if (sr == 1)
                for (int64_t r = 0; r < R; r++) m = abs_bits(x[r]) > m ? abs_bits(x[r]) : m;
            else
                for (int64_t r = 0; r < R; r++) m = abs_bits(x[r * sr]) > m ? abs_bits(x[r * sr]) : m;
            scale[0] = scale_of(m);
        }
        const real g = gain_of(scale[0], a->n_dac);
        if (sr == 1 && orow == 1)
            for (int64_t r = 0; r < R; r++) out[r] = rint(x[r] * g);
        else
            for (int64_t r = 0; r < R; r++) out[r * orow] = rint(x[r * sr] * g);
        return;
    }
    ubits m[LCHUNK];
    real g[LCHUNK];
    for (int64_t l0 = 0; l0 < L; l0 += LCHUNK) {
        const int64_t nl = L - l0 < LCHUNK ? L - l0 : LCHUNK;
        if (!a->given) {
            for (int64_t l = 0; l < nl; l++) m[l] = 0;
            for (int64_t r = 0; r < R; r++) {
                const real *row = x + r * sr + l0;
                for (int64_t l = 0; l < nl; l++) m[l] = abs_bits(row[l]) > m[l] ? abs_bits(row[l]) : m[l];
            }
            for (int64_t l = 0; l < nl; l++) scale[l0 + l] = scale_of(m[l]);
        }
        for (int64_t l = 0; l < nl; l++) g[l] = gain_of(scale[l0 + l], a->n_dac);
        for (int64_t r = 0; r < R; r++) {
            const real *row = x + r * sr + l0;
            real *dst = out + r * orow + l0;
            for (int64_t l = 0; l < nl; l++) dst[l] = rint(row[l] * g[l]);
        }
    }
}

/* input tile i of sample n: the abs-max of every patch (tile_abs_max), then each row of the
 * tile written as levels into its place in the patches, read from a zero-padded copy of the
 * tile's channels: with a column stride of 1 each output row of patches is a run of that
 * copy (vector loads), otherwise gathered through a table of indices (one loop over the
 * patches per row, whatever the image width). The patches are written once, never read back. */
CLONES static void unfold_one(const unfold_args *a, int64_t item) {
    const int64_t n = item / a->g.n_in, i = item % a->g.n_in, L = a->g.Ho * a->g.Wo, per = a->g.kh * a->g.kw;
    const int64_t K = a->g.C * per, r0 = i * a->g.R, r1 = r0 + a->g.R < K ? r0 + a->g.R : K;
    const int64_t c0 = r0 / per, c1 = (r1 - 1) / per + 1, H = a->g.H, W = a->g.W;
    const int64_t Hp = H + 2 * a->g.ph, Wp = W + 2 * a->g.pw, HWp = Hp * Wp;
    const real *xn = a->x + n * a->g.C * H * W;
    real *scale = a->scale + (i * a->g.N + n) * L;
    ubits *m = malloc((L + 1) * sizeof *m);
    ubits *maps = malloc(((per + 1) * H * W + 1) * sizeof *maps);
    real *g = malloc((L + 1) * sizeof *g), *pad = calloc((c1 - c0) * HWp + 1, sizeof *pad);
    int32_t *idx = malloc((per * L + 1) * sizeof *idx);
    /* the rows layout: the tile's levels in F.unfold's layout here first, then transposed */
    real *tile = a->rows ? malloc(((r1 - r0) * L + 1) * sizeof *tile) : 0;
    if (m == 0 || maps == 0 || g == 0 || pad == 0 || idx == 0 || (a->rows && tile == 0)) {
        __atomic_store_n(&((unfold_args *)a)->failed, 1, __ATOMIC_RELAXED); /* the caller raises */
        free(m);
        free(maps);
        free(g);
        free(pad);
        free(idx);
        free(tile);
        return;
    }
    /* row r of the patches goes to out + (r − first)·L */
    real *out = a->rows ? tile : a->out + n * K * L;
    const int64_t first = a->rows ? r0 : 0;
    tile_abs_max(&a->g, xn, r0, r1, 0, a->g.Ho, m, maps);
    for (int64_t l = 0; l < L; l++) {
        scale[l] = scale_of(m[l]);
        g[l] = gain_of(scale[l], a->n_dac);
    }
    for (int64_t c = c0; c < c1; c++)
        for (int64_t h = 0; h < H; h++)
            memcpy(pad + (c - c0) * HWp + (h + a->g.ph) * Wp + a->g.pw, xn + (c * H + h) * W, W * sizeof *pad);
    if (a->g.sw == 1) /* a row of patches along wo is a run of the padded image: vector loads */
        for (int64_t r = r0; r < r1; r++) {
            const int64_t k = r % per, ki = k / a->g.kw, kj = k % a->g.kw, Wo = a->g.Wo;
            const real *src = pad + (r / per - c0) * HWp + ki * a->g.dh * Wp + kj * a->g.dw;
            for (int64_t ho = 0; ho < a->g.Ho; ho++) {
                const real *s = src + ho * a->g.sh * Wp, *gl = g + ho * Wo;
                real *dst = out + (r - first) * L + ho * Wo;
                for (int64_t wo = 0; wo < Wo; wo++) dst[wo] = rint(s[wo] * gl[wo]);
            }
        }
    else {
        for (int64_t k = 0; k < per; k++) {
            const int64_t ki = k / a->g.kw, kj = k % a->g.kw;
            for (int64_t ho = 0; ho < a->g.Ho; ho++)
                for (int64_t wo = 0; wo < a->g.Wo; wo++)
                    idx[k * L + ho * a->g.Wo + wo] = (int32_t)((ho * a->g.sh + ki * a->g.dh) * Wp + wo * a->g.sw + kj * a->g.dw);
        }
        for (int64_t r = r0; r < r1; r++) {
            const real *src = pad + (r / per - c0) * HWp;
            const int32_t *ix = idx + (r % per) * L;
            real *dst = out + (r - first) * L;
            for (int64_t l = 0; l < L; l++) dst[l] = rint(src[ix[l]] * g[l]);
        }
    }
    if (a->rows) /* tile i's [N·L, r1 − r0] matrix starts at i·N·L·R (the tiles before are R wide) */
        transpose(a->out + i * a->g.N * L * a->g.R + n * L * (r1 - r0), r1 - r0, tile, L, r1 - r0, L);
    free(m);
    free(maps);
    free(g);
    free(pad);
    free(idx);
    free(tile);
}

/* dst (+)= f(src)·g (·rs[l]) over m elements of a block of columns × L patches, the first
 * at patch l0 of its column */
CLONES static void adc_block(const adc_args *a, real *dst, const real *src, real g, const real *rs, int64_t l0,
                             int64_t m, int first) {
    const int64_t L = a->L;
    const real k = a->k, q = a->q;
    if (rs == 0 || L == 1) {
        const int scaled = rs != 0;
        const real r = scaled ? rs[0] : (real)1;
        if (a->adc && scaled) {
            if (first) for (int64_t j = 0; j < m; j++) dst[j] = (adc_level(src[j], k, q) * g) * r;
            else for (int64_t j = 0; j < m; j++) dst[j] = dst[j] + (adc_level(src[j], k, q) * g) * r;
        } else if (a->adc) {
            if (first) for (int64_t j = 0; j < m; j++) dst[j] = adc_level(src[j], k, q) * g;
            else for (int64_t j = 0; j < m; j++) dst[j] = dst[j] + adc_level(src[j], k, q) * g;
        } else if (scaled) {
            if (first) for (int64_t j = 0; j < m; j++) dst[j] = (src[j] * g) * r;
            else for (int64_t j = 0; j < m; j++) dst[j] = dst[j] + (src[j] * g) * r;
        } else {
            if (first) for (int64_t j = 0; j < m; j++) dst[j] = src[j] * g;
            else for (int64_t j = 0; j < m; j++) dst[j] = dst[j] + src[j] * g;
        }
        return;
    }
    for (int64_t j = 0; j < m;) { /* one run per column: patches l .. l+n-1 */
        const int64_t l = (l0 + j) % L, n = L - l < m - j ? L - l : m - j;
        const real *s = src + j, *r = rs + l;
        real *d = dst + j;
        if (a->adc) {
            if (first) for (int64_t t = 0; t < n; t++) d[t] = (adc_level(s[t], k, q) * g) * r[t];
            else for (int64_t t = 0; t < n; t++) d[t] = d[t] + (adc_level(s[t], k, q) * g) * r[t];
        } else {
            if (first) for (int64_t t = 0; t < n; t++) d[t] = (s[t] * g) * r[t];
            else for (int64_t t = 0; t < n; t++) d[t] = d[t] + (s[t] * g) * r[t];
        }
        j += n;
    }
}

#if REAL_IS_DOUBLE
#define normals philox_normals_f64
#else
#define normals philox_normals_f32
#endif
#define ZCHUNK 2048 /* output-noise normals per piece of a block */

/* The output noise and adc_block on the m elements of a block whose first element has flat
 * index e0 in y, in pieces of ZCHUNK: y + z·alpha (noise.add_normal_'s sum) in a buffer.
 * z: the block's normals when the caller drew them (m <= ZCHUNK), else NULL. */
CLONES static void adc_noisy_block(const adc_args *a, real *dst, const real *src, real g, const real *rs,
                                   int64_t m, int first, int64_t e0, const real *z, int64_t l0) {
    real zb[ZCHUNK], v[ZCHUNK];
    const real alpha = a->alpha;
    for (int64_t j0 = 0; j0 < m; j0 += ZCHUNK) {
        const int64_t n = m - j0 < ZCHUNK ? m - j0 : ZCHUNK;
        const real *zj = z ? z + j0 : zb;
        if (!z) normals(a->seed, e0 + j0, n, zb);
        for (int64_t t = 0; t < n; t++) v[t] = src[j0 + t] + zj[t] * alpha;
        adc_block(a, dst + j0, v, g, rs, l0 + j0, n, first);
    }
}

/* The rows layout: the piece of block (i, n, o, s) with columns c0 .. c0 + nc − 1 and
 * patches l0 .. l0 + nl − 1 (whole columns, nl = L, or a part of one column), in the first
 * layout's order, transposed from the rows of y into t. */
static const real *rows_piece(const adc_args *a, int64_t i, int64_t n, int64_t o, int64_t s, int64_t c0,
                              int64_t nc, int64_t l0, int64_t nl, real *t) {
    const int64_t cols = a->n_out * a->S * a->C;
    const real *rows = a->y + ((i * a->N + n) * a->L + l0) * cols + (o * a->S + s) * a->C + c0;
    transpose(t, nl, rows, cols, nl, nc);
    return t;
}

/* Samples per work item: 1, or, for noisy blocks that lie back to back in y (one column tile
 * holding every output, one slice) and are shorter than ZCHUNK, as many as fill ZCHUNK, so
 * that their normals come from one draw of the generator instead of one short draw each. */
static int64_t adc_group(const adc_args *a) {
    const int64_t block = a->C * a->L;
    if (!a->out_noise || a->n_out != 1 || a->S != 1 || a->out_f != a->C || block >= ZCHUNK) return 1;
    return ZCHUNK / block;
}

/* item = (group of samples, column tile o): for every input tile i and slice s, the blocks
 * of the group's samples (their normals drawn at once when the group has several), each
 * summed into its sample's outputs, i outer, s inner. */
static void adc_one(const adc_args *a, int64_t item, int64_t group) {
    const int64_t n0 = item / a->n_out * group, o = item % a->n_out;
    const int64_t N = a->N, n_out = a->n_out, S = a->S, C = a->C, L = a->L;
    const int64_t n1 = n0 + group < N ? n0 + group : N;
    const int64_t nc = a->out_f - o * C < C ? a->out_f - o * C : C, m = nc * L;
    real z[ZCHUNK], t[ZCHUNK];
    for (int64_t i = 0; i < a->n_in; i++)
        for (int64_t s = 0; s < S; s++) {
            const real g = a->gain[(i * n_out + o) * S + s];
            const int64_t first_e = (((i * N + n0) * n_out + o) * S + s) * C * L;
            if (group > 1) normals(a->seed, first_e, (n1 - n0) * m, z);
            for (int64_t n = n0; n < n1; n++) {
                const real *rs = a->row_scale ? a->row_scale + (i * N + n) * L : 0;
                const int64_t e0 = (((i * N + n) * n_out + o) * S + s) * C * L;
                real *dst = a->out + (n * a->out_f + o * C) * L;
                const int first = i == 0 && s == 0;
                const real *zn = group > 1 ? z + (n - n0) * m : 0;
                if (!a->rows) {
                    if (a->out_noise) adc_noisy_block(a, dst, a->y + e0, g, rs, m, first, e0, zn, 0);
                    else adc_block(a, dst, a->y + e0, g, rs, 0, m, first);
                    continue;
                }
                /* the block in pieces of whole columns (of one column's patches where L > ZCHUNK),
                 * each a run of flat indices j0 .. j0 + len − 1, read from the rows */
                const int64_t piece_c = L <= ZCHUNK ? ZCHUNK / L : 1, piece_l = L <= ZCHUNK ? L : ZCHUNK;
                for (int64_t c0 = 0; c0 < nc; c0 += piece_c)
                    for (int64_t l0 = 0; l0 < L; l0 += piece_l) {
                        const int64_t pc = nc - c0 < piece_c ? nc - c0 : piece_c;
                        const int64_t pl = L - l0 < piece_l ? L - l0 : piece_l, j0 = c0 * L + l0, len = pc * pl;
                        const real *src = rows_piece(a, i, n, o, s, c0, pc, l0, pl, t);
                        if (a->out_noise)
                            adc_noisy_block(a, dst + j0, src, g, rs, len, first, e0 + j0, zn ? zn + j0 : 0, j0);
                        else adc_block(a, dst + j0, src, g, rs, j0, len, first);
                    }
            }
        }
}

typedef struct {
    const adc_args *a;
    int64_t group;
} adc_job;

static void dac_item(const void *a, int64_t n) { dac_one((const dac_args *)a, n); }
static void unfold_item(const void *a, int64_t i) { unfold_one((const unfold_args *)a, i); }
static void adc_item(const void *p, int64_t i) {
    const adc_job *job = (const adc_job *)p;
    adc_one(job->a, i, job->group);
}

/* 1 when every one of the n values is exactly 0 or 1 (−0 counts as 0, NaN as neither), as
 * torch's ((x == 0) | (x == 1)).all(); blocks of 4096 values, stopping at the first block
 * with another value */
CLONES static int32_t binary_scan(const real *x, int64_t n) {
    for (int64_t b = 0; b < n; b += 4096) {
        const int64_t e = n - b < 4096 ? n : b + 4096;
        int ok = 1;
        for (int64_t j = b; j < e; j++) ok &= (x[j] == 0) | (x[j] == 1);
        if (!ok) return 0;
    }
    return 1;
}

int32_t all_binary(const real *x, int64_t n) { return binary_scan(x, n); }
void dac_levels(const dac_args *a, int threads) { run_items(a, dac_item, a->N, threads); }
void unfold_dac(const unfold_args *a, int threads) {
    run_items(a, unfold_item, a->g.N * a->g.n_in, threads);
}
void adc_accumulate(const adc_args *a, int threads) {
    const adc_job job = {a, adc_group(a)};
    run_items(&job, adc_item, (a->N + job.group - 1) / job.group * a->n_out, threads);
}
