/* The stem: a p x p, stride p int8 convolution read straight from the HWC image (no im2col buffer:
 * each patch row segment of p*C pixels is one contiguous dot product; padded pixels are zeros that
 * are skipped), the cls row, and the position embedding. Tokens are written one at a time, patch
 * row by patch row, so that with patch-embedding decomposition they may overwrite image strips that
 * are already consumed; the cls row is written last. */
#include "mcu_kernels.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline int8_t token_out(const mcu_stem_t *s, int32_t o, int32_t acc)
{
    const mcu_factor_t *f = &s->proj;
    return mcu_ssat8(mcu_requant32(acc, f->multiplier[o], f->shift[o]) + f->out_zp);
}

void mcu_patch_embed(const mcu_stem_t *s, const int8_t *image, int8_t *x, int32_t add_pos)
{
    const mcu_factor_t *f = &s->proj;
    const int32_t e = f->out, k = f->in, c = s->channels, p = s->patch, w = s->img_size;
    const int32_t cls = s->cls_token != 0;
    for (int32_t gy = 0; gy < s->grid; gy++) {
        const int32_t y0 = gy * p - s->pad, ky0 = clamp(-y0, 0, p), ky1 = clamp(w - y0, 0, p);
        for (int32_t gx = 0; gx < s->grid; gx++) {
            const int32_t x0 = gx * p - s->pad, kx0 = clamp(-x0, 0, p), kx1 = clamp(w - x0, 0, p);
            const int32_t token = cls + gy * s->grid + gx, len = (kx1 - kx0) * c;
            const int8_t *pos = s->pos_embed + token * e;
            int8_t *out = x + token * e;
            int32_t o = 0;
            for (; o + 4 <= e; o += 4) {
                int32_t acc[4] = {f->bias[o], f->bias[o + 1], f->bias[o + 2], f->bias[o + 3]};
                for (int32_t ky = ky0; ky < ky1 && len > 0; ky++)
                    mcu_dot4_s8(image + ((y0 + ky) * w + x0 + kx0) * c, f->weight + o * k + (ky * p + kx0) * c,
                                k, len, acc);
                for (int32_t r = 0; r < 4; r++) out[o + r] = token_out(s, o + r, acc[r]);
            }
            for (; o < e; o++) {
                int32_t acc = f->bias[o];
                for (int32_t ky = ky0; ky < ky1 && len > 0; ky++)
                    acc = mcu_dot_s8(image + ((y0 + ky) * w + x0 + kx0) * c, f->weight + o * k + (ky * p + kx0) * c,
                                     len, acc);
                out[o] = token_out(s, o, acc);
            }
            if (add_pos) mcu_add_row(&s->pos_add, out, pos, out, e); /* the fast add, in place */
        }
    }
    if (cls) {
        if (add_pos) mcu_add_row(&s->pos_add, s->cls_token, s->pos_embed, x, e);
        else
            for (int32_t o = 0; o < e; o++) x[o] = s->cls_token[o];
    }
}

void mcu_pos_add(const mcu_stem_t *s, const int8_t *x, int8_t *y)
{
    const int32_t n = (s->grid * s->grid + (s->cls_token != 0)) * s->proj.out;
    mcu_add_row(&s->pos_add, x, s->pos_embed, y, n);
}
