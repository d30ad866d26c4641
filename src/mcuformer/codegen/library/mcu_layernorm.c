/* Integer LayerNorm of one token: two passes (sum and sum of squares in int32 registers, an integer
 * square root), then E outputs. The input scale and zero point cancel; eps is dropped. y may be x. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

void mcu_layernorm_row(const mcu_layernorm_t *p, const int8_t *x, int8_t *y)
{
    const int32_t e = p->dim;
    int32_t sum = 0, sum_sq = 0;
    for (int32_t i = 0; i < e; i++) {
        sum += x[i];
        sum_sq += (int32_t)x[i] * x[i];
    }
    /* E^2 times the variance; std_E = E times the standard deviation */
    int64_t std = mcu_isqrt64((uint64_t)((int64_t)e * sum_sq - (int64_t)sum * sum));
    if (std < 1) std = 1;
    for (int32_t i = 0; i < e; i++) {
        const int64_t centred = (int64_t)e * x[i] - sum;
        const int64_t acc = mcu_rounded_div((int64_t)p->gamma[i] * centred, std) + p->beta[i];
        y[i] = mcu_sat8(mcu_requantize(acc, p->multiplier, p->shift) + p->out_zp);
    }
}
