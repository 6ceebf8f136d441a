/* The rate of vector additions of weight rows read from L1: the ceiling of the event-driven
 * convolution's forward (spike_conv_cpu.c), which adds a row of 64 output channels (four
 * 16-lane vectors) per spike and tap. Rows of 64 floats from a block of ROWS rows (36 KB at
 * 144: they stay in L1) at random positions, two rows in flight into eight accumulators.
 * Prints "row adds from L1<TAB><G vector adds per second>". Built by benchmarks/bench_cpu_limits.py. */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROWS 144
#define PICKS 64
#define REPS 20000

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

__attribute__((target("avx512f"))) static float add_rows(const float *w, const int *at, int reps) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
    for (int r = 0; r < reps; r++)
        for (int e = 0; e + 1 < PICKS; e += 2) {
            const float *u = w + at[e], *v = w + at[e + 1];
            s0 = _mm512_add_ps(s0, _mm512_load_ps(u)), t0 = _mm512_add_ps(t0, _mm512_load_ps(v));
            s1 = _mm512_add_ps(s1, _mm512_load_ps(u + 16)), t1 = _mm512_add_ps(t1, _mm512_load_ps(v + 16));
            s2 = _mm512_add_ps(s2, _mm512_load_ps(u + 32)), t2 = _mm512_add_ps(t2, _mm512_load_ps(v + 32));
            s3 = _mm512_add_ps(s3, _mm512_load_ps(u + 48)), t3 = _mm512_add_ps(t3, _mm512_load_ps(v + 48));
        }
    const __m512 a = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, t0), _mm512_add_ps(s1, t1)),
                                   _mm512_add_ps(_mm512_add_ps(s2, t2), _mm512_add_ps(s3, t3)));
    return _mm512_reduce_add_ps(a);
}

int main(void) {
    if (!__builtin_cpu_supports("avx512f")) {
        puts("skipped: no AVX-512");
        return 0;
    }
    float *w = aligned_alloc(64, ROWS * 64 * sizeof *w);
    int *at = malloc(16 * PICKS * sizeof *at);
    for (int i = 0; i < ROWS * 64; i++) w[i] = 1e-9f * (float)i;
    srand(1);
    for (int i = 0; i < 16 * PICKS; i++) at[i] = rand() % ROWS * 64;
    double best = 1e30;
    float sink = 0;
    for (int k = 0; k < 16; k++) {
        const double t = now();
        sink += add_rows(w, at + k * PICKS, REPS);
        const double dt = now() - t;
        best = dt < best ? dt : best;
    }
    volatile float keep = sink; /* the sums are used */
    (void)keep;
    printf("row adds from L1\t%.2f\n", (double)REPS * PICKS * 4 / best / 1e9);
    return 0;
}
