/* float32 ln and exp of spikecim's CPU kernels, from the Cephes Math Library (Stephen L.
 * Moshier, logf.c and expf.c): polynomials in loops the compiler vectorises, where libm's
 * logf / expf are one call per value.
 *
 * cephes_logf(x): ln x for every positive normal float (the PCM read noise of normal_cpu.c's
 *     written crossbars).
 * cephes_exp_reduced(x, n): e^r for e^x = 2^n e^r with an integer n near x log2(e)
 *     (|r| <= ln 2 / 2 when n is x log2(e) rounded), r = x - n ln 2 with ln 2 in two parts
 *     (0.693359375 is exact in float), e^r by expf.c's polynomial in r (relative error
 *     about 1e-7). Each caller rounds x log2(e) to n, bounds x and builds 2^n in the
 *     exponent bits its own way (normal_cpu.c's exp_small, wkv_cpu.c's exp_neg_f).
 *
 * Built with cbuild.FLAGS (-ffp-contract=off): the operations run as written, no fused
 * multiply-add. float only: the double kernels use libm.
 */
#ifndef SPIKECIM_CEPHES_H
#define SPIKECIM_CEPHES_H

#include <stdint.h>
#include <string.h>

#define CEPHES_INLINE static inline __attribute__((always_inline, unused))

/* ln x, Cephes logf: x = m 2^e with the mantissa m in [sqrt(1/2), sqrt(2)), a degree-9
 * polynomial of f = m - 1, the exponent's ln 2 in two parts. */
CEPHES_INLINE float cephes_logf(float x) {
    uint32_t ix;
    memcpy(&ix, &x, 4);
    int32_t e = (int32_t)(ix >> 23) - 126; /* x = m * 2^e, m in [0.5, 1) */
    ix = (ix & 0x007fffffu) | 0x3f000000u;
    float m;
    memcpy(&m, &ix, 4);
    const int small = m < 0.707106781186547524f;
    e -= small;
    const float f = (small ? m + m : m) - 1.0f;
    const float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    const float fe = (float)e;
    float y = f * z * p;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    return f + y + 0.693359375f * fe;
}

/* e^r for r = x - n ln 2 (n: an integer held in a float), Cephes expf's polynomial. */
CEPHES_INLINE float cephes_exp_reduced(float x, float n) {
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    return (p * (r * r) + r) + 1.0f;
}

#endif
