/* int8 dot products, the inner loop of every matmul. Three paths give the same exact int32 sums:
 *
 * - portable C (the host, and any core without the DSP extension, or with -DMCU_PORTABLE);
 * - MCU_DSP (__ARM_FEATURE_DSP: Cortex-M4/M7/M33...): four int8 pairs go through two SXTB16 unpacks
 *   and two SMLAD per weight word, and several weight rows share one unpacked input word (C with
 *   ACLE intrinsics);
 * - MCU_DSP_ASM (the DSP extension on an M-profile core in Thumb-2 with a GNU-compatible compiler,
 *   unless -DMCU_NO_ASM): assembly kernels (mcu_dot_dsp.c) that mcu_factor_rows() uses for three
 *   (or two) weight rows at a time, 8 inputs per step, all 14 usable registers allocated by hand,
 *   with the output stage of each row. See mcu_dot_dsp.c for the instruction budget. */
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

#if defined(__thumb2__) && defined(__ARM_ARCH_PROFILE) && defined(__GNUC__) && !defined(MCU_NO_ASM)
#if __ARM_ARCH_PROFILE == 'M'
#define MCU_DSP_ASM 1
#endif
#endif
#endif

#ifdef MCU_DSP_ASM
/* The work of the assembly kernels (mcu_dot_dsp.c). The input (all of x, or a part of it for each
 * of several calls, see skip) comes in up to three pieces, read one after the other:
 * - its first 8*wide inputs "widened" into int16 pairs (mcu_widen_s8): for every 4 inputs x0..x3
 *   the two words (x0 | x2 << 16) and (x1 | x3 << 16), i.e. the halfword order that SXTB16 /
 *   SXTB16 ROR #8 give a weight word, so that the kernels unpack only the weights;
 * - the next 8*raw inputs as plain int8 at xr (any alignment), unpacked on the fly (when the
 *   widened copy is not worth making or does not fit its stack buffer);
 * - the last tail (< 8) inputs at xt, one by one.
 * The assembly reads the fields at fixed offsets (checked in mcu_dot_dsp.c). */
typedef struct {
    const int32_t *xw;          /* word aligned */
    int32_t wide;               /* 8-input blocks in xw */
    const int8_t *xr;           /* the input after the widened blocks */
    int32_t raw;                /* 8-input blocks at xr */
    int32_t stride;             /* bytes from one weight row to the next (n) */
    int32_t tail;               /* inputs after the blocks, < 8 */
    const int8_t *xt;           /* the input after the int8 blocks */
    /* the kernels advance w, bias, multiplier, shift, y past the rows they did, and count groups
     * down to 0 */
    const int8_t *w;            /* the first row's weights (for the first input read) */
    const int32_t *bias, *multiplier, *shift; /* the first row's */
    int8_t *y;                  /* the first row's output */
    int32_t out_zp;
    const int8_t *lut;          /* a table's entry 128 (lut + 128), or 0: no table */
    int32_t groups;             /* groups of rows */
    int32_t partial;            /* nonzero: no output stage, the int32 sums go to (int32_t *)y */
    int32_t skip;               /* weights of each row after the inputs read: n - inputs read (0 unless
                                 * the call reads a part of the input) */
} mcu_dsp_job_t;

/* job->groups groups of three (rows3) or two (rows2) rows with the output stage (plain or table):
 * the plain names need w word aligned and stride % 4 == 0 (LDRD weight loads), the *_u names take
 * any alignment. */
void mcu_dsp_rows3(mcu_dsp_job_t *job);
void mcu_dsp_rows3_u(mcu_dsp_job_t *job);
void mcu_dsp_rows2(mcu_dsp_job_t *job);
void mcu_dsp_rows2_u(mcu_dsp_job_t *job);
/* the general requantisation (mcu_requantize32), for the assembly */
int32_t mcu_dsp_requantize32(int32_t v, int32_t multiplier, int32_t shift);

/* xw[0 .. n/2) = x[0 .. n) widened as above; n a multiple of 8 */
static inline void mcu_widen_s8(const int8_t *x, int32_t *xw, int32_t n)
{
    for (int32_t k = 0; k < n; k += 8, xw += 4) {
        const int32_t a = mcu_read_s8x4(x + k), b = mcu_read_s8x4(x + k + 4);
        xw[0] = __sxtb16(a);
        xw[1] = mcu_sxtb16_odd(a);
        xw[2] = __sxtb16(b);
        xw[3] = mcu_sxtb16_odd(b);
    }
}
#endif

static inline int32_t mcu_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
{
    int32_t i = 0;
#ifdef MCU_DSP
    for (; i + 8 <= n; i += 8) {
        const int32_t xa = mcu_read_s8x4(x + i), wa = mcu_read_s8x4(w + i);
        const int32_t xb = mcu_read_s8x4(x + i + 4), wb = mcu_read_s8x4(w + i + 4);
        acc = __smlad(__sxtb16(xa), __sxtb16(wa), acc);
        acc = __smlad(mcu_sxtb16_odd(xa), mcu_sxtb16_odd(wa), acc);
        acc = __smlad(__sxtb16(xb), __sxtb16(wb), acc);
        acc = __smlad(mcu_sxtb16_odd(xb), mcu_sxtb16_odd(wb), acc);
    }
    if (i + 4 <= n) {
        const int32_t xv = mcu_read_s8x4(x + i), wv = mcu_read_s8x4(w + i);
        acc = __smlad(__sxtb16(xv), __sxtb16(wv), acc);
        acc = __smlad(mcu_sxtb16_odd(xv), mcu_sxtb16_odd(wv), acc);
        i += 4;
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
