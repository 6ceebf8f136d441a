/* BatchNorm's training forward on the CPU for contiguous [N, C, HW] tensors: the batch
 * statistics, the running statistics and the normalised output, with torch's arithmetic
 * (aten/src/ATen/native/cpu/batch_norm_kernel.cpp, batch_norm_cpu_collect_stats_contiguous_impl
 * and batch_norm_cpu_contiguous_impl; aten/src/ATen/native/Normalization.cpp,
 * batch_norm_cpu_update_stats_template), so the values are torch's.
 *
 * Built by spikecim/nn/kernels/bn_cpu.py with `cc -O2 -ffp-contract=off -DREAL=float` (and
 * once more with double). Per channel c, over its n = N*HW entries x:
 *
 *   mean    = (real)(Σ x / n)                       Σ in double
 *   var_sum = (real)(Σ (x − mean)·(x − mean))       difference and square in real, Σ in double
 *   invstd  = (real)(1 / sqrt((double)(var_sum / n) + eps))
 *   running_mean = m·mean + (1 − m)·running_mean    in real (m: the momentum as a real)
 *   running_var  = m·(double)(var_sum / (n − 1)) + (1 − m)·running_var
 *   y = x·alpha + beta,  alpha = invstd·weight,  beta = bias − mean·alpha   in real
 *
 * torch's AVX2 and AVX-512 kernels are compiled with fused multiply-adds, so there
 * beta = fma(−mean, alpha, bias) and y = fma(x, alpha, beta); so here too (`fused`: the
 * caller's reading of the kernels torch runs), and two roundings each otherwise.
 *
 * torch sums each channel in one scalar chain of double additions; here eight chains run
 * side by side (one vector of doubles), so the sums can differ from torch's in the last bits
 * of a double, far below a float's rounding: mean and var_sum come out the same unless a sum
 * lies within about 1e-13 of a rounding boundary of the result's type. The output pass
 * runs along each (sample, channel) plane, vectorised.
 */
#include <math.h>
#include <stdint.h>

#include "parallel.h"
#include "real.h"

#define LANES 8

#if defined(REAL_IS_DOUBLE)
#define FMA(a, b, c) __builtin_fma(a, b, c)
#else
#define FMA(a, b, c) __builtin_fmaf(a, b, c)
#endif

typedef struct {
    int64_t N, C, HW;
    int64_t planes_per_item; /* output pass: (sample, channel) planes per work item */
    const real *x;
    real *y;
    const real *weight, *bias;       /* NULL: 1 and 0 */
    real *mean, *invstd;             /* out: the batch statistics (torch's save_mean, save_invstd) */
    real *running_mean, *running_var; /* updated in place; NULL: not tracked */
    real *alpha, *beta;              /* out: the output pass's coefficients */
    double eps, momentum;
    int fused; /* torch's kernels here fuse the multiply-adds of beta and y */
} bn_args;

/* Σ of one channel's entries (squares 0), or of their squared deviations from mean
 * (squares 1: deviation and square in real, as torch), in LANES double chains. */
static inline __attribute__((always_inline)) double channel_sum(const bn_args *a, int64_t c, const int squares,
                                                               const real mean) {
    double acc[LANES] = {0};
    double tail = 0.0;
    for (int64_t n = 0; n < a->N; n++) {
        const real *x = a->x + (n * a->C + c) * a->HW;
        int64_t i = 0;
        for (; i + LANES <= a->HW; i += LANES)
            for (int k = 0; k < LANES; k++) {
                const real d = x[i + k] - mean;
                acc[k] += squares ? (double)(d * d) : (double)x[i + k];
            }
        for (; i < a->HW; i++) {
            const real d = x[i] - mean;
            tail += squares ? (double)(d * d) : (double)x[i];
        }
    }
    double s = tail;
    for (int k = 0; k < LANES; k++) s += acc[k];
    return s;
}

CLONES static double channel_total(const bn_args *a, int64_t c) { return channel_sum(a, c, 0, 0); }
CLONES static double channel_squares(const bn_args *a, int64_t c, real mean) { return channel_sum(a, c, 1, mean); }

static void stats_channel(const void *args, int64_t c) {
    const bn_args *a = (const bn_args *)args;
    const int64_t n = a->N * a->HW;
    const real mean = (real)(channel_total(a, c) / (double)n);
    const real var_sum = (real)channel_squares(a, c, mean);
    const double var = (double)(var_sum / (real)n);
    const real invstd = (var != 0.0 || a->eps != 0.0) ? (real)(1.0 / sqrt(var + a->eps)) : (real)0;
    a->mean[c] = mean;
    a->invstd[c] = invstd;
    const real m = (real)a->momentum;
    if (a->running_mean) a->running_mean[c] = m * mean + (1 - m) * a->running_mean[c];
    if (a->running_var) {
        const double unbiased = (double)(var_sum / (real)(n - 1));
        a->running_var[c] = (real)(m * unbiased + (double)((1 - m) * a->running_var[c]));
    }
    const real w = a->weight ? a->weight[c] : (real)1, b = a->bias ? a->bias[c] : (real)0;
    a->alpha[c] = invstd * w;
    a->beta[c] = a->fused ? FMA(-mean, a->alpha[c], b) : b - mean * a->alpha[c];
}

static inline __attribute__((always_inline)) void output_planes(const bn_args *a, int64_t item, const int fused) {
    const int64_t p0 = item * a->planes_per_item, planes = a->N * a->C;
    const int64_t p1 = p0 + a->planes_per_item < planes ? p0 + a->planes_per_item : planes;
    for (int64_t p = p0; p < p1; p++) {
        const real alpha = a->alpha[p % a->C], beta = a->beta[p % a->C];
        const real *restrict x = a->x + p * a->HW;
        real *restrict y = a->y + p * a->HW;
        if (fused)
            for (int64_t i = 0; i < a->HW; i++) y[i] = FMA(x[i], alpha, beta);
        else
            for (int64_t i = 0; i < a->HW; i++) y[i] = x[i] * alpha + beta;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f"))) static void output_avx512(const bn_args *a, int64_t item) { output_planes(a, item, 1); }
__attribute__((target("avx2,fma"))) static void output_fma(const bn_args *a, int64_t item) { output_planes(a, item, 1); }
#endif
static void output_plain(const bn_args *a, int64_t item) { output_planes(a, item, 0); }

static void output_item(const void *args, int64_t item) {
    const bn_args *a = (const bn_args *)args;
#if defined(__x86_64__) && defined(__GNUC__)
    if (a->fused && __builtin_cpu_supports("avx512f")) return output_avx512(a, item);
    if (a->fused) return output_fma(a, item);
#endif
    output_plain(a, item);
}

void bn_forward(const bn_args *a, int threads) {
    run_items(a, stats_channel, a->C, threads);
    const int64_t planes = a->N * a->C;
    run_items(a, output_item, (planes + a->planes_per_item - 1) / a->planes_per_item, threads);
}
