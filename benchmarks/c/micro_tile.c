/* The analog convolution kernel's micro-tiles (conv_adc_cpu.c, included as it is built) alone
 * on VGG-9's second-layer shape: a panel of ROWS rows × PATCHES patches times the packed read
 * matrix of COLS columns, 6 columns × 64 patches per call (AVX-512) or 6 × 16 (AVX2), as one
 * work item runs it over one input tile. Prints "<label><TAB><GFLOP/s>" on one core for each
 * the CPU runs. Built by benchmarks/bench_cpu_limits.py with -DREAL=float and the kernels'
 * folder on the include path. Counts the flops of the 64 columns (the micro-tiles compute 66). */
#include <stdio.h>
#include <time.h>

#include "conv_adc_cpu.c"

#define ROWS 576    /* 64 channels × 3 × 3 */
#define COLS 64     /* output channels */
#define PATCHES 256 /* a panel: 8 output rows of 32 */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef void (*micro_tile_fn)(int64_t, const float *, int64_t, const float *, float *, int64_t);

/* The best GFLOP/s of `tile` (`width` patches a call) over the panel. */
static double gflops(micro_tile_fn tile, int64_t width, const float *a, const float *b, float *y, int64_t panels) {
    const int reps = 200;
    double best = 1e30;
    for (int t = 0; t < 7; t++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++)
            for (int64_t p = 0; p < panels; p++)
                for (int64_t l = 0; l < PATCHES; l += width)
                    tile(ROWS, a + l, PATCHES, b + p * ROWS * NR, y + p * NR * PATCHES + l, PATCHES);
        const double dt = (now() - t0) / reps;
        best = dt < best ? dt : best;
    }
    return 2.0 * ROWS * COLS * PATCHES / best / 1e9;
}

int main(void) {
    const int isa = conv_adc_available();
    if (!isa) {
        puts("skipped: no AVX-512 or AVX2 with FMA");
        return 0;
    }
    const int64_t panels = (COLS + NR - 1) / NR;
    float *a = aligned_alloc(64, (size_t)ROWS * PATCHES * sizeof(float));
    float *b = aligned_alloc(64, (size_t)panels * ROWS * NR * sizeof(float));
    float *y = aligned_alloc(64, (size_t)panels * NR * PATCHES * sizeof(float));
    for (int64_t i = 0; i < (int64_t)ROWS * PATCHES; i++) a[i] = (float)(i % 255 - 127);
    for (int64_t i = 0; i < panels * ROWS * NR; i++) b[i] = (float)(i % 97) / 97.0f;
    if (isa == 3)
        printf("micro-tile, 576 rows x 64 columns x 256 patches\t%.1f\n", gflops(micro_tile_64, 64, a, b, y, panels));
    printf("AVX2 micro-tile, 576 rows x 64 columns x 256 patches\t%.1f\n",
           gflops(micro_tile_16_avx2, 16, a, b, y, panels));
    volatile float keep = y[17]; /* the products are used */
    (void)keep;
    return 0;
}
