/* What every CPU kernel of spikecim declares alike.
 *
 * real: the element type. A kernel is built once per dtype: float by default, double with
 *     -DREAL=double -DREAL_IS_DOUBLE (cbuild.flag_sets gives both).
 * CLONES: an AVX-512 and an AVX2 copy of a hot loop beside the default one, the widest the
 *     CPU has picked when the library loads (GCC's function multi-versioning; no FMA, so the
 *     arithmetic stays the reference's and every copy gives the same bits). On the AVX-512
 *     machine of BENCHMARKS.md the AVX-512 copy of the crossbars written at run time takes
 *     1.30 ms against 1.77 ms (vit-tiny's keys, [1024, 16, 16], PCM, one thread).
 *     -DNO_CLONES builds the default alone.
 * abs_bits(v): |v| as its bit pattern. For non-negative reals the unsigned order of the bits
 *     is the order of the values and every NaN lies above +inf (INF_BITS), so an integer max
 *     (which vectorises, where a compare of reals with a NaN test is a chain of scalar
 *     steps) is the abs-max with NaN propagating, as torch's amax. */
#ifndef SPIKECIM_REAL_H
#define SPIKECIM_REAL_H

#include <stdint.h>
#include <string.h>

#ifndef REAL
#define REAL float
#endif
typedef REAL real;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(NO_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#if defined(REAL_IS_DOUBLE)
typedef uint64_t ubits;
#define ABS_MASK 0x7fffffffffffffffULL
#define INF_BITS 0x7ff0000000000000ULL
#else
typedef uint32_t ubits;
#define ABS_MASK 0x7fffffffU
#define INF_BITS 0x7f800000U
#endif

static inline __attribute__((unused)) ubits abs_bits(real v) {
    ubits b;
    memcpy(&b, &v, sizeof b);
    return b & ABS_MASK;
}

#endif
