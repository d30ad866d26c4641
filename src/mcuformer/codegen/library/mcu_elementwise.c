/* Elementwise kernels: the int8 add (residuals, position embedding), tables (GELU), softmax. */
#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

#include <string.h>
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_PORTABLE)
#include <arm_acle.h>
#endif

#define MCU_ADD_LEFT_SHIFT 20

int8_t mcu_add_s8(const mcu_add_t *p, int32_t a, int32_t b)
{
    const int32_t ra = mcu_requantize((int64_t)(a - p->a_zp) * (1 << MCU_ADD_LEFT_SHIFT), p->a_multiplier, p->a_shift);
    const int32_t rb = mcu_requantize((int64_t)(b - p->b_zp) * (1 << MCU_ADD_LEFT_SHIFT), p->b_multiplier, p->b_shift);
    return mcu_sat8(mcu_requantize((int64_t)ra + rb, p->out_multiplier, p->out_shift) + p->out_zp);
}

/* y[i] = mcu_add_s8(p, a[i], b[i]), i < n; y may be a or b. When the zero points are int8 and no shift
 * is a left shift (every add that the quantiser makes: its input multipliers are <= 1/2, its output
 * one tiny), |(a - z) << 20| < 2^28, both terms and their sum stay below 2^30: every requantisation
 * takes the fast path (mcu_fixedpoint.h), and the loop has no tests. */
void mcu_add_row(const mcu_add_t *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n)
{
    if (p->a_zp < -128 || p->a_zp > 127 || p->b_zp < -128 || p->b_zp > 127 || p->a_shift > 0 || p->b_shift > 0 ||
        p->out_shift > 0) {
        for (int32_t i = 0; i < n; i++) y[i] = mcu_add_s8(p, a[i], b[i]);
        return;
    }
    const int32_t za = p->a_zp, zb = p->b_zp, zo = p->out_zp;
    const int32_t ma = p->a_multiplier, mb = p->b_multiplier, mo = p->out_multiplier;
    const uint32_t ra = 0u - (uint32_t)p->a_shift, rb = 0u - (uint32_t)p->b_shift, ro = 0u - (uint32_t)p->out_shift;
    for (int32_t i = 0; i < n; i++) {
        const int32_t sa = mcu_fast_requant((a[i] - za) * (1 << MCU_ADD_LEFT_SHIFT), ma, ra);
        const int32_t sb = mcu_fast_requant((b[i] - zb) * (1 << MCU_ADD_LEFT_SHIFT), mb, rb);
        y[i] = mcu_ssat8(mcu_fast_requant(sa + sb, mo, ro) + zo);
    }
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
 * place when y == x: the max, the sum of exp(max - x) from a uint16 table, then the outputs. The
 * table values of up to MCU_SOFTMAX_CACHE scores wait on the stack between the last two passes (the
 * row may be written in place); on the DSP path the max takes four scores per SSUB8 + SEL. */
#ifndef MCU_SOFTMAX_CACHE
#define MCU_SOFTMAX_CACHE 256
#endif
void mcu_softmax_row(const int8_t *x, int8_t *y, int32_t n, const uint16_t *exp_lut)
{
    int32_t max = -128, j = 0;
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_PORTABLE)
    if (n >= 8) {
        int32_t best = (int32_t)0x80808080u; /* four lanes of -128 */
        for (; j + 4 <= n; j += 4) {
            int32_t v;
            memcpy(&v, x + j, 4);
            __ssub8(v, best); /* GE[i] set where v[i] >= best[i] */
            best = __sel(v, best);
        }
        for (int32_t lane = 0; lane < 4; lane++) {
            const int32_t b = (int8_t)(best >> (8 * lane));
            max = b > max ? b : max;
        }
    }
#endif
    for (; j < n; j++) max = x[j] > max ? x[j] : max;
    const uint16_t *lut = exp_lut + max; /* lut[-x] = exp_lut[max - x] */
    uint32_t total = 0;
    if (n <= MCU_SOFTMAX_CACHE) {
        uint16_t e[MCU_SOFTMAX_CACHE];
        for (j = 0; j < n; j++) {
            e[j] = lut[-x[j]];
            total += e[j];
        }
        const uint32_t half = total / 2u;
        for (j = 0; j < n; j++) {
            const uint32_t p = ((uint32_t)e[j] * 256u + half) / total;
            y[j] = (int8_t)((int32_t)(p > 255u ? 255u : p) - 128);
        }
        return;
    }
    for (j = 0; j < n; j++) total += lut[-x[j]];
    for (j = 0; j < n; j++) {
        const uint32_t p = ((uint32_t)lut[-x[j]] * 256u + total / 2u) / total;
        y[j] = (int8_t)((int32_t)(p > 255u ? 255u : p) - 128);
    }
}
