/* Attention rows with 2-D relative position (the official AutoFormer/MCUFormer form), shared by the
 * layer-wise and the fused kernels. Key j of query row t adds q . R_k[dv] + q . R_k[dh] to the score
 * accumulator, and the AV accumulator gains sum_r P_r R_v[r], P_r the sum of (p_j + 128) over the keys
 * whose vertical or horizontal row is r: the tables are never expanded to N x N. Both use the int32
 * scratch rel[2(2 clip + 2)] of the op (first the q . R_k dot products, then the per-row sums).
 * One path for both builds (mcu_dot_s8 has the DSP inner loop), so the portable and DSP bits agree. */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

#define MCU_REL_CHUNK 16 /* output columns whose int32 sums wait on the stack */

static inline int32_t clip_row(int32_t d, int32_t clip)
{
    return (d < -clip ? -clip : d > clip ? clip : d) + clip + 1;
}

/* table rows of key j for query t: the vertical one into *dv, the horizontal one (offset by
 * 2 clip + 2) into *dh; the cls token's row and column use row 0 of each part */
static inline void rel_rows(const mcu_block_t *b, int32_t t, int32_t j, int32_t *dv, int32_t *dh)
{
    const int32_t half = 2 * b->rel_clip + 2;
    if (t < b->cls || j < b->cls) {
        *dv = 0;
        *dh = half;
        return;
    }
    const int32_t a = t - b->cls, c = j - b->cls, side = b->grid_side;
    *dv = clip_row(c / side - a / side, b->rel_clip);
    *dh = half + clip_row(c % side - a % side, b->rel_clip);
}

void mcu_scores_row_rel(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores,
                        int32_t t, int32_t *rel)
{
    const int32_t hd = b->head_dim, n = b->tokens, rows = 2 * (2 * b->rel_clip + 2);
    const int32_t multiplier = b->qk_multiplier, shift = b->qk_shift, zp = b->score_zp;
    for (int32_t r = 0; r < rows; r++) rel[r] = mcu_dot_s8(q, b->rel_key + r * hd, hd, 0);
    for (int32_t j = 0; j < n; j++) {
        int32_t dv, dh;
        rel_rows(b, t, j, &dv, &dh);
        const int32_t acc = mcu_dot_s8(q, k + j * stride, hd, rel[dv] + rel[dh]);
        scores[j] = mcu_ssat8(mcu_requant32(acc, multiplier, shift) + zp);
    }
}

void mcu_av_row_rel(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                    int32_t t, int32_t *rel)
{
    const int32_t hd = b->head_dim, n = b->tokens, rows = 2 * (2 * b->rel_clip + 2);
    for (int32_t r = 0; r < rows; r++) rel[r] = 0;
    for (int32_t j = 0; j < n; j++) {
        int32_t dv, dh;
        rel_rows(b, t, j, &dv, &dh);
        rel[dv] += probs[j] + 128;
        rel[dh] += probs[j] + 128;
    }
    for (int32_t c0 = 0; c0 < hd; c0 += MCU_REL_CHUNK) {
        const int32_t width = hd - c0 < MCU_REL_CHUNK ? hd - c0 : MCU_REL_CHUNK;
        int32_t acc[MCU_REL_CHUNK] = {0};
        for (int32_t j = 0; j < n; j++) {
            const int32_t p = probs[j] + 128;
            const int8_t *vj = v + j * stride + c0;
            for (int32_t c = 0; c < width; c++) acc[c] += p * vj[c];
        }
        for (int32_t r = 0; r < rows; r++) {
            const int32_t w = rel[r];
            const int8_t *tr = b->rel_value + r * hd + c0;
            for (int32_t c = 0; c < width; c++) acc[c] += w * tr[c];
        }
        for (int32_t c = 0; c < width; c++)
            o[c0 + c] = mcu_ssat8(mcu_requant32(acc[c], b->av_multiplier, b->av_shift) + b->o_zp);
    }
}
