/* The converters' arithmetic shared by converters_cpu.c (the DAC and ADC passes) and
 * matmul_adc_cpu.c (the crossbars written at run time), as spikecim/analog/tiles.py's torch
 * passes evaluate it:
 *   scale_of(m): the DAC scale of an abs-max m given as bits (real.h's abs_bits): 1 for an
 *       all-zero vector and for NaN (torch.where(s > 0, s, 1) after amax), else m's value;
 *   gain_of(s, n_dac): the DAC gain (1/s)*n_dac, the input's levels being rint(x*gain);
 *   adc_level(v, k, q): the ADC's level clamp(rint(v*k), -q, q), NaN staying NaN as
 *       torch.clamp (rint rounds half to even, as torch.round).
 */
#ifndef SPIKECIM_CONVERTERS_H
#define SPIKECIM_CONVERTERS_H

#include <string.h>
#include <tgmath.h> /* rint in the precision of its argument */

#include "real.h"

#define CONVERTERS_INLINE static inline __attribute__((unused))

CONVERTERS_INLINE real scale_of(ubits m) {
    real s;
    memcpy(&s, &m, sizeof s);
    return (m == 0 || m > INF_BITS) ? (real)1 : s;
}

CONVERTERS_INLINE real gain_of(real s, real n_dac) {
    const real r = (real)1 / s;
    return r * n_dac;
}

CONVERTERS_INLINE real adc_level(real v, real k, real q) {
    v = rint(v * k);
    return v < -q ? -q : (v > q ? q : v);
}

#endif
