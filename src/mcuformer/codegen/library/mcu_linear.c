/* Token-wise int8 matmuls with the output stage fused: requantisation, and optionally a table
 * (GELU) or a residual add, so that no int32 or pre-activation vector is ever stored.
 *
 * mcu_factor_rows() picks the output stage once per call, not per output. The int32 sums of a few
 * output channels at a time are requantised straight away; with a residual add, a chunk of
 * requantised outputs (MCU_RESIDUAL_CHUNK bytes of stack) then goes through the add. With
 * MCU_DSP_ASM (Cortex-M with the DSP extension, mcu_dot.h) the sums and the requantisation come
 * from the assembly of mcu_dot_dsp.c, three rows per step, after the input has been widened once per
 * call into a stack buffer; elsewhere from mcu_dot4_s8 / mcu_dot_s8. All paths give the same bits. */
#include "mcu_kernels.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

#if defined(__GNUC__)
#define MCU_ALWAYS_INLINE inline __attribute__((always_inline))
#define MCU_NOINLINE __attribute__((noinline))
#else
#define MCU_ALWAYS_INLINE inline
#define MCU_NOINLINE
#endif

/* A residual add's requantised outputs go through this many bytes of stack (a multiple of 3). */
#ifndef MCU_RESIDUAL_CHUNK
#define MCU_RESIDUAL_CHUNK 96
#endif

#ifdef MCU_DSP_ASM
/* Inputs widened to int16 pairs on the stack once per call (mcu_widen_s8): 2 bytes each, so the
 * default 512 takes 1 KB of the board's 8 KB stack reserve (like every kernel's locals it is stack,
 * not arena). */
#ifndef MCU_XW_INPUTS
#define MCU_XW_INPUTS 512
#endif
/* Widening costs ~1.5 instructions per input once; reading int8 costs 5 instructions per 8 inputs
 * per three rows: with fewer output rows than this the input is not widened. */
#ifndef MCU_XW_MIN_ROWS
#define MCU_XW_MIN_ROWS 8
#endif
/* An input longer than MCU_XW_INPUTS is read in parts of MCU_XW_INPUTS, each widened in turn, for
 * this many output rows at a time, whose int32 sums wait on the stack between the parts (4 bytes
 * each): the widening is then paid once per MCU_KSPLIT_ROWS rows (~0.03 instructions per MAC) instead
 * of reading the rest as int8 (~0.3 per MAC more on that part). */
#ifndef MCU_KSPLIT_ROWS
#define MCU_KSPLIT_ROWS 48
#endif
#if MCU_XW_INPUTS % 8 != 0 || MCU_XW_INPUTS < 8
#error "MCU_XW_INPUTS must be a positive multiple of 8"
#endif
#if MCU_KSPLIT_ROWS % 3 != 0 || MCU_KSPLIT_ROWS < 6 || MCU_KSPLIT_ROWS > MCU_RESIDUAL_CHUNK
#error "MCU_KSPLIT_ROWS must be a multiple of 3, at least 6 and at most MCU_RESIDUAL_CHUNK"
#endif
#endif

/* The requantisation takes the fast path of mcu_fixedpoint.h (mcu_requant32); a residual add goes
 * through mcu_add_row (mcu_elementwise.c), which takes it for every add that the quantiser makes. */
/* one output channel: requantised, + out_zp, saturated, through the table when there is one */
static MCU_ALWAYS_INLINE int8_t output_stage(const mcu_factor_t *f, int32_t o, int32_t acc, const int8_t *lut)
{
    const int8_t v = mcu_ssat8(mcu_requant32(acc, f->multiplier[o], f->shift[o]) + f->out_zp);
    return lut ? lut[v + 128] : v;
}

#ifdef MCU_DSP_ASM

/* `groups` groups of three rows, then `pairs` groups of two, with the output stage (plain or table),
 * in assembly; the job advances past them */
