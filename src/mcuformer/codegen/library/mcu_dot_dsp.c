/* Assembly kernels of the int8 matmul for Cortex-M cores with the DSP extension (ARMv7E-M: M4, M7;
 * ARMv8-M with DSP), used by mcu_factor_rows() (mcu_linear.c) when MCU_DSP_ASM is set (mcu_dot.h).
 * Elsewhere (the host, -DMCU_PORTABLE, -DMCU_NO_ASM) this file is empty. Checked bit for bit against
 * the portable C and the integer reference by tests/test_engine_kernels.py (QEMU, Cortex-M7; the
 * same code also passes on QEMU's Cortex-M4, mps2-an386).
 *
 * mcu_dsp_rows3[_u](job) / mcu_dsp_rows2[_u](job): job->groups groups of three / two output rows,
 * each: the int32 sums bias[o] + sum_k x[k] * w[o][k], then either the output stage (requantisation
 * by the fast path of mcu_linear.c's requant32, with mcu_dsp_requantize32 below for the general case,
 * + out_zp, saturation, the optional table, the int8 store) or, for a part of a long input, the int32
 * sums stored for the next part. The sums are exact int32 sums: SMLAD / SMLABB add the products and
 * the accumulator modulo 2^32 (they only set the Q flag on overflow), like the portable C.
 *
 * One 8-input step of three rows, registers allocated by hand (the compiler's version of the old
 * 4-row C loop spilled the row pointers: 27 instructions per 16 MACs):
 *
 *   ldm    r6!, {r8-r11}           8 inputs, already widened to int16 pairs (1 instruction)
 *   per row (x3):
 *   ldrd   r12, lr, [p], #8        8 weights (two LDR where the rows are not word aligned)
 *   sxtb16 r7, r12                 weights 0, 2
 *   sxtb16 r12, r12, ror #8        weights 1, 3
 *   smlad  acc, r7, r8, acc        acc += w0*x0 + w2*x2
 *   smlad  acc, r12, r9, acc       acc += w1*x1 + w3*x3
 *   (the same for lr against r10, r11: weights 4..7)
 *
 * = 28 instructions per 24 MACs; the loop is unrolled four times (entered part-way for a block
 * count that is not a multiple of 4) and its control costs 3 instructions: 115 per 96 MACs, 1.20
 * instructions per MAC. Where the input is read as int8 (a call with few rows, or the short rest of
 * an input a little longer than the widened copy) each step loads two words and unpacks them
 * itself: 5 instructions more per step, and no unrolling. Per group of three rows ~70
 * instructions more: the set-up, the < 8 inputs of a tail (one SMLABB per MAC), and 14 per output
 * row for the requantisation (15 with the table). The whole kernel takes 1.26-1.32 instructions per
 * MAC on layers with 192 to 1536 inputs (benchmarks/engine_speed.py).
 *
 * Registers in the loop: r0-r2 the accumulators, r3-r5 the weight row pointers, r6 the input
 * pointer, r7 a temporary, r8-r11 the four input words (LDM loads them in register order), r12/lr
 * the weight words. Loop ends and the like live in the stack frame (120 bytes, no calls but the
 * rare general requantisation). */
#include "mcu_dot.h"

#ifdef MCU_DSP_ASM
#include <stddef.h>
#include "mcu_fixedpoint.h"

/* the assembly reads mcu_dsp_job_t at these offsets */
#define MCU_CHECK_OFFSET(field, offset) (offsetof(mcu_dsp_job_t, field) == (offset))
typedef char mcu_dsp_job_layout_check[(MCU_CHECK_OFFSET(xw, 0) && MCU_CHECK_OFFSET(wide, 4) &&
                                       MCU_CHECK_OFFSET(xr, 8) && MCU_CHECK_OFFSET(raw, 12) &&
                                       MCU_CHECK_OFFSET(stride, 16) && MCU_CHECK_OFFSET(tail, 20) &&
                                       MCU_CHECK_OFFSET(xt, 24) && MCU_CHECK_OFFSET(w, 28) &&
                                       MCU_CHECK_OFFSET(bias, 32) && MCU_CHECK_OFFSET(multiplier, 36) &&
                                       MCU_CHECK_OFFSET(shift, 40) && MCU_CHECK_OFFSET(y, 44) &&
                                       MCU_CHECK_OFFSET(out_zp, 48) && MCU_CHECK_OFFSET(lut, 52) &&
                                       MCU_CHECK_OFFSET(groups, 56) && MCU_CHECK_OFFSET(partial, 60) &&
                                       MCU_CHECK_OFFSET(skip, 64))
                                          ? 1
                                          : -1];

