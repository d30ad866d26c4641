/* Fixed-point helpers shared by the kernels (docs/quantization.md): CMSIS-NN's arm_nn_requantize
 * (double rounding) evaluated in 64 bits, saturation, rounded division, integer square root. */
#ifndef MCU_FIXEDPOINT_H
#define MCU_FIXEDPOINT_H

#include <stdint.h>

/* requant(v) = divide_by_pot(doubling_high_mult(v << left, M), right), ties away from zero. Shifts
 * of negative numbers are written as multiplications (a left shift of a negative value is undefined
 * in C); the right shifts are arithmetic, as gcc and clang define them. */
static inline int32_t mcu_requantize(int64_t v, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t high = (v * ((int64_t)1 << left) * multiplier + ((int64_t)1 << 30)) >> 31;
    const int64_t mask = ((int64_t)1 << right) - 1;
    const int64_t threshold = (mask >> 1) + (high < 0);
    return (int32_t)((high >> right) + ((high & mask) > threshold));
}

/* The same for an int32 accumulator, the kernels' hot path: one 32x32->64 multiply. With a right
 * shift |v * M| < 2^62, so the high word fits int32; with a left shift the result may pass int32 only
 * when it saturates int8 anyway, so it is clamped to int32 first. */
static inline int32_t mcu_requantize32(int32_t v, int32_t multiplier, int32_t shift)
{
    const int64_t product = (int64_t)v * multiplier;
    int32_t high, right = 0;
    if (shift > 0) {
        const int64_t h = (product * ((int64_t)1 << shift) + ((int64_t)1 << 30)) >> 31;
        high = h > INT32_MAX ? INT32_MAX : (h < INT32_MIN ? INT32_MIN : (int32_t)h);
    } else {
        high = (int32_t)((product + ((int64_t)1 << 30)) >> 31);
        right = -shift;
    }
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (high < 0);
    return (high >> right) + ((high & mask) > threshold);
}

static inline int8_t mcu_sat8(int32_t v)
{
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

/* n / d (d > 0) rounded half away from zero */
static inline int64_t mcu_rounded_div(int64_t n, int64_t d)
{
    return n >= 0 ? (n + d / 2) / d : -((-n + d / 2) / d);
}

/* floor(sqrt(v)), bit by bit */
static inline uint32_t mcu_isqrt64(uint64_t v)
{
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

/* ---- the fast path of the requantisation, shared by the kernels' output stages ----
 *
 * For shift <= 0 and -2^30 <= v < 2^30 (every accumulator of a real layer):
 *   dhm(v, M) = (v*M + 2^30) >> 31 = SMMULR(2v, M), as (2vM + 2^31) >> 32 (2v fits int32);
 *   divide_by_pot(h, r) = (h + ((2^r - (h < 0)) >> 1)) >> r, the ties-away-from-zero rounding as one
 *   add: for h >= 0 it adds 2^(r-1), for h < 0 2^(r-1) - 1, and 0 for r = 0. |h| <= |v| < 2^30 and
 *   the addend <= 2^30, so the sum does not overflow.
 * Any other case (a left shift, a huge accumulator) takes the exact general function. The assembly
 * of mcu_dot_dsp.c does the same. */
#if defined(__GNUC__)
#define MCU_FP_INLINE inline __attribute__((always_inline))
#define MCU_FP_NOINLINE __attribute__((noinline, unused))
#define MCU_FP_LIKELY(c) __builtin_expect(!!(c), 1)
#else
#define MCU_FP_INLINE inline
#define MCU_FP_NOINLINE inline
#define MCU_FP_LIKELY(c) (c)
#endif

static MCU_FP_INLINE int32_t mcu_dhm_small(int32_t v, int32_t multiplier)
{
#if defined(__ARM_FEATURE_DSP) && !defined(MCU_PORTABLE)
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(v * 2), "r"(multiplier));
    return r;
#else
    return (int32_t)(((int64_t)v * multiplier + ((int64_t)1 << 30)) >> 31);
#endif
}

/* nonzero when the fast path applies: v in [-2^30, 2^30) and shift <= 0 (right = -shift >= 0) */
static MCU_FP_INLINE int mcu_fast_requant_ok(int32_t v, uint32_t right)
{
    return ((((uint32_t)v + 0x40000000u) | right) & 0x80000000u) == 0;
}

static MCU_FP_INLINE int32_t mcu_fast_requant(int32_t v, int32_t multiplier, uint32_t right)
{
    const int32_t high = mcu_dhm_small(v, multiplier);
    const uint32_t half = (((uint32_t)1 << right) - ((uint32_t)high >> 31)) >> 1;
    return (high + (int32_t)half) >> right;
}

/* the general case, out of line (rare) */
static MCU_FP_NOINLINE int32_t mcu_requantize32_slow(int32_t v, int32_t multiplier, int32_t shift)
{
    return mcu_requantize32(v, multiplier, shift);
}

/* = mcu_requantize32(v, multiplier, shift) */
static MCU_FP_INLINE int32_t mcu_requant32(int32_t v, int32_t multiplier, int32_t shift)
{
    const uint32_t right = 0u - (uint32_t)shift;
    if (MCU_FP_LIKELY(mcu_fast_requant_ok(v, right))) return mcu_fast_requant(v, multiplier, right);
    return mcu_requantize32_slow(v, multiplier, shift);
}

/* = mcu_sat8(v), one SSAT where the core has it */
static MCU_FP_INLINE int8_t mcu_ssat8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && !defined(MCU_PORTABLE)
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
    return (int8_t)r;
#else
    return mcu_sat8(v);
#endif
}

/* floor(sqrt(v)) of a 32-bit value, bit by bit (= mcu_isqrt64 for v < 2^32) */
static inline uint32_t mcu_isqrt32(uint32_t v)
{
    uint32_t root = 0, bit = (uint32_t)1 << 30;
    while (bit > v) bit >>= 2;
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

#endif