static void rows_asm(mcu_dsp_job_t *job, int32_t groups, int32_t pairs)
{
    const int aligned = (((uintptr_t)job->w | (uint32_t)job->stride) & 3u) == 0;
    if (groups) {
        job->groups = groups;
        if (aligned) mcu_dsp_rows3(job);
        else mcu_dsp_rows3_u(job);
    }
    if (pairs) {
        job->groups = pairs;
        if (aligned) mcu_dsp_rows2(job);
        else mcu_dsp_rows2_u(job);
    }
}

/* the input part x[from, from + len) for the kernels: its first `wide` 8-input blocks (at most
 * MCU_XW_INPUTS / 8) widened into xw, the rest int8 */
static void job_input(mcu_dsp_job_t *job, const int8_t *x, int32_t *xw, int32_t n, int32_t from, int32_t len,
                      int32_t wide)
{
    const int32_t blocks = len >> 3;
    job->wide = blocks < wide ? blocks : wide;
    mcu_widen_s8(x + from, xw, 8 * job->wide);
    job->xw = xw;
    job->xr = x + from + 8 * job->wide;
    job->raw = blocks - job->wide;
    job->tail = len & 7;
    job->xt = x + from + 8 * blocks;
    job->skip = n - len;
}

void mcu_factor_rows(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y,
                     const int8_t *lut, const int8_t *residual, const mcu_add_t *add)
{
    const int32_t n = f->in;
    if (residual && lut) residual = 0; /* the table wins, as in the portable path */
    if (count == 1) {
        const int32_t acc = mcu_dot_s8(x, f->weight + first * n, n, f->bias[first]);
        const int8_t v = output_stage(f, first, acc, lut);
        if (residual) mcu_add_row(add, residual, &v, y, 1);
        else y[0] = v;
        return;
    }
    if (count < 1) return;
    /* rows in groups of three; a remainder of 1 or 2 as two groups of two or one */
    const int32_t rest = count % 3, pairs = rest == 0 ? 0 : (rest == 2 ? 1 : 2), groups = (count - 2 * pairs) / 3;
    const int widen = count >= MCU_XW_MIN_ROWS;
    int32_t xw[MCU_XW_INPUTS / 2]; /* the widened input: stack, MCU_XW_INPUTS * 2 bytes (see above) */
    int8_t plain[MCU_RESIDUAL_CHUNK]; /* requantised outputs before the residual add */
    mcu_dsp_job_t job;
    job.stride = n;
    job.out_zp = f->out_zp;
    job.lut = lut ? lut + 128 : 0;
    job.partial = 0;

    /* one pass over the input, widened as far as MCU_XW_INPUTS (where the rest is short, reading it
     * as int8 costs less than a second pass) */
    if (!widen || n - MCU_XW_INPUTS < MCU_XW_INPUTS / 4) {
        job_input(&job, x, xw, n, 0, n, widen ? MCU_XW_INPUTS / 8 : 0);
        job.w = f->weight + first * n;
        job.bias = f->bias + first;
        job.multiplier = f->multiplier + first;
        job.shift = f->shift + first;
        if (!residual) {
            job.y = y;
            rows_asm(&job, groups, pairs);
            return;
        }
        /* the residual add: requantised outputs into a stack chunk, then the add (y may be residual) */
        int32_t i = 0;
        for (int32_t left = groups; left > 0;) {
            const int32_t g = left < MCU_RESIDUAL_CHUNK / 3 ? left : MCU_RESIDUAL_CHUNK / 3;
            job.y = plain;
            rows_asm(&job, g, 0);
            mcu_add_row(add, residual + i, plain, y + i, 3 * g);
            i += 3 * g;
            left -= g;
        }
        if (pairs) {
            job.y = plain;
            rows_asm(&job, 0, pairs);
            mcu_add_row(add, residual + i, plain, y + i, 2 * pairs);
        }
        return;
    }

    /* A long input (> MCU_XW_INPUTS) and many rows: MCU_KSPLIT_ROWS rows at a time, one pass per
     * MCU_XW_INPUTS inputs, each widened in turn; the int32 sums between the passes stay on the
     * stack (part), the last pass requantises. */
    int32_t part[MCU_KSPLIT_ROWS];
    const int32_t parts = (n + MCU_XW_INPUTS - 1) / MCU_XW_INPUTS;
    for (int32_t i = 0, g_left = groups, p_left = pairs; g_left + p_left > 0;) {
        const int32_t g = g_left < MCU_KSPLIT_ROWS / 3 ? g_left : MCU_KSPLIT_ROWS / 3;
        const int32_t p = g == g_left && 3 * g + 2 * p_left <= MCU_KSPLIT_ROWS ? p_left : 0;
        const int32_t o = first + i, rows = 3 * g + 2 * p;
        for (int32_t c = 0; c < parts; c++) {
            const int32_t from = c * MCU_XW_INPUTS, last = c == parts - 1;
            job_input(&job, x, xw, n, from, last ? n - from : MCU_XW_INPUTS, MCU_XW_INPUTS / 8);
            job.w = f->weight + o * n + from;
            job.bias = c == 0 ? f->bias + o : part;
            job.multiplier = f->multiplier + o;
            job.shift = f->shift + o;
            job.partial = !last;
            job.y = !last ? (int8_t *)part : (residual ? plain : y + i);
            rows_asm(&job, g, p);
        }
        if (residual) mcu_add_row(add, residual + i, plain, y + i, rows);
        i += rows;
        g_left -= g;
        p_left -= p;
    }
}

