/* The conv stem's 3x3 convolution (stride 1, padding 1) + ReLU, one output row at a time from the
 * three input rows of its window, so that the row-by-row schedule needs no more of the input map.
 *
 * Per output pixel the 3x3xC window is gathered into `col` (9*C bytes of arena scratch; in HWC each
 * window row is 3*C contiguous bytes, and padded taps hold in_zp, a real zero, which the bias folded
 * over the whole window cancels), then all output channels are one int8 matmul by mcu_factor_rows
 * (mcu_linear.c: its assembly on a core with the DSP extension, portable C elsewhere; the same bits),
 * weights [out][ky][kx][c]. ReLU is the clamp of the int8 outputs at out_zp (the real zero). */
#include <string.h>

#include "mcu_kernels.h"

static void gather(const mcu_conv3x3_t *c, const int8_t *const rows[3], int32_t x, int8_t *col)
{
    const int32_t ch = c->in_chans, w = c->width;
    for (int32_t ky = 0; ky < 3; ky++, col += 3 * ch) {
        const int8_t *r = rows[ky];
        if (!r) {
            memset(col, c->in_zp, (size_t)(3 * ch));
            continue;
        }
        const int32_t kx0 = x == 0, kx1 = x == w - 1 ? 2 : 3;
        if (kx0) memset(col, c->in_zp, (size_t)ch);
        memcpy(col + kx0 * ch, r + (x - 1 + kx0) * ch, (size_t)((kx1 - kx0) * ch));
        if (kx1 < 3) memset(col + 2 * ch, c->in_zp, (size_t)ch);
    }
}

void mcu_conv3x3_row(const mcu_conv3x3_t *c, const int8_t *above, const int8_t *mid, const int8_t *below,
                     int8_t *out, int8_t *col)
{
    const int8_t *const rows[3] = {above, mid, below};
    const mcu_factor_t *f = &c->f;
    const int32_t e = f->out;
    const int8_t zp = (int8_t)f->out_zp;
    for (int32_t x = 0; x < c->width; x++) {
        int8_t *dst = out + x * e;
        gather(c, rows, x, col);
        mcu_factor_rows(f, col, 0, e, dst, 0, 0, 0);
        for (int32_t o = 0; o < e; o++) dst[o] = dst[o] < zp ? zp : dst[o]; /* ReLU */
    }
}
