/* Layer-wise kernels (no operator integration): each op runs over every token and stores its whole
 * output matrix. With token overwriting, softmax, GELU, the adds and the final LayerNorm run in place
 * (y == x). */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"

void mcu_layernorm(const mcu_layernorm_t *p, const int8_t *x, int8_t *y, int32_t tokens)
{
    for (int32_t t = 0; t < tokens; t++) mcu_layernorm_row(p, x + t * p->dim, y + t * p->dim);
}

void mcu_linear(const mcu_factor_t *f, const int8_t *x, int8_t *y, int32_t tokens)
{
    for (int32_t t = 0; t < tokens; t++) mcu_factor_rows(f, x + t * f->in, 0, f->out, y + t * f->out, 0, 0, 0);
}

/* The [q_h | k_h | v_h] rows of heads [h0, h1): output row t holds q, then k, then v of those heads. */
void mcu_linear_qkv_heads(const mcu_block_t *b, const mcu_factor_t *f, const int8_t *x, int8_t *y,
                          int32_t h0, int32_t h1)
{
    const int32_t width = (h1 - h0) * b->head_dim, inner = b->heads * b->head_dim;
    for (int32_t t = 0; t < b->tokens; t++)
        for (int32_t part = 0; part < 3; part++)
            mcu_factor_rows(f, x + t * f->in, part * inner + h0 * b->head_dim, width, y + (3 * t + part) * width,
                            0, 0, 0);
}

/* scores[h][t][j] for the nheads heads stored in qkv (rows [q | k | v], each nheads*hd wide) */
void mcu_matmul_qk(const mcu_block_t *b, const int8_t *qkv, int8_t *scores, int32_t nheads)
{
    const int32_t n = b->tokens, hd = b->head_dim, width = nheads * hd;
    for (int32_t h = 0; h < nheads; h++)
        for (int32_t t = 0; t < n; t++)
            mcu_scores_row(b, qkv + 3 * t * width + h * hd, qkv + width + h * hd, 3 * width,
                           scores + (h * n + t) * n);
}

void mcu_softmax(const mcu_block_t *b, const int8_t *scores, int8_t *probs, int32_t rows)
{
    for (int32_t r = 0; r < rows; r++)
        mcu_softmax_row(scores + r * b->tokens, probs + r * b->tokens, b->tokens, b->exp_lut);
}

/* O[t, h*hd ...] for heads [h0, h1), whose probabilities and q/k/v slice are given */
void mcu_matmul_av(const mcu_block_t *b, const int8_t *probs, const int8_t *qkv, int8_t *o, int32_t h0, int32_t h1)
{
    const int32_t n = b->tokens, hd = b->head_dim, width = (h1 - h0) * hd, inner = b->heads * hd;
    for (int32_t h = 0; h < h1 - h0; h++)
        for (int32_t t = 0; t < n; t++)
            mcu_av_row(b, probs + (h * n + t) * n, qkv + 2 * width + h * hd, 3 * width, o + t * inner + (h0 + h) * hd);
}
