/* Attention rows with 2-D relative position (the official AutoFormer/MCUFormer form), shared by the
 * layer-wise and the fused kernels. Key j of query row t adds q . R_k[dv] + q . R_k[dh] to the score
 * accumulator, and the AV accumulator gains sum_r P_r R_v[r], P_r the sum of (p_j + 128) over the keys
 * whose vertical or horizontal row is r: the tables are never expanded to N x N. Both use the int32
 * scratch rel[2(2 clip + 2)] of the op (first the q . R_k dot products, then the per-row sums).
 * The keys are walked grid row by grid row, so no division per key. The dot products are mcu_dot_s8's
 * and the AV sums mcu_av_row_sums' (each with its DSP inner loop on the M7). */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

static inline int32_t clip_row(int32_t d, int32_t clip)
{
    return (d < -clip ? -clip : d > clip ? clip : d) + clip + 1;
}

/* the vertical table row of each key grid row (dv[gy]) and the horizontal one of each key column (dh[gx],
 * offset by 2 clip + 2) for patch query a; the cls token uses rows 0 and 2 clip + 2 */
typedef struct {
    int32_t half, clip, side, cls, ay, ax, query_is_cls;
} rel_walk_t;

static rel_walk_t rel_walk(const mcu_block_t *b, int32_t t)
{
    rel_walk_t w = {2 * b->rel_clip + 2, b->rel_clip, b->grid_side, b->cls, 0, 0, t < b->cls};
    if (!w.query_is_cls) {
        w.ay = (t - b->cls) / w.side;
        w.ax = (t - b->cls) % w.side;
    }
    return w;
}

void mcu_scores_row_rel(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores,
                        int32_t t, int32_t *rel)
{
    const int32_t hd = b->head_dim, rows = 2 * (2 * b->rel_clip + 2);
    const int32_t multiplier = b->qk_multiplier, shift = b->qk_shift, zp = b->score_zp;
    const rel_walk_t w = rel_walk(b, t);
    for (int32_t r = 0; r < rows; r++) rel[r] = mcu_dot_s8(q, b->rel_key + r * hd, hd, 0);
    int32_t j = 0;
    if (w.cls) {
        scores[0] = mcu_ssat8(mcu_requant32(mcu_dot_s8(q, k, hd, rel[0] + rel[w.half]), multiplier, shift) + zp);
        j = 1;
    }
    for (int32_t gy = 0; gy < w.side; gy++) {
        const int32_t dv = w.query_is_cls ? 0 : clip_row(gy - w.ay, w.clip);
        for (int32_t gx = 0; gx < w.side; gx++, j++) {
            const int32_t dh = w.query_is_cls ? w.half : w.half + clip_row(gx - w.ax, w.clip);
            const int32_t acc = mcu_dot_s8(q, k + j * stride, hd, rel[dv] + rel[dh]);
            scores[j] = mcu_ssat8(mcu_requant32(acc, multiplier, shift) + zp);
        }
    }
}

void mcu_av_row_rel(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                    int32_t t, int32_t *rel)
{
    const int32_t rows = 2 * (2 * b->rel_clip + 2);
    const rel_walk_t w = rel_walk(b, t);
    for (int32_t r = 0; r < rows; r++) rel[r] = 0;
    int32_t j = 0;
    if (w.cls) {
        rel[0] += probs[0] + 128;
        rel[w.half] += probs[0] + 128;
        j = 1;
    }
    for (int32_t gy = 0; gy < w.side; gy++) {
        const int32_t dv = w.query_is_cls ? 0 : clip_row(gy - w.ay, w.clip);
        for (int32_t gx = 0; gx < w.side; gx++, j++) {
            const int32_t dh = w.query_is_cls ? w.half : w.half + clip_row(gx - w.ax, w.clip);
            rel[dv] += probs[j] + 128;
            rel[dh] += probs[j] + 128;
        }
    }
    mcu_av_row_sums(b, probs, v, stride, o, rel);
}
