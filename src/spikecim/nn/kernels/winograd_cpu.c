/* The two transforms of a Winograd F(4×4, 3×3) convolution on the CPU (Lavin and Gray, "Fast
 * Algorithms for Convolutional Neural Networks", CVPR 2016, section 4.1): a 3×3 convolution of
 * stride 1 as 36 matrix products, 4 × 4 outputs per tile for 36 multiplications per input
 * channel where the direct convolution takes 144.
 *
 * For each 6 × 6 input tile d (rows 4i − ph .. 4i − ph + 5, columns 4j − pw .., zero
 * outside the image) and each 3 × 3 kernel g:
 *
 *     V = Bᵀ d B,   U = G g Gᵀ,   M = Σ_c U ⊙ V  (36 products over the input channels),
 *     y = Aᵀ M A    (the 4 × 4 outputs of the tile),
 *
 *     Bᵀ = [4  0 −5  0  1  0]    G = [ 1/4     0     0]    Aᵀ = [1  1  1  1  1  0]
 *          [0 −4 −4  1  1  0]        [−1/6  −1/6  −1/6]         [0  1 −1  2 −2  0]
 *          [0  4 −4 −1  1  0]        [−1/6   1/6  −1/6]         [0  1  1  4  4  0]
 *          [0 −2 −1  2  1  0]        [1/24  1/12   1/6]         [0  1 −1  8 −8  1]
 *          [0  2 −1 −2  1  0]        [1/24 −1/12   1/6]
 *          [0  4  0 −5  0  1]        [   0     0     1]
 *
 * wino_weights writes U, wino_input V for every tile, wino_output reads M and writes y (and, with
 * clear, zeros over M, to which the next group's products are added: the caller's batched
 * product then has no pass of its own that clears M, as BLAS's does for C = A·B); the 36
 * products are the caller's (spikecim/nn/kernels/winograd.py, one batched matrix product).
 *
 * The weight gradient runs the same algorithm backwards: with Ĝ = A gy Aᵀ for each 4 × 4 tile of
 * the output gradient (wino_grad_tiles), the gradient of U is Σ_tiles Ĝ ⊙ V (36 products over
 * the tiles, the caller's), and that of g is Gᵀ (Σ_tiles Ĝ ⊙ V) G (wino_weight_grad).
 * The transformed values are laid out [36][T][C] (T tiles, tile (n, i, j) at (n·th + i)·tw + j)
 * and U [36][C][Co], so each product is one [T, C] × [C, Co] matrix product, and both tile
 * transforms run along the channels, vectorised. A work item is one row of tiles of one
 * sample: its six image rows ([C][6·W], contiguous per channel in the [N][C][H][W] input)
 * are transposed into a channels-last scratch strip first, and its four output rows are
 * transposed back from one. Built without fused multiply-adds, as every spikecim kernel: the
 * AVX-512, AVX2 and plain loops give the same bits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parallel.h"
#include "transpose.h"

typedef struct {
    const float *x;  /* wino_input: [N][C][H][W]; wino_grad_tiles: [N][C][Ho][Wo]; the samples xs apart */
    float *v;        /* wino_input, wino_grad_tiles: [36][T][C] */
    float *m;        /* wino_output: [36][T][C], set to zeros as it is read where clear */
    float *y;        /* wino_output: [N][C][Ho][Wo] */
    float *g;        /* wino_weights reads it, wino_weight_grad writes it: [A][B][3][3] */
    float *u;        /* wino_weights: [36][B][A], or [36][A][B] with flip; wino_weight_grad: [36][B][A] */
    int64_t N, C, H, W, Ho, Wo, ph, pw, th, tw, xs;
    int64_t A, B;
    int32_t flip; /* wino_weights: the transposed convolution's kernels, turned by 180° and with U's
                   * channel axes as g's (a convolution's U exchanges them: [C in][C out]) */
    int32_t isa;        /* the loops to run: 3 AVX-512, 2 AVX2, 0 plain C */
    int32_t failed;     /* set when a work buffer could not be allocated */
    int32_t clear;      /* wino_output: write zeros over m once read, for the next group's products to add to */
} wino_args;

