/* Integer LayerNorm of one token: two passes (sum and sum of squares in int32 registers, an integer
 * square root), then E outputs. The input scale and zero point cancel; eps is dropped. y may be x.
 *
 * For E <= MCU_LN32_MAX_DIM every quantity fits 32 bits, and the row takes 32-bit arithmetic with the
 * bits of the 64-bit definition (quantize/intops.layernorm):
 *   E*ss <= 511^2 * 2^14 < 2^32 and s^2 <= (128 E)^2 < 2^32, so var_E = E*ss - s^2 >= 0 is a uint32;
 *   |d_i| = |E x_i - s| <= 255 (E - 1) and |gamma_i| <= 2^15, so |gamma_i d_i| + std_E / 2 < 2^32: the
 *   rounded division is one 32-bit unsigned division of the magnitudes (one UDIV on the M7);
 *   sum_i d_i^2 = E var_E and sqrt(var_E) < 2 std_E give |gamma_i d_i| / std_E < 2^16 sqrt(E) < 2^21,
 *   so q_i + beta_i is requantised on the int32 fast path whenever it lies in [-2^30, 2^30) (every
 *   LayerNorm the quantiser makes), else in 64 bits.
 * On the DSP path the first pass reads four values per load (SXTB16, SMLAD). */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"
#include "mcu_dot.h"

#define MCU_LN32_MAX_DIM 511

/* the 64-bit definition of one output */
static int8_t layernorm_out64(const mcu_layernorm_t *p, int32_t i, int64_t centred, int64_t std)
{
    const int64_t acc = mcu_rounded_div((int64_t)p->gamma[i] * centred, std) + p->beta[i];
    return mcu_sat8(mcu_requantize(acc, p->multiplier, p->shift) + p->out_zp);
}

/* q + beta outside the requantisation's fast path: exactly, in 64 bits (a left shift, or a beta near
 * +-2^31, which the quantiser never makes) */
static MCU_FP_NOINLINE int8_t layernorm_out_slow(int32_t q, int32_t beta, int32_t multiplier, int32_t shift,
                                                 int32_t out_zp)
{
    return mcu_sat8(mcu_requantize((int64_t)q + beta, multiplier, shift) + out_zp);
}

static void layernorm_row32(const mcu_layernorm_t *p, const int8_t *x, int8_t *y, int32_t sum, int32_t sum_sq)
{
    const int32_t e = p->dim, multiplier = p->multiplier, shift = p->shift, out_zp = p->out_zp;
    const uint32_t right = 0u - (uint32_t)shift;
    const uint32_t var = (uint32_t)e * (uint32_t)sum_sq - (uint32_t)sum * (uint32_t)sum;
    uint32_t std = mcu_isqrt32(var);
    if (std < 1) std = 1;
    const uint32_t half = std / 2;
    const int16_t *gamma = p->gamma;
    const int32_t *beta = p->beta;
    const int8_t *end = x + e;
    while (x < end) {
        const int32_t d = e * *x++ - sum, g = *gamma++, b = *beta++;
        const uint32_t magnitude = (uint32_t)(g < 0 ? -g : g) * (uint32_t)(d < 0 ? -d : d);
        const int32_t q = (int32_t)((magnitude + half) / std), negative = (g ^ d) >> 31;
        const int32_t signed_q = (q ^ negative) - negative; /* |q| < 2^21 */
        /* q + b, wrapped to 32 bits: when it lands in the fast path's [-2^30, 2^30) it did not wrap
         * (a wrapped sum is at least 2^31 - 2^21 from 0) */
        const int32_t acc = (int32_t)((uint32_t)signed_q + (uint32_t)b);
        if (MCU_FP_LIKELY(mcu_fast_requant_ok(acc, right)))
            *y++ = mcu_ssat8(mcu_fast_requant(acc, multiplier, right) + out_zp);
        else
            *y++ = layernorm_out_slow(signed_q, b, multiplier, shift, out_zp);
    }
}

void mcu_layernorm_row(const mcu_layernorm_t *p, const int8_t *x, int8_t *y)
{
    const int32_t e = p->dim;
    int32_t sum = 0, sum_sq = 0, i = 0;
#ifdef MCU_DSP
    for (; i + 4 <= e; i += 4) { /* four int8 at a time: SXTB16 pairs, SMLAD against 1s and themselves */
        const int32_t v = mcu_read_s8x4(x + i), even = __sxtb16(v), odd = mcu_sxtb16_odd(v);
        sum = __smlad(even, 0x00010001, __smlad(odd, 0x00010001, sum));
        sum_sq = __smlad(even, even, __smlad(odd, odd, sum_sq));
    }
#endif
    for (; i < e; i++) {
        sum += x[i];
        sum_sq += (int32_t)x[i] * x[i];
    }
    if (e <= MCU_LN32_MAX_DIM) {
        layernorm_row32(p, x, y, sum, sum_sq);
        return;
    }
    /* E^2 times the variance; std_E = E times the standard deviation */
    int64_t std = mcu_isqrt64((uint64_t)((int64_t)e * sum_sq - (int64_t)sum * sum));
    if (std < 1) std = 1;
    for (int32_t i = 0; i < e; i++) y[i] = layernorm_out64(p, i, (int64_t)e * x[i] - sum, std);
}
