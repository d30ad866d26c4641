/* Fused attention (operator integration): K and V are built once (ln_kv); then each query row
 * recomputes its LayerNorm, [down] and q, its N scores, the softmax in place and the AV sum, so
 * neither q for all tokens nor any (N, N) matrix is ever stored. */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

#define MCU_AV_CHUNK 16 /* int32 accumulators on the stack while summing over the keys */

void mcu_scores_row(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores)
{
    const int32_t hd = b->head_dim;
    for (int32_t j = 0; j < b->tokens; j++)
        scores[j] = mcu_sat8(mcu_requantize32(mcu_dot_s8(q, k + j * stride, hd, 0), b->qk_multiplier, b->qk_shift)
                             + b->score_zp);
}

void mcu_av_row(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o)
{
    for (int32_t c0 = 0; c0 < b->head_dim; c0 += MCU_AV_CHUNK) {
        const int32_t width = b->head_dim - c0 < MCU_AV_CHUNK ? b->head_dim - c0 : MCU_AV_CHUNK;
        int32_t acc[MCU_AV_CHUNK] = {0};
        for (int32_t j = 0; j < b->tokens; j++) {
            const int32_t p = probs[j] + 128;
            const int8_t *vj = v + j * stride + c0;
            for (int32_t c = 0; c < width; c++) acc[c] += p * vj[c];
        }
        for (int32_t c = 0; c < width; c++)
            o[c0 + c] = mcu_sat8(mcu_requantize32(acc[c], b->av_multiplier, b->av_shift) + b->o_zp);
    }
}

/* LayerNorm(x_t) -> ln, [down -> mid]; returns the qkv up factor's input */
static const int8_t *qkv_context(const mcu_block_t *b, const int8_t *xt, int8_t *ln, int8_t *mid)
{
    mcu_layernorm_row(&b->norm1, xt, ln);
    if (!b->qkv.down.weight) return ln;
    mcu_factor_rows(&b->qkv.down, ln, 0, b->qkv.down.out, mid, 0, 0, 0);
    return mid;
}

void mcu_ln_kv(const mcu_block_t *b, const int8_t *x, int8_t *k, int8_t *v, int8_t *ln, int8_t *mid,
               int32_t h0, int32_t h1)
{
    const int32_t hd = b->head_dim, width = (h1 - h0) * hd, inner = b->heads * hd;
    for (int32_t t = 0; t < b->tokens; t++) {
        const int8_t *ctx = qkv_context(b, x + t * b->dim, ln, mid);
        mcu_factor_rows(&b->qkv.up, ctx, inner + h0 * hd, width, k + t * width, 0, 0, 0);
        mcu_factor_rows(&b->qkv.up, ctx, 2 * inner + h0 * hd, width, v + t * width, 0, 0, 0);
    }
}

/* heads [h0, h1) of query row xt into o_row (o_row[h*hd ...]); k, v hold those heads only */
static void attention_row(const mcu_block_t *b, const int8_t *xt, const int8_t *k, const int8_t *v, int8_t *o_row,
                          int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int32_t h0, int32_t h1)
{
    const int32_t hd = b->head_dim, width = (h1 - h0) * hd;
    const int8_t *ctx = qkv_context(b, xt, ln, mid);
    for (int32_t h = h0; h < h1; h++) {
        mcu_factor_rows(&b->qkv.up, ctx, h * hd, hd, q, 0, 0, 0);
        mcu_scores_row(b, q, k + (h - h0) * hd, width, scores);
        mcu_softmax_row(scores, scores, b->tokens, b->exp_lut);
        mcu_av_row(b, scores, v + (h - h0) * hd, width, o_row + h * hd);
    }
}

void mcu_attention(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v, int8_t *o,
                   int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int32_t h0, int32_t h1)
{
    const int32_t inner = b->heads * b->head_dim;
    for (int32_t t = 0; t < b->tokens; t++)
        attention_row(b, x + t * b->dim, k, v, o + t * inner, ln, mid, q, scores, h0, h1);
}

/* Row t's output is written over x_t (y == x): x_t is read only for row t's own q and residual. */
void mcu_attention_proj_residual(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v,
                                 int8_t *y, int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int8_t *o,
                                 int8_t *proj_mid)
{
    for (int32_t t = 0; t < b->tokens; t++) {
        attention_row(b, x + t * b->dim, k, v, o, ln, mid, q, scores, 0, b->heads);
        mcu_linear_row(&b->proj, o, proj_mid, y + t * b->dim, 0, x + t * b->dim, &b->add1);
    }
}

void mcu_proj_residual(const mcu_block_t *b, const int8_t *o, const int8_t *x, int8_t *y, int8_t *proj_mid)
{
    const int32_t inner = b->heads * b->head_dim;
    for (int32_t t = 0; t < b->tokens; t++)
        mcu_linear_row(&b->proj, o + t * inner, proj_mid, y + t * b->dim, 0, x + t * b->dim, &b->add1);
}