/* Bᵀ applied to six terms. */
#define BT6(d0, d1, d2, d3, d4, d5, o)                          \
    do {                                                         \
        (o)[0] = 4 * (d0) - 5 * (d2) + (d4);                     \
        (o)[1] = ((d3) + (d4)) - 4 * ((d1) + (d2));              \
        (o)[2] = ((d4) - (d3)) + 4 * ((d1) - (d2));              \
        (o)[3] = 2 * ((d3) - (d1)) + ((d4) - (d2));              \
        (o)[4] = 2 * ((d1) - (d3)) + ((d4) - (d2));              \
        (o)[5] = 4 * (d1) - 5 * (d3) + (d5);                     \
    } while (0)

/* Aᵀ applied to six terms. */
#define AT6(m0, m1, m2, m3, m4, m5, o)                          \
    do {                                                         \
        const __typeof__((m1) + (m2)) s12 = (m1) + (m2), d12 = (m1) - (m2);         \
        const __typeof__((m3) + (m4)) s34 = (m3) + (m4), d34 = (m3) - (m4);         \
        (o)[0] = (m0) + s12 + s34;                               \
        (o)[1] = d12 + 2 * d34;                                  \
        (o)[2] = s12 + 4 * s34;                                  \
        (o)[3] = d12 + 8 * d34 + (m5);                           \
    } while (0)

/* A applied to four terms (the transpose of Aᵀ): six results. */
#define A4(g0, g1, g2, g3, o)                                                   \
    do {                                                                         \
        const __typeof__((g0) + (g2)) s02 = (g0) + (g2), s13 = (g1) + (g3);      \
        const __typeof__((g0) + (g2)) t02 = (g0) + 4 * (g2), t13 = 2 * (g1) + 8 * (g3); \
        (o)[0] = (g0);                                                           \
        (o)[1] = s02 + s13;                                                      \
        (o)[2] = s02 - s13;                                                      \
        (o)[3] = t02 + t13;                                                      \
        (o)[4] = t02 - t13;                                                      \
        (o)[5] = (g3);                                                           \
    } while (0)

/* Gᵀ applied to six terms: three results. */
#define GT6(u0, u1, u2, u3, u4, u5, o)                                          \
    do {                                                                         \
        const __typeof__((u1) + (u2)) s12 = (u1) + (u2), s34 = (u3) + (u4);      \
        (o)[0] = (u0) / 4 - s12 / 6 + s34 / 24;                                  \
        (o)[1] = ((u2) - (u1)) / 6 + ((u3) - (u4)) / 12;                         \
        (o)[2] = (s34 - s12) / 6 + (u5);                                         \
    } while (0)

/* A vector of 16 channels, loaded and stored unaligned; the compiler lowers it to the loops'
 * registers: one zmm (AVX-512), two ymm (AVX2) or four xmm (plain). */
#define VL ((int64_t)16)
typedef float vec __attribute__((vector_size(64), aligned(4)));

/* V of one tile: d[r·6 + s] points at the C channels of its input term (r, s), v at its
 * 36 rows of C, k_step floats apart. T: vec or float, the channels from c. */
#define INPUT_TILE(T, c)                                                                             \
    do {                                                                                             \
        T t[6][6], o[6];                                                                             \
        for (int s = 0; s < 6; s++)                                                                  \
            BT6(*(const T *)(d[s] + c), *(const T *)(d[6 + s] + c), *(const T *)(d[12 + s] + c),     \
                *(const T *)(d[18 + s] + c), *(const T *)(d[24 + s] + c), *(const T *)(d[30 + s] + c), \
                t[s]);                                                                               \
        for (int a = 0; a < 6; a++) {                                                                \
            BT6(t[0][a], t[1][a], t[2][a], t[3][a], t[4][a], t[5][a], o);                            \
            for (int b = 0; b < 6; b++) *(T *)(v + (6 * a + b) * k_step + c) = o[b];                 \
        }                                                                                            \
    } while (0)

