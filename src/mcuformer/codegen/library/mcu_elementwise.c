/* Elementwise kernels: the int8 add (residuals, position embedding), tables (GELU), softmax. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

#define MCU_ADD_LEFT_SHIFT 20

int8_t mcu_add_s8(const mcu_add_t *p, int32_t a, int32_t b)
{
    const int32_t ra = mcu_requantize((int64_t)(a - p->a_zp) * (1 << MCU_ADD_LEFT_SHIFT), p->a_multiplier, p->a_shift);
    const int32_t rb = mcu_requantize((int64_t)(b - p->b_zp) * (1 << MCU_ADD_LEFT_SHIFT), p->b_multiplier, p->b_shift);
    return mcu_sat8(mcu_requantize((int64_t)ra + rb, p->out_multiplier, p->out_shift) + p->out_zp);
}

void mcu_add_row(const mcu_add_t *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) y[i] = mcu_add_s8(p, a[i], b[i]);
}

void mcu_add(const mcu_add_t *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n)
{
    mcu_add_row(p, a, b, y, n);
}

void mcu_gelu(const int8_t *lut, const int8_t *x, int8_t *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) y[i] = lut[x[i] + 128];
}

/* Softmax of one row of int8 scores into int8 probabilities (scale 1/256, zero point -128), in
 * place when y == x: the max, the sum of exp(max - x) from a uint16 table, then the outputs. */
void mcu_softmax_row(const int8_t *x, int8_t *y, int32_t n, const uint16_t *exp_lut)
{
    int32_t max = -128;
    for (int32_t j = 0; j < n; j++) max = x[j] > max ? x[j] : max;
    uint32_t total = 0;
    for (int32_t j = 0; j < n; j++) total += exp_lut[max - x[j]];
    for (int32_t j = 0; j < n; j++) {
        uint32_t p = ((uint32_t)exp_lut[max - x[j]] * 256u + total / 2u) / total;
        y[j] = (int8_t)((int32_t)(p > 255u ? 255u : p) - 128);
    }
}