/* the general requantisation, called from the assembly when the fast path does not apply ("used":
 * only the assembly refers to it, which link-time optimisation does not see) */
__attribute__((used)) int32_t mcu_dsp_requantize32(int32_t v, int32_t multiplier, int32_t shift)
{
    return mcu_requantize32(v, multiplier, shift);
}

__asm__(
    "    .syntax unified\n"
    "    .thumb\n"

    /* the next 8 inputs: widened (1 instruction) */
    "    .macro MCU_XW\n"
    "    ldm     r6!, {r8-r11}\n"
    "    .endm\n"

    /* ... or int8, any alignment: x0..x3 -> (x0, x2), (x1, x3); x4..x7 likewise */
    "    .macro MCU_XR\n"
    "    ldr     r9, [r6], #4\n"
    "    ldr     r11, [r6], #4\n"
    "    sxtb16  r8, r9\n"
    "    sxtb16  r9, r9, ror #8\n"
    "    sxtb16  r10, r11\n"
    "    sxtb16  r11, r11, ror #8\n"
    "    .endm\n"

    /* one weight row: 8 weights from [ptr] (ptr += 8) into acc */
    "    .macro MCU_ROW acc, ptr, aligned\n"
    "    .if \\aligned\n"
    "    ldrd    r12, lr, [\\ptr], #8\n"
    "    .else\n"
    "    ldr     r12, [\\ptr], #4\n"
    "    ldr     lr, [\\ptr], #4\n"
    "    .endif\n"
    "    sxtb16  r7, r12\n"
    "    sxtb16  r12, r12, ror #8\n"
    "    smlad   \\acc, r7, r8, \\acc\n"
    "    smlad   \\acc, r12, r9, \\acc\n"
    "    sxtb16  r7, lr\n"
    "    sxtb16  lr, lr, ror #8\n"
    "    smlad   \\acc, r7, r10, \\acc\n"
    "    smlad   \\acc, lr, r11, \\acc\n"
    "    .endm\n"

    "    .macro MCU_ROWS rows, aligned\n"
    "    MCU_ROW r0, r3, \\aligned\n"
    "    MCU_ROW r1, r4, \\aligned\n"
    "    .if \\rows == 3\n"
    "    MCU_ROW r2, r5, \\aligned\n"
    "    .endif\n"
    "    .endm\n"

    /* The output stage of one row: acc -> int8 at [r9], r9 += 1. r3 -> multiplier, r4 -> shift
     * (both advance), r8 = out_zp, r6 = table + 128 (when table = 1), lr = 1; r7, r10-r12 scratch.
     *   right = -shift; fast when right >= 0 and 2 acc does not overflow (see mcu_linear.c):
     *   high = SMMULR(2 acc, M); v = (high + ((2^right - (high < 0)) >> 1)) >> right */
    "    .macro MCU_OUT acc, table\n"
    "    ldr     r10, [r3], #4\n"
    "    ldr     r11, [r4], #4\n"
    "    rsbs    r11, r11, #0\n"
    "    bmi.w   8f\n"                      /* a left shift */
    "    adds    r7, \\acc, \\acc\n"
    "    bvs.w   8f\n"                      /* acc outside [-2^30, 2^30) */
    "    smmulr  r7, r7, r10\n"
    "    lsl     r12, lr, r11\n"
    "    sub     r12, r12, r7, lsr #31\n"
    "    add     r7, r7, r12, lsr #1\n"
    "    asr     r7, r7, r11\n"
    "9:\n"
    "    add     r7, r7, r8\n"
    "    ssat    r7, #8, r7\n"
    "    .if \\table\n"
    "    ldrsb   r7, [r6, r7]\n"
    "    .endif\n"
    "    strb    r7, [r9], #1\n"
    /* the general case, out of line: r7 = mcu_dsp_requantize32(acc, M, shift) */
    "    .subsection 1\n"
    "8:\n"
    "    push    {r0-r3, r12, lr}\n"
    "    mov     r0, \\acc\n"
    "    mov     r1, r10\n"
    "    rsb     r2, r11, #0\n"
    "    bl      mcu_dsp_requantize32\n"
    "    mov     r7, r0\n"
    "    pop     {r0-r3, r12, lr}\n"
    "    b.w     9b\n"
    "    .subsection 0\n"
    "    .endm\n"

    "    .macro MCU_OUT_LOADS rows\n"
    "    .if \\rows == 2\n"
    "    mov     r5, r4\n"                  /* frees r4 for the shift pointer */
    "    .endif\n"
    "    ldr     r3, [sp, #48]\n"           /* multiplier */
    "    ldr     r4, [sp, #52]\n"           /* shift */
    "    ldr     r9, [sp, #56]\n"           /* y */
    "    ldr     r8, [sp, #60]\n"           /* out_zp */
    "    ldr     r6, [sp, #64]\n"           /* lut + 128, or 0 */
    "    mov     lr, #1\n"
    "    .endm\n"

    "    .macro MCU_OUTS rows, table\n"
    "    MCU_OUT r0, \\table\n"
    "    MCU_OUT r1, \\table\n"
    "    .if \\rows == 3\n"
    "    MCU_OUT r2, \\table\n"
    "    .endif\n"
    "    .endm\n"

    /* void name(mcu_dsp_job_t *job): job->groups groups of `rows` (3 or 2) rows.
     * The row pointers are r3, r4 (, r5); the last one + skip is the next group's first row.
     * frame: [sp] end of xw, [sp,#4] job, [sp,#8] end of xr, [sp,#12] xw, [sp,#16] xr, then where to
     * go (an address | 1): [sp,#20] at a group's start, [sp,#24] after the widened blocks, [sp,#28]
     * after the int8 blocks; [sp,#32] tail, [sp,#36] xt, [sp,#40] stride, [sp,#44] bias,
     * [sp,#48] multiplier, [sp,#52] shift, [sp,#56] y, [sp,#60] out_zp, [sp,#64] lut, [sp,#68]
     * groups left, [sp,#72] the output stage (requantised without or with the table, or the int32
     * sums), [sp,#76] skip. The jumps are chosen once per call, so that a group runs no tests for
     * the parts that the input does not have. The widened loop is unrolled four times (entered
     * part-way for a block count that is not a multiple of 4) where the rows are aligned, not where
     * they are not (a rare case: smaller code). */
    "    .macro MCU_DSP_ROWS name, rows, aligned\n"
    "    .pushsection .text.\\name, \"ax\", %progbits\n"
    "    .p2align 2\n"
    "    .global \\name\n"
    "    .type   \\name, %function\n"
    "    .thumb_func\n"
    "\\name:\n"
    "    push    {r4-r11, lr}\n"
    "    sub     sp, sp, #84\n"             /* 36 + 84: the stack stays 8-byte aligned */
    "    str     r0, [sp, #4]\n"
    "    ldr     r1, [r0, #0]\n"            /* xw */
    "    ldr     r2, [r0, #4]\n"            /* wide */
    "    str     r1, [sp, #12]\n"
    "    add     r1, r1, r2, lsl #4\n"
    "    str     r1, [sp, #0]\n"
    "    ldr     r1, [r0, #8]\n"            /* xr */
    "    ldr     r2, [r0, #12]\n"           /* raw */
    "    str     r1, [sp, #16]\n"
    "    add     r1, r1, r2, lsl #3\n"
    "    str     r1, [sp, #8]\n"
    "    ldm     r0, {r1-r12}\n"            /* xw wide xr raw stride tail xt w bias multiplier shift y */
    "    str     r6, [sp, #32]\n"
    "    str     r7, [sp, #36]\n"
    "    str     r5, [sp, #40]\n"
    "    str     r9, [sp, #44]\n"
    "    str     r10, [sp, #48]\n"
    "    str     r11, [sp, #52]\n"
    "    str     r12, [sp, #56]\n"
    "    ldr     r1, [r0, #64]\n"           /* skip */
    "    str     r1, [sp, #76]\n"
    "    .if \\rows == 3\n"
    "    sub     r5, r8, r1\n"              /* w - skip: a group starts at the last row + skip */
    "    .else\n"
    "    sub     r4, r8, r1\n"
    "    .endif\n"
    "    ldr     r1, [r0, #48]\n"           /* out_zp */
    "    str     r1, [sp, #60]\n"
    "    ldr     r1, [r0, #52]\n"           /* lut */
    "    str     r1, [sp, #64]\n"
    "    ldr     r1, [r0, #56]\n"           /* groups */
    "    str     r1, [sp, #68]\n"
    "    adr.w   r1, 40f\n"                 /* the jumps */
    "    ldr     r12, [r0, #52]\n"          /* lut */
    "    ldr     r3, [r1, #24]\n"           /* the output stage: without or with the table, or int32 */
    "    cmp     r12, #0\n"
    "    it      ne\n"
    "    ldrne   r3, [r1, #28]\n"
    "    ldr     r12, [r0, #60]\n"          /* partial */
    "    cmp     r12, #0\n"
    "    it      ne\n"
    "    ldrne   r3, [r1, #32]\n"
    "    str     r3, [sp, #72]\n"
    "    ldr     r12, [r0, #12]\n"          /* raw */
    "    cmp     r6, #0\n"                  /* after the int8 blocks: the tail, or the output stage */
    "    it      ne\n"
    "    ldrne   r3, [r1, #20]\n"
    "    str     r3, [sp, #28]\n"
    "    cmp     r12, #0\n"                 /* after the widened blocks: the int8 blocks, or as above */
    "    it      ne\n"
    "    ldrne   r3, [r1, #16]\n"
    "    str     r3, [sp, #24]\n"
    "    ands    r12, r2, #3\n"             /* at the start: 4 - wide % 4 blocks before the loop's test */
    "    cmp     r2, #0\n"
    "    it      ne\n"
    "    ldrne   r3, [r1, r12, lsl #2]\n"
    "    str     r3, [sp, #20]\n"
    "    ldr     r7, [sp, #68]\n"
    "    cmp     r7, #0\n"
    "    beq.w   99f\n"
    "10:\n"                                 /* one group */
    "    ldr     r12, [sp, #40]\n"          /* stride */
    "    ldr     r3, [sp, #76]\n"           /* skip */
    "    .if \\rows == 3\n"
    "    add     r3, r5, r3\n"
    "    add     r4, r3, r12\n"
    "    add     r5, r4, r12\n"
    "    ldr     r12, [sp, #44]\n"          /* bias */
    "    ldm     r12!, {r0-r2}\n"
    "    .else\n"
    "    add     r3, r4, r3\n"
    "    add     r4, r3, r12\n"
    "    ldr     r12, [sp, #44]\n"
    "    ldm     r12!, {r0-r1}\n"
    "    .endif\n"
    "    str     r12, [sp, #44]\n"
    "    ldr     r6, [sp, #12]\n"
    "    ldr     pc, [sp, #20]\n"
    "11:\n"
    "    MCU_XW\n"
    "    MCU_ROWS \\rows, \\aligned\n"
    "    .if \\aligned\n"
    "12:\n"
    "    MCU_XW\n"
    "    MCU_ROWS \\rows, \\aligned\n"
    "13:\n"
    "    MCU_XW\n"
    "    MCU_ROWS \\rows, \\aligned\n"
    "14:\n"
    "    MCU_XW\n"
    "    MCU_ROWS \\rows, \\aligned\n"
    "    .endif\n"
    "    ldr     r7, [sp]\n"
    "    cmp     r6, r7\n"
    "    bne.w   11b\n"
    "    ldr     pc, [sp, #24]\n"
    "3:\n"                                  /* the int8 blocks */
    "    ldr     r6, [sp, #16]\n"
    "4:\n"
    "    MCU_XR\n"
    "    MCU_ROWS \\rows, \\aligned\n"
    "    ldr     r7, [sp, #8]\n"
    "    cmp     r6, r7\n"
    "    bne.w   4b\n"
    "    ldr     pc, [sp, #28]\n"
    "5:\n"                                  /* the last n % 8 inputs, one by one */
    "    ldr     r7, [sp, #32]\n"
    "    ldr     r6, [sp, #36]\n"
    "6:\n"
    "    ldrsb   r8, [r6], #1\n"
    "    ldrsb   r12, [r3], #1\n"
    "    smlabb  r0, r8, r12, r0\n"
    "    ldrsb   r12, [r4], #1\n"
    "    smlabb  r1, r8, r12, r1\n"
    "    .if \\rows == 3\n"
    "    ldrsb   r12, [r5], #1\n"
    "    smlabb  r2, r8, r12, r2\n"
    "    .endif\n"
    "    subs    r7, r7, #1\n"
    "    bne     6b\n"
    "    ldr     pc, [sp, #72]\n"
    "15:\n"                                 /* the output stage, no table */
    "    MCU_OUT_LOADS \\rows\n"
    "    MCU_OUTS \\rows, 0\n"
    "    b       17f\n"
    "18:\n"                                 /* the output stage with the table */
    "    MCU_OUT_LOADS \\rows\n"
    "    MCU_OUTS \\rows, 1\n"
    "17:\n"
    "    str     r3, [sp, #48]\n"
    "    str     r4, [sp, #52]\n"
    "    str     r9, [sp, #56]\n"
    "    .if \\rows == 2\n"
    "    mov     r4, r5\n"
    "    .endif\n"
    "20:\n"
    "    ldr     r12, [sp, #68]\n"
    "    subs    r12, r12, #1\n"
    "    str     r12, [sp, #68]\n"
    "    bne.w   10b\n"
    "99:\n"                                 /* the job, advanced past the rows done */
    "    ldr     r7, [sp, #4]\n"
    "    ldr     r1, [sp, #76]\n"
    "    .if \\rows == 3\n"
    "    add     r1, r5, r1\n"
    "    .else\n"
    "    add     r1, r4, r1\n"
    "    .endif\n"
    "    str     r1, [r7, #28]\n"
    "    ldr     r1, [sp, #44]\n"
    "    ldr     r2, [sp, #48]\n"
    "    ldr     r3, [sp, #52]\n"
    "    ldr     r4, [sp, #56]\n"
    "    add     r7, r7, #32\n"
    "    stm     r7, {r1-r4}\n"             /* bias multiplier shift y */
    "    movs    r1, #0\n"
    "    str     r1, [r7, #24]\n"           /* groups = 0 */
    "    add     sp, sp, #84\n"
    "    pop     {r4-r11, pc}\n"
    "19:\n"                                 /* the int32 sums to y (an int32_t *), no output stage */
    "    ldr     r9, [sp, #56]\n"
    "    .if \\rows == 3\n"
    "    stm     r9!, {r0-r2}\n"
    "    .else\n"
    "    stm     r9!, {r0-r1}\n"
    "    .endif\n"
    "    str     r9, [sp, #56]\n"
    "    b.w     20b\n"
    "    .p2align 2\n"
    "40:\n"                                 /* entries by wide % 4; int8 blocks; tail; output stages */
    "    .if \\aligned\n"
    "    .word   11b + 1, 14b + 1, 13b + 1, 12b + 1, 3b + 1, 5b + 1, 15b + 1, 18b + 1, 19b + 1\n"
    "    .else\n"
    "    .word   11b + 1, 11b + 1, 11b + 1, 11b + 1, 3b + 1, 5b + 1, 15b + 1, 18b + 1, 19b + 1\n"
    "    .endif\n"
    "    .size   \\name, . - \\name\n"
    "    .popsection\n"
    "    .endm\n"

    "    MCU_DSP_ROWS mcu_dsp_rows3, 3, 1\n"
    "    MCU_DSP_ROWS mcu_dsp_rows3_u, 3, 0\n"
    "    MCU_DSP_ROWS mcu_dsp_rows2, 2, 1\n"
    "    MCU_DSP_ROWS mcu_dsp_rows2_u, 2, 0\n");

#else
typedef int mcu_dot_dsp_empty_t; /* ISO C: a translation unit must not be empty */
#endif