static inline __attribute__((always_inline)) void input_tile(const float *const *d, float *v, int64_t C,
                                                             int64_t k_step) {
    int64_t c = 0;
    for (; c + VL <= C; c += VL) INPUT_TILE(vec, c);
    for (; c < C; c++) INPUT_TILE(float, c);
}

/* y of one tile: m at its 36 rows of C (k_step floats apart), y[r·4 + s] at the C channels of
 * output (r, s); with clear, zeros written over the rows once read. */
#define OUTPUT_TILE(T, c)                                                                              \
    do {                                                                                               \
        T t[6][4], o[4];                                                                               \
        for (int a = 0; a < 6; a++) {                                                                  \
            float *row = m + 6 * a * k_step + c;                                                        \
            AT6(*(const T *)row, *(const T *)(row + k_step), *(const T *)(row + 2 * k_step),           \
                *(const T *)(row + 3 * k_step), *(const T *)(row + 4 * k_step), *(const T *)(row + 5 * k_step), \
                t[a]);                                                                                 \
            if (clear)                                                                                 \
                for (int b = 0; b < 6; b++) *(T *)(row + b * k_step) = (T){0};                         \
        }                                                                                              \
        for (int s = 0; s < 4; s++) {                                                                  \
            AT6(t[0][s], t[1][s], t[2][s], t[3][s], t[4][s], t[5][s], o);                              \
            for (int r = 0; r < 4; r++) *(T *)(y[4 * r + s] + c) = o[r];                               \
        }                                                                                              \
    } while (0)

static inline __attribute__((always_inline)) void output_tile(float *m, float *const *y, int64_t C,
                                                              int64_t k_step, int clear) {
    int64_t c = 0;
    for (; c + VL <= C; c += VL) OUTPUT_TILE(vec, c);
    for (; c < C; c++) OUTPUT_TILE(float, c);
}

/* Ĝ of one 4 × 4 tile of the output gradient: d[r·4 + s] at the C channels of its term (r, s),
 * v at its 36 rows of C, k_step floats apart. */
#define GRAD_TILE(T, c)                                                                              \
    do {                                                                                             \
        T t[4][6], o[6];                                                                             \
        for (int r = 0; r < 4; r++)                                                                  \
            A4(*(const T *)(d[4 * r] + c), *(const T *)(d[4 * r + 1] + c), *(const T *)(d[4 * r + 2] + c), \
               *(const T *)(d[4 * r + 3] + c), t[r]);                                                \
        for (int f = 0; f < 6; f++) {                                                                \
            A4(t[0][f], t[1][f], t[2][f], t[3][f], o);                                               \
            for (int e = 0; e < 6; e++) *(T *)(v + (6 * e + f) * k_step + c) = o[e];                 \
        }                                                                                            \
    } while (0)

static inline __attribute__((always_inline)) void grad_tile(const float *const *d, float *v, int64_t C,
                                                            int64_t k_step) {
    int64_t c = 0;
    for (; c + VL <= C; c += VL) GRAD_TILE(vec, c);
    for (; c < C; c++) GRAD_TILE(float, c);
}

/* dst[l·ds + r] = src[r·ss + l] for r < R, l < L, in blocks of 16 × 16 or 8 × 8. */
static inline __attribute__((always_inline)) void transpose(float *dst, int64_t ds, const float *src, int64_t ss,
                                                            int64_t R, int64_t L, const int isa) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= 2) {
        const int64_t b = isa == 3 ? 16 : 8;
        for (int64_t r = 0; r < R; r += b)
            for (int64_t l = 0; l < L; l += b) {
                const int nr = (int)(R - r < b ? R - r : b), nl = (int)(L - l < b ? L - l : b);
                if (isa == 3)
                    transpose16_avx512(dst + l * ds + r, ds, src + r * ss + l, ss, nr, nl);
                else
                    transpose8_avx2(dst + l * ds + r, ds, src + r * ss + l, ss, nr, nl);
            }
        return;
    }
