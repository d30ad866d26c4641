/* Token-wise int8 matmuls with the output stage fused: requantisation, and optionally a table
 * (GELU) or a residual add, so that no int32 or pre-activation vector is ever stored. */
#include "mcu_kernels.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

static inline int8_t output_stage(const mcu_factor_t *f, int32_t o, int32_t acc, int32_t i, const int8_t *lut,
                                  const int8_t *residual, const mcu_add_t *add)
{
    const int8_t v = mcu_sat8(mcu_requantize32(acc, f->multiplier[o], f->shift[o]) + f->out_zp);
    if (lut) return lut[v + 128];
    if (residual) return mcu_add_s8(add, residual[i], v);
    return v;
}

void mcu_factor_rows(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y,
                     const int8_t *lut, const int8_t *residual, const mcu_add_t *add)
{
    const int32_t n = f->in;
    int32_t i = 0;
    for (; i + 4 <= count; i += 4) {
        const int32_t o = first + i;
        int32_t acc[4] = {f->bias[o], f->bias[o + 1], f->bias[o + 2], f->bias[o + 3]};
        mcu_dot4_s8(x, f->weight + o * n, n, n, acc);
        for (int32_t r = 0; r < 4; r++) y[i + r] = output_stage(f, o + r, acc[r], i + r, lut, residual, add);
    }
    for (; i < count; i++) {
        const int32_t o = first + i;
        y[i] = output_stage(f, o, mcu_dot_s8(x, f->weight + o * n, n, f->bias[o]), i, lut, residual, add);
    }
}

void mcu_linear_row(const mcu_linear_t *l, const int8_t *x, int8_t *mid, int8_t *y, const int8_t *lut,
                    const int8_t *residual, const mcu_add_t *add)
{
    if (l->down.weight) {
        mcu_factor_rows(&l->down, x, 0, l->down.out, mid, 0, 0, 0);
        x = mid;
    }
    mcu_factor_rows(&l->up, x, 0, l->up.out, y, lut, residual, add);
}
