/* One query row of attention, shared by the layer-wise and the fused kernels. */
#ifndef MCU_ATTENTION_ROW_H
#define MCU_ATTENTION_ROW_H

#include "mcu_kernels.h"

/* scores[j] = sat(requant(q . k_j) + zp), k_j = k + j * stride, j < tokens */
void mcu_scores_row(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores);
/* o[c] = sat(requant(sum_j (p_j + 128) v_j[c]) + zp), v_j = v + j * stride, c < head_dim */
void mcu_av_row(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o);
/* mcu_av_row plus relative position's value tables weighted by rel_sums[2(2 clip + 2)] (0: none) */
void mcu_av_row_sums(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                     const int32_t *rel_sums);
/* the same for query row t with relative position (b->rel_key set); rel: int32 [2(2 clip + 2)] scratch */
void mcu_scores_row_rel(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores,
                        int32_t t, int32_t *rel);
void mcu_av_row_rel(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                    int32_t t, int32_t *rel);

#endif