#endif
    for (int64_t r = 0; r < R; r++)
        for (int64_t l = 0; l < L; l++) dst[l * ds + r] = src[r * ss + l];
}

/* V of the tiles of row i of sample n (item = n·th + i): the six image rows, padded, as a
 * strip [6][4·tw + 2][C] (buf), then each tile's 36 terms from it. */
static inline __attribute__((always_inline)) void input_row(const wino_args *a, int64_t item, float *buf,
                                                            const int isa) {
    const int64_t n = item / a->th, i = item % a->th, T = a->N * a->th * a->tw, C = a->C;
    const int64_t SW = 4 * a->tw + 2; /* the strip's columns: 4j − pw .. 4j − pw + 5 for every j */
    memset(buf, 0, sizeof(float) * 6 * SW * C);
    const int64_t r0 = 4 * i - a->ph, lo = r0 < 0 ? 0 : r0, hi = r0 + 6 < a->H ? r0 + 6 : a->H;
    const int64_t cols = a->W < SW - a->pw ? a->W : SW - a->pw;
    for (int64_t r = lo; r < hi; r++) /* the rows inside the image, each [C][W] into [W][C] */
            transpose(buf + ((r - r0) * SW + a->pw) * C, C, a->x + n * a->xs + r * a->W, a->H * a->W, C, cols, isa);
    const float *d[36];
    for (int64_t j = 0; j < a->tw; j++) {
        for (int r = 0; r < 6; r++)
            for (int s = 0; s < 6; s++) d[6 * r + s] = buf + (r * SW + 4 * j + s) * C;
        input_tile(d, a->v + (item * a->tw + j) * C, C, T * C);
    }
}

/* y of row i of sample n from M: the tiles' outputs into a strip [4][4·tw][C] (buf), then
 * transposed into the rows of each channel. */
static inline __attribute__((always_inline)) void output_row(const wino_args *a, int64_t item, float *buf,
                                                             const int isa) {
    const int64_t n = item / a->th, i = item % a->th, T = a->N * a->th * a->tw, C = a->C, SW = 4 * a->tw;
    float *y[16];
    for (int64_t j = 0; j < a->tw; j++) {
        for (int r = 0; r < 4; r++)
            for (int s = 0; s < 4; s++) y[4 * r + s] = buf + (r * SW + 4 * j + s) * C;
        output_tile(a->m + (item * a->tw + j) * C, y, C, T * C, a->clear);
    }
    float *plane = a->y + n * C * a->Ho * a->Wo;
    for (int64_t r = 0; r < 4 && 4 * i + r < a->Ho; r++)
        transpose(plane + (4 * i + r) * a->Wo, a->Ho * a->Wo, buf + r * SW * C, C, a->Wo, C, isa);
}

/* Ĝ of the tiles of row i of sample n (item = n·th + i) from the output gradient (x:
 * [N][C][Ho][Wo]): its four rows, zero past the edge, as a strip [4][4·tw][C] (buf), then
 * each tile's 36 terms from it. */
static inline __attribute__((always_inline)) void grad_row(const wino_args *a, int64_t item, float *buf,
                                                           const int isa) {
    const int64_t n = item / a->th, i = item % a->th, T = a->N * a->th * a->tw, C = a->C, SW = 4 * a->tw;
    memset(buf, 0, sizeof(float) * 4 * SW * C);
    for (int64_t r = 0; r < 4 && 4 * i + r < a->Ho; r++)
        transpose(buf + r * SW * C, C, a->x + n * a->xs + (4 * i + r) * a->Wo, a->Ho * a->Wo, C, a->Wo, isa);
    const float *d[16];
    for (int64_t j = 0; j < a->tw; j++) {
        for (int r = 0; r < 4; r++)
            for (int s = 0; s < 4; s++) d[4 * r + s] = buf + (r * SW + 4 * j + s) * C;
        grad_tile(d, a->v + (item * a->tw + j) * C, C, T * C);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define FOR_ISAS(body)                                                                                   \
    __attribute__((target("avx512f"))) static void body##_avx512(const wino_args *a, int64_t i, float *b) { \
        body(a, i, b, 3);                                                                                \
    }                                                                                                    \
    __attribute__((target("avx2,fma"))) static void body##_avx2(const wino_args *a, int64_t i, float *b) {  \
        body(a, i, b, 2);                                                                                \
    }                                                                                                    \
    static void body##_plain(const wino_args *a, int64_t i, float *b) { body(a, i, b, 0); }              \
    static void body##_isa(const wino_args *a, int64_t i, float *b) {                                    \
        if (a->isa == 3) return body##_avx512(a, i, b);                                                  \
        if (a->isa == 2) return body##_avx2(a, i, b);                                                    \
        body##_plain(a, i, b);                                                                           \
    }
