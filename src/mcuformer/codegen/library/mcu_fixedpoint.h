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

#endif
