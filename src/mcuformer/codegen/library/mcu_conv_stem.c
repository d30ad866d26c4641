/* The convolutional tokenizer's schedules. Layer-wise: one call per stage over whole HWC maps.
 * Row by row: one call for the whole stem; each stage's output but the last lives in a ring of three
 * rows, and a row is computed when the next stage first asks for it (a 3x3 window, of stride 1 or
 * 2, reads rows c-1, c, c+1 and asks for them in that order, so the ring always holds them). The
 * last stage writes the token matrix: pixel rows after the cls row, the cls row last, and with
 * add_pos each token plus its position embedding. */
#include "mcu_kernels.h"

#define RING_ROWS 3

static int32_t in_channels(const mcu_conv_stem_t *s, int32_t k)
{
    return k == 0 ? s->conv[0].in_chans : s->stage[k - 1].channels;
}

/* output row y of stage k from its three input rows (0: padding) */
static void stage_row(const mcu_conv_stem_t *s, int32_t k, const int8_t *const in[3], int8_t *out, int8_t *col)
{
    const mcu_stem_stage_t *st = &s->stage[k];
    if (st->kind == 0)
        mcu_conv3x3_row(&s->conv[st->layer], in[0], in[1], in[2], out, col);
    else
        mcu_maxpool3x3s2_row(in[0], in[1], in[2], out, st->in_size, st->channels);
}

static int32_t centre_row(const mcu_stem_stage_t *st, int32_t y)
{
    return st->kind == 0 ? y : 2 * y;
}

static void finish_tokens(const mcu_conv_stem_t *s, int8_t *x, int32_t add_pos)
{
    const int32_t e = s->dim, cls = s->cls_token != 0;
    if (add_pos) mcu_add_row(&s->pos_add, x + cls * e, s->pos_embed + cls * e, x + cls * e, s->grid * s->grid * e);
    if (cls)
        for (int32_t o = 0; o < e; o++)
            x[o] = add_pos ? mcu_add_s8(&s->pos_add, s->cls_token[o], s->pos_embed[o]) : s->cls_token[o];
}

void mcu_conv_stem_stage(const mcu_conv_stem_t *s, int32_t k, const int8_t *in, int8_t *out, int8_t *col,
                         int32_t add_pos)
{
    const mcu_stem_stage_t *st = &s->stage[k];
    const int32_t last = k == s->stages - 1;
    const int32_t in_row = st->in_size * in_channels(s, k), out_row = st->out_size * st->channels;
    int8_t *dst = last ? out + (s->cls_token != 0) * s->dim : out;
    for (int32_t y = 0; y < st->out_size; y++) {
        const int32_t c = centre_row(st, y);
        const int8_t *const rows[3] = {c > 0 ? in + (c - 1) * in_row : 0, in + c * in_row,
                                       c + 1 < st->in_size ? in + (c + 1) * in_row : 0};
        stage_row(s, k, rows, dst + y * out_row, col);
    }
    if (last) finish_tokens(s, out, add_pos);
}

typedef struct {
    const mcu_conv_stem_t *s;
    const int8_t *image;
    int8_t *ring[3];
    int8_t *col;
    int32_t done[3]; /* rows of each ring's stage computed so far */
} stem_rows_t;

static void ensure(stem_rows_t *r, int32_t k, int32_t y);

/* row y of stage k's input, or 0 outside the map */
static const int8_t *input_row(stem_rows_t *r, int32_t k, int32_t y)
{
    const mcu_stem_stage_t *st = &r->s->stage[k];
    if (y < 0 || y >= st->in_size) return 0;
    if (k == 0) return r->image + y * st->in_size * r->s->conv[0].in_chans;
    ensure(r, k - 1, y);
    const mcu_stem_stage_t *prev = &r->s->stage[k - 1];
    return r->ring[k - 1] + (y % RING_ROWS) * prev->out_size * prev->channels;
}

static void compute_row(stem_rows_t *r, int32_t k, int32_t y, int8_t *out)
{
    const int32_t c = centre_row(&r->s->stage[k], y);
    const int8_t *rows[3];
    for (int32_t i = 0; i < 3; i++) rows[i] = input_row(r, k, c - 1 + i); /* in order: c+1 may evict c-2 */
    stage_row(r->s, k, rows, out, r->col);
}

/* compute stage k's rows up to y into its ring */
static void ensure(stem_rows_t *r, int32_t k, int32_t y)
{
    const mcu_stem_stage_t *st = &r->s->stage[k];
    while (r->done[k] <= y) {
        const int32_t row = r->done[k];
        compute_row(r, k, row, r->ring[k] + (row % RING_ROWS) * st->out_size * st->channels);
        r->done[k] = row + 1;
    }
}

void mcu_conv_stem_rows(const mcu_conv_stem_t *s, const int8_t *image, int8_t *x, int8_t *ring0, int8_t *ring1,
                        int8_t *ring2, int8_t *col, int32_t add_pos)
{
    stem_rows_t r = {s, image, {ring0, ring1, ring2}, col, {0, 0, 0}};
    const int32_t last = s->stages - 1, row = s->grid * s->dim;
    int8_t *tokens = x + (s->cls_token != 0) * s->dim;
    for (int32_t y = 0; y < s->grid; y++) compute_row(&r, last, y, tokens + y * row);
    finish_tokens(s, x, add_pos);
}

void mcu_conv_stem_pos_add(const mcu_conv_stem_t *s, const int8_t *x, int8_t *y)
{
    mcu_add_row(&s->pos_add, x, s->pos_embed, y, (s->grid * s->grid + (s->cls_token != 0)) * s->dim);
}
