/* The head's pooling: mean over the patch tokens (int32 sums, one requantisation) or the cls row;
 * ln_pool fuses the final LayerNorm, one token at a time. */
#include <string.h>

#include "mcu_kernels.h"
#include "mcu_fixedpoint.h"

static void pool_output(const mcu_head_t *h, const int32_t *sums, int8_t *pooled)
{
    const int64_t offset = (int64_t)(h->tokens - h->skip_cls) * h->pool_in_zp;
    for (int32_t c = 0; c < h->dim; c++)
        pooled[c] = mcu_sat8(mcu_requantize(sums[c] - offset, h->pool_multiplier, h->pool_shift) + h->pool_out_zp);
}

void mcu_mean_pool(const mcu_head_t *h, const int8_t *x, int8_t *pooled, int32_t *sums)
{
    for (int32_t c = 0; c < h->dim; c++) sums[c] = 0;
    for (int32_t t = h->skip_cls; t < h->tokens; t++)
        for (int32_t c = 0; c < h->dim; c++) sums[c] += x[t * h->dim + c];
    pool_output(h, sums, pooled);
}

void mcu_take_cls(const mcu_head_t *h, const int8_t *x, int8_t *pooled)
{
    memcpy(pooled, x, (size_t)h->dim);
}

/* in_place: each token is normalised over itself (x dies here) instead of into ln */
void mcu_ln_pool(const mcu_head_t *h, int8_t *x, int8_t *pooled, int8_t *ln, int32_t *sums, int32_t cls_pool,
                 int32_t in_place)
{
    if (cls_pool) {
        mcu_layernorm_row(&h->norm, x, pooled);
        return;
    }
    for (int32_t c = 0; c < h->dim; c++) sums[c] = 0;
    for (int32_t t = h->skip_cls; t < h->tokens; t++) {
        int8_t *row = in_place ? x + t * h->dim : ln;
        mcu_layernorm_row(&h->norm, x + t * h->dim, row);
        for (int32_t c = 0; c < h->dim; c++) sums[c] += row[c];
    }
    pool_output(h, sums, pooled);
}
