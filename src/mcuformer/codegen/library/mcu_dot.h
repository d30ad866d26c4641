/* int8 dot products, the inner loop of every matmul. The portable path is plain C; with the DSP
 * extension (Cortex-M4/M7) four int8 pairs go through two SXTB16 unpacks and two SMLAD per weight
 * word, and several weight rows share one unpacked input word. Both give the exact int32 sum. */
#ifndef MCU_DOT_H
#define MCU_DOT_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(MCU_PORTABLE)
#define MCU_DSP 1
#include <arm_acle.h>

static inline int32_t mcu_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4); /* one LDR: Cortex-M4/M7 allow unaligned word loads */
    return v;
}

/* bytes 1 and 3 sign-extended to two halfwords (SXTB16 with ROR #8; gcc 12 has no __ror) */
static inline int32_t mcu_sxtb16_odd(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#endif

static inline int32_t mcu_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
{
    int32_t i = 0;
#ifdef MCU_DSP
    for (; i + 4 <= n; i += 4) {
        const int32_t xv = mcu_read_s8x4(x + i), wv = mcu_read_s8x4(w + i);
        acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
        acc = __smlad(mcu_sxtb16_odd(xv), mcu_sxtb16_odd(wv), acc);
    }
#endif
    for (; i < n; i++) acc += (int32_t)x[i] * w[i];
    return acc;
}

/* four weight rows (w, w + stride, ...) against one input: acc[r] += x . row r */
static inline void mcu_dot4_s8(const int8_t *x, const int8_t *w, int32_t stride, int32_t n, int32_t *acc)
{
    const int8_t *w0 = w, *w1 = w + stride, *w2 = w + 2 * stride, *w3 = w + 3 * stride;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t i = 0;
#ifdef MCU_DSP
    for (; i + 4 <= n; i += 4) {
        const int32_t xv = mcu_read_s8x4(x + i);
        const int32_t xe = __sxtb16(xv), xo = mcu_sxtb16_odd(xv);
        int32_t wv = mcu_read_s8x4(w0 + i);
        a0 = __smlad(xe, __sxtb16(wv), a0);
        a0 = __smlad(xo, mcu_sxtb16_odd(wv), a0);
        wv = mcu_read_s8x4(w1 + i);
        a1 = __smlad(xe, __sxtb16(wv), a1);
        a1 = __smlad(xo, mcu_sxtb16_odd(wv), a1);
        wv = mcu_read_s8x4(w2 + i);
        a2 = __smlad(xe, __sxtb16(wv), a2);
        a2 = __smlad(xo, mcu_sxtb16_odd(wv), a2);
        wv = mcu_read_s8x4(w3 + i);
        a3 = __smlad(xe, __sxtb16(wv), a3);
        a3 = __smlad(xo, mcu_sxtb16_odd(wv), a3);
    }
#endif
    for (; i < n; i++) {
        const int32_t xi = x[i];
        a0 += xi * w0[i];
        a1 += xi * w1[i];
        a2 += xi * w2[i];
        a3 += xi * w3[i];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#endif