#else /* portable C, or the DSP intrinsics of mcu_dot.h */

/* count rows from first into y: four at a time, then one by one */
static MCU_ALWAYS_INLINE void rows_c(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count,
                                     int8_t *y, const int8_t *lut)
{
    const int32_t n = f->in;
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const int32_t o = first + i;
        int32_t acc[4] = {f->bias[o], f->bias[o + 1], f->bias[o + 2], f->bias[o + 3]};
        mcu_dot4_s8(x, f->weight + o * n, n, n, acc);
        for (int32_t r = 0; r < 4; r++) y[i + r] = output_stage(f, o + r, acc[r], lut);
    }
    for (; i < count; i++) {
        const int32_t o = first + i;
        y[i] = output_stage(f, o, mcu_dot_s8(x, f->weight + o * n, n, f->bias[o]), lut);
    }
}

static MCU_NOINLINE void rows_plain(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y)
{
    rows_c(f, x, first, count, y, 0);
}

static MCU_NOINLINE void rows_table(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y,
                                    const int8_t *lut)
{
    rows_c(f, x, first, count, y, lut);
}

void mcu_factor_rows(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y,
                     const int8_t *lut, const int8_t *residual, const mcu_add_t *add)
{
    if (lut) {
        rows_table(f, x, first, count, y, lut);
    } else if (!residual) {
        rows_plain(f, x, first, count, y);
    } else {
        /* requantised outputs into a stack chunk, then the add (y may be residual) */
        int8_t plain[MCU_RESIDUAL_CHUNK];
        for (int32_t i = 0; i < count; i += MCU_RESIDUAL_CHUNK) {
            const int32_t rows = count - i < MCU_RESIDUAL_CHUNK ? count - i : MCU_RESIDUAL_CHUNK;
            rows_plain(f, x, first + i, rows, plain);
            mcu_add_row(add, residual + i, plain, y + i, rows);
        }
    }
}

#endif

void mcu_linear_row(const mcu_linear_t *l, const int8_t *x, int8_t *mid, int8_t *y, const int8_t *lut,
                    const int8_t *residual, const mcu_add_t *add)
{
    if (l->down.weight) {
        mcu_factor_rows(&l->down, x, 0, l->down.out, mid, 0, 0, 0);
        x = mid;
    }
    mcu_factor_rows(&l->up, x, 0, l->up.out, y, lut, residual, add);
}
