/* Fused MLP (operator integration): LayerNorm, fc1 with the GELU table in its output stage, fc2
 * with the residual add in its output stage, one token at a time. */
#include "mcu_kernels.h"

/* one hidden row: LayerNorm(x_t) -> ln, [down -> mid1], fc1 + GELU -> hidden */
static void hidden_row(const mcu_block_t *b, const int8_t *xt, int8_t *hidden, int8_t *ln, int8_t *mid1)
{
    mcu_layernorm_row(&b->norm2, xt, ln);
    mcu_linear_row(&b->fc1, ln, mid1, hidden, b->gelu_lut, 0, 0);
}

/* y == x: each token's output is written over it, one hidden vector for all tokens */
void mcu_mlp_residual(const mcu_block_t *b, const int8_t *x, int8_t *y, int8_t *ln, int8_t *mid1,
                      int8_t *hidden, int8_t *mid2)
{
    for (int32_t t = 0; t < b->tokens; t++) {
        hidden_row(b, x + t * b->dim, hidden, ln, mid1);
        mcu_linear_row(&b->fc2, hidden, mid2, y + t * b->dim, 0, x + t * b->dim, &b->add2);
    }
}

void mcu_ln_fc1_gelu(const mcu_block_t *b, const int8_t *x, int8_t *hidden, int8_t *ln, int8_t *mid1)
{
    for (int32_t t = 0; t < b->tokens; t++) hidden_row(b, x + t * b->dim, hidden + t * b->hidden, ln, mid1);
}

void mcu_fc2_residual(const mcu_block_t *b, const int8_t *hidden, const int8_t *x, int8_t *y, int8_t *mid2)
{
    for (int32_t t = 0; t < b->tokens; t++)
        mcu_linear_row(&b->fc2, hidden + t * b->hidden, mid2, y + t * b->dim, 0, x + t * b->dim, &b->add2);
}
