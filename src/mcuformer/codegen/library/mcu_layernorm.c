/* Integer LayerNorm of one token: two passes (sum and sum of squares in int32 registers, an integer
 * square root), then E outputs. The input scale and zero point cancel; eps is dropped. y may be x.
 *
 * For E <= MCU_LN32_MAX_DIM every quantity fits 32 bits, and the row takes 32-bit arithmetic with the
 * bits of the 64-bit definition (quantize/intops.layernorm):
 *   E*ss <= 511^2 * 2^14 < 2^32 and s^2 <= (128 E)^2 < 2^32, so var_E = E*ss - s^2 >= 0 is a uint32;
 *   |d_i| = |E x_i - s| <= 255 (E - 1) and |gamma_i| <= 2^15, so |gamma_i d_i| + std_E / 2 < 2^32: the
 *   rounded division is one 32-bit unsigned division of the magnitudes (one UDIV on the M7);
 *   sum_i d_i^2 = E var_E and sqrt(var_E) < 2 std_E give |gamma_i d_i| / std_E < 2^16 sqrt(E) < 2^21,
 *   so with |beta_i| < 2^29 the accumulator stays within 2^30 and takes the requantisation's fast path.
 * A beta outside that (never made by the quantiser) takes the 64-bit arithmetic for its element. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

#define MCU_LN32_MAX_DIM 511

/* the 64-bit definition of one output */
static int8_t layernorm_out64(const mcu_layernorm_t *p, int32_t i, int64_t centred, int64_t std)
{
    const int64_t acc = mcu_rounded_div((int64_t)p->gamma[i] * centred, std) + p->beta[i];
    return mcu_sat8(mcu_requantize(acc, p->multiplier, p->shift) + p->out_zp);
}

static void layernorm_row32(const mcu_layernorm_t *p, const int8_t *x, int8_t *y, int32_t sum, int32_t sum_sq)
{
    const int32_t e = p->dim, multiplier = p->multiplier, shift = p->shift, out_zp = p->out_zp;
    const uint32_t var = (uint32_t)e * (uint32_t)sum_sq - (uint32_t)sum * (uint32_t)sum;
    uint32_t std = mcu_isqrt32(var);
    if (std < 1) std = 1;
    const uint32_t half = std / 2;
    const int16_t *gamma = p->gamma;
    const int32_t *beta = p->beta;
    for (int32_t i = 0; i < e; i++) {
        const int32_t d = e * x[i] - sum, g = gamma[i], b = beta[i];
        if ((uint32_t)b + 0x20000000u >= 0x40000000u) { /* |beta| >= 2^29: the 64-bit arithmetic */
            y[i] = layernorm_out64(p, i, d, std);
            continue;
        }
        const uint32_t magnitude = (uint32_t)(g < 0 ? -g : g) * (uint32_t)(d < 0 ? -d : d);
        const int32_t q = (int32_t)((magnitude + half) / std);
        const int32_t acc = ((g ^ d) < 0 ? -q : q) + b;
        y[i] = mcu_ssat8(mcu_requant32(acc, multiplier, shift) + out_zp);
    }
}

void mcu_layernorm_row(const mcu_layernorm_t *p, const int8_t *x, int8_t *y)
{
    const int32_t e = p->dim;
    int32_t sum = 0, sum_sq = 0;
    for (int32_t i = 0; i < e; i++) {
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