#else
#define FOR_ISAS(body) \
    static void body##_isa(const wino_args *a, int64_t i, float *b) { body(a, i, b, 0); }
#endif
FOR_ISAS(input_row)
FOR_ISAS(output_row)
FOR_ISAS(grad_row)

static void with_buffer(const void *p, int64_t item, int64_t floats,
                        void (*row)(const wino_args *, int64_t, float *)) {
    float *buf = malloc(sizeof(float) * floats);
    if (!buf) {
        __atomic_store_n(&((wino_args *)p)->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    row((const wino_args *)p, item, buf);
    free(buf);
}

static void input_item(const void *p, int64_t item) {
    const wino_args *a = (const wino_args *)p;
    with_buffer(p, item, 6 * (4 * a->tw + 2) * a->C, input_row_isa);
}

static void output_item(const void *p, int64_t item) {
    const wino_args *a = (const wino_args *)p;
    with_buffer(p, item, 16 * a->tw * a->C, output_row_isa);
}

static void grad_item(const void *p, int64_t item) {
    const wino_args *a = (const wino_args *)p;
    with_buffer(p, item, 16 * a->tw * a->C, grad_row_isa);
}

/* The weight gradient of input channel c (item; B channels in, A out): Gᵀ gU G for the 36
 * rows gU[k][c][0 .. A) (u), into gw [A][B][3][3] (g), the output channels in vectors. */
#define WEIGHT_GRAD_COLUMNS(T, q)                                                                   \
    do {                                                                                            \
        T t[6][3], o[3];                                                                            \
        for (int e = 0; e < 6; e++) {                                                               \
            const float *row = u + 6 * e * k_step + q;                                              \
            GT6(*(const T *)row, *(const T *)(row + k_step), *(const T *)(row + 2 * k_step),        \
                *(const T *)(row + 3 * k_step), *(const T *)(row + 4 * k_step),                     \
                *(const T *)(row + 5 * k_step), t[e]);                                              \
        }                                                                                           \
        for (int s = 0; s < 3; s++) {                                                               \
            GT6(t[0][s], t[1][s], t[2][s], t[3][s], t[4][s], t[5][s], o);                           \
            for (int r = 0; r < 3; r++) *(T *)(k + (3 * r + s) * Q + q) = o[r];                     \
        }                                                                                           \
    } while (0)

static inline __attribute__((always_inline)) void weight_grad_row(const wino_args *a, int64_t c, float *buf,
                                                                  const int isa) {
    (void)isa;
    const int64_t Q = a->A, k_step = a->A * a->B;
    const float *u = a->u + c * Q;
    float *restrict k = buf; /* k[tap][output channel] */
    int64_t q = 0;
    for (; q + VL <= Q; q += VL) WEIGHT_GRAD_COLUMNS(vec, q);
    for (; q < Q; q++) WEIGHT_GRAD_COLUMNS(float, q);
    float *g = a->g + c * 9;
    for (int64_t o = 0; o < Q; o++)
        for (int tap = 0; tap < 9; tap++) g[o * a->B * 9 + tap] = k[tap * Q + o];
}
FOR_ISAS(weight_grad_row)

static void weight_grad_item(const void *p, int64_t item) {
    const wino_args *a = (const wino_args *)p;
    with_buffer(p, item, 9 * a->A, weight_grad_row_isa);
}

/* G applied to the three terms of a kernel's column (or row). */
#define G3(g0, g1, g2, o, step)                                   \
    do {                                                          \
        (o)[0] = (g0) / 4;                                        \
        (o)[1 * (step)] = -((g0) + (g1) + (g2)) / 6;              \
        (o)[2 * (step)] = -((g0) - (g1) + (g2)) / 6;              \
        (o)[3 * (step)] = (g0) / 24 + (g1) / 12 + (g2) / 6;       \
        (o)[4 * (step)] = (g0) / 24 - (g1) / 12 + (g2) / 6;       \
        (o)[5 * (step)] = (g2);                                   \
    } while (0)

/* U of the kernels q .. q + width: k[tap][q] their taps (T: a vector or a float). */
#define WEIGHT_COLUMNS(T, q)                                                                   \
    do {                                                                                       \
        T t[3][6]; /* G g: t[column s][row e] */                                               \
        for (int s = 0; s < 3; s++)                                                            \
            G3(*(const T *)(k + s * Q + q), *(const T *)(k + (3 + s) * Q + q),                 \
               *(const T *)(k + (6 + s) * Q + q), t[s], 1);                                    \
        for (int e = 0; e < 6; e++) { /* (G g) Gᵀ */                                           \
            T o[6];                                                                            \
            G3(t[0][e], t[1][e], t[2][e], o, 1);                                               \
            for (int f = 0; f < 6; f++) *(T *)(u + (6 * e + f) * k_step + q) = o[f];           \
        }                                                                                      \
    } while (0)

/* U[k][p][q] = (G g Gᵀ)[k] for the kernel g of row p (item), column q < Q: g at
 * g + p·gp + q·gq, turned by 180° where flip. The taps are gathered into rows over q first, so
 * the transform runs along q, vectorised. */
static inline __attribute__((always_inline)) void weight_row(const wino_args *a, int64_t p, float *buf,
                                                             const int isa) {
    (void)isa;
    const int64_t P = a->flip ? a->A : a->B, Q = a->flip ? a->B : a->A;
    const int64_t gp = a->flip ? 9 * a->B : 9, gq = a->flip ? 9 : 9 * a->B;
    float *restrict k = buf; /* k[tap][q] */
    for (int tap = 0; tap < 9; tap++) {
        const float *src = a->g + p * gp + (a->flip ? 8 - tap : tap);
        for (int64_t q = 0; q < Q; q++) k[tap * Q + q] = src[q * gq];
    }
    float *restrict u = a->u + p * Q;
    const int64_t k_step = P * Q;
    int64_t q = 0;
    for (; q + VL <= Q; q += VL) WEIGHT_COLUMNS(vec, q);
    for (; q < Q; q++) WEIGHT_COLUMNS(float, q);
}
FOR_ISAS(weight_row)

static void weight_item(const void *p, int64_t item) {
    const wino_args *a = (const wino_args *)p;
    with_buffer(p, item, 9 * (a->flip ? a->B : a->A), weight_row_isa);
}

void wino_weights(wino_args *a, int threads) { run_items(a, weight_item, a->flip ? a->A : a->B, threads); }

void wino_input(wino_args *a, int threads) { run_items(a, input_item, a->N * a->th, threads); }

void wino_grad_tiles(wino_args *a, int threads) { run_items(a, grad_item, a->N * a->th, threads); }

void wino_weight_grad(wino_args *a, int threads) { run_items(a, weight_grad_item, a->B, threads); }

void wino_output(wino_args *a, int threads) { run_items(a, output_item, a->N * a->th, threads); }

/* The widest loops this CPU runs: 3 AVX-512 F, 2 AVX2 with FMA, 0 plain C. */
int wino_available(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx512f")) return 3;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
#endif
    return 0;
}
