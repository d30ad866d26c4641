/* The conv stem's 3x3 convolution (stride 1, padding 1) + ReLU, one output row at a time from the
 * three input rows of its window, so that the row-by-row schedule needs no more of the input map.
 * In HWC, the window's part in one input row is (kx1 - kx0) * C contiguous pixels, and so are its
 * weights ([out][ky][kx][c]): one dot product per row of the window (mcu_dot4_s8: SMLAD on a core
 * with the DSP extension, plain C elsewhere; the same int32 sums). Taps outside the map (padding)
 * are skipped and corrected for at the border (in_zp * their weights). */
#include "mcu_kernels.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

/* in_zp times the weights of output channel o on the taps that fall outside the map */
static int32_t padding_sum(const mcu_conv3x3_t *c, int32_t o, const int8_t *const rows[3], int32_t kx0, int32_t kx1)
{
    const int32_t ch = c->in_chans;
    const int8_t *w = c->f.weight + o * c->f.in;
    int32_t sum = 0;
    for (int32_t ky = 0; ky < 3; ky++)
        for (int32_t kx = 0; kx < 3; kx++)
            if (!rows[ky] || kx < kx0 || kx >= kx1)
                for (int32_t i = 0; i < ch; i++) sum += w[(ky * 3 + kx) * ch + i];
    return sum * c->in_zp;
}

static inline int8_t conv_out(const mcu_factor_t *f, int32_t o, int32_t acc)
{
    const int32_t v = mcu_requantize32(acc, f->multiplier[o], f->shift[o]) + f->out_zp;
    return mcu_sat8(v < f->out_zp ? f->out_zp : v); /* ReLU: the real zero is out_zp */
}

void mcu_conv3x3_row(const mcu_conv3x3_t *c, const int8_t *above, const int8_t *mid, const int8_t *below,
                     int8_t *out)
{
    const mcu_factor_t *f = &c->f;
    const int8_t *const rows[3] = {above, mid, below};
    const int32_t w = c->width, ch = c->in_chans, e = f->out, k = f->in;
    const int32_t border_rows = !above || !below;
    for (int32_t x = 0; x < w; x++) {
        const int32_t kx0 = x == 0, kx1 = x == w - 1 ? 2 : 3, len = (kx1 - kx0) * ch;
        const int32_t correct = c->in_zp != 0 && (border_rows || kx0 || kx1 < 3);
        const int32_t start = (x - 1 + kx0) * ch; /* the window's first pixel in an input row */
        int8_t *dst = out + x * e;
        int32_t o = 0;
        for (; o + 4 <= e; o += 4) {
            int32_t acc[4] = {f->bias[o], f->bias[o + 1], f->bias[o + 2], f->bias[o + 3]};
            for (int32_t ky = 0; ky < 3; ky++)
                if (rows[ky]) mcu_dot4_s8(rows[ky] + start, f->weight + o * k + (ky * 3 + kx0) * ch, k, len, acc);
            for (int32_t r = 0; r < 4; r++) {
                if (correct) acc[r] += padding_sum(c, o + r, rows, kx0, kx1);
                dst[o + r] = conv_out(f, o + r, acc[r]);
            }
        }
        for (; o < e; o++) {
            int32_t acc = f->bias[o];
            for (int32_t ky = 0; ky < 3; ky++)
                if (rows[ky]) acc = mcu_dot_s8(rows[ky] + start, f->weight + o * k + (ky * 3 + kx0) * ch, len, acc);
            if (correct) acc += padding_sum(c, o, rows, kx0, kx1);
            dst[o] = conv_out(f, o, acc);
        }
    }
}
