/* Layer-wise kernels (no operator integration): each op runs over every token and stores its whole
 * output matrix. With token overwriting, softmax, GELU, the adds and the final LayerNorm run in place
 * (y == x). */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"

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
void mcu_matmul_qk(const mcu_block_t *b, const int8_t *qkv, int8_t *scores, int32_t nheads, int32_t *rel)
{
    const int32_t n = b->tokens, hd = b->head_dim, width = nheads * hd;
    for (int32_t h = 0; h < nheads; h++)
        for (int32_t t = 0; t < n; t++)
            if (b->rel_key)
                mcu_scores_row_rel(b, qkv + 3 * t * width + h * hd, qkv + width + h * hd, 3 * width,
                                   scores + (h * n + t) * n, t, rel);
            else
                mcu_scores_row(b, qkv + 3 * t * width + h * hd, qkv + width + h * hd, 3 * width,
                           scores + (h * n + t) * n);
}

void mcu_softmax(const mcu_block_t *b, const int8_t *scores, int8_t *probs, int32_t rows)
{
    for (int32_t r = 0; r < rows; r++)
        mcu_softmax_row(scores + r * b->tokens, probs + r * b->tokens, b->tokens, b->exp_lut);
}

#ifdef MCU_DSP
#define MCU_AVT_COLS 8     /* columns of V transposed at a time onto the stack */
#define MCU_AVT_TOKENS 256 /* up to this many tokens (MCU_AVT_COLS * MCU_AVT_TOKENS bytes of stack) */

/* One head's AV for all query rows with V^T as the weights: MCU_AVT_COLS columns of V are transposed
 * once into a stack buffer, so that each output is a dot product of the int8 probabilities with a
 * contiguous row of V^T (SXTB16 + SMLAD, four keys per step, the unpacked probabilities shared by four
 * columns); sum_j (p_j + 128) v_j = sum_j p_j v_j + 128 sum_j v_j, the second term once per column. */
static void av_head_transposed(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride,
                               int8_t *o, int32_t o_stride)
{
    const int32_t n = b->tokens, hd = b->head_dim, keys4 = n & ~3, vt_stride = (n + 3) & ~3;
    const int32_t multiplier = b->av_multiplier, shift = b->av_shift, zp = b->o_zp;
    int32_t vt_words[MCU_AVT_COLS * MCU_AVT_TOKENS / 4]; /* word aligned */
    int8_t *vt = (int8_t *)vt_words;
    for (int32_t c0 = 0; c0 < hd; c0 += MCU_AVT_COLS) {
        const int32_t cols = hd - c0 < MCU_AVT_COLS ? hd - c0 : MCU_AVT_COLS;
        int32_t colsum[MCU_AVT_COLS];
        for (int32_t c = 0; c < cols; c++) {
            int32_t total = 0;
            for (int32_t j = 0; j < n; j++) {
                const int8_t value = v[j * stride + c0 + c];
                vt[c * vt_stride + j] = value;
                total += value;
            }
            colsum[c] = 128 * total;
        }
        for (int32_t t = 0; t < n; t++) {
            const int8_t *p = probs + t * n;
            int8_t *out = o + t * o_stride + c0;
            int32_t c = 0;
            for (; c + 4 <= cols; c += 4) {
                const int8_t *r0 = vt + c * vt_stride;
                int32_t a0 = colsum[c], a1 = colsum[c + 1], a2 = colsum[c + 2], a3 = colsum[c + 3];
                int32_t j = 0;
                for (; j < keys4; j += 4) {
                    const int32_t pv = mcu_read_s8x4(p + j), pe = __sxtb16(pv), po = mcu_sxtb16_odd(pv);
                    int32_t w = mcu_read_s8x4(r0 + j);
                    a0 = __smlad(pe, __sxtb16(w), __smlad(po, mcu_sxtb16_odd(w), a0));
                    w = mcu_read_s8x4(r0 + vt_stride + j);
                    a1 = __smlad(pe, __sxtb16(w), __smlad(po, mcu_sxtb16_odd(w), a1));
                    w = mcu_read_s8x4(r0 + 2 * vt_stride + j);
                    a2 = __smlad(pe, __sxtb16(w), __smlad(po, mcu_sxtb16_odd(w), a2));
                    w = mcu_read_s8x4(r0 + 3 * vt_stride + j);
                    a3 = __smlad(pe, __sxtb16(w), __smlad(po, mcu_sxtb16_odd(w), a3));
                }
                for (; j < n; j++) {
                    const int32_t pj = p[j];
                    a0 += pj * r0[j];
                    a1 += pj * r0[vt_stride + j];
                    a2 += pj * r0[2 * vt_stride + j];
                    a3 += pj * r0[3 * vt_stride + j];
                }
                out[c] = mcu_ssat8(mcu_requant32(a0, multiplier, shift) + zp);
                out[c + 1] = mcu_ssat8(mcu_requant32(a1, multiplier, shift) + zp);
                out[c + 2] = mcu_ssat8(mcu_requant32(a2, multiplier, shift) + zp);
                out[c + 3] = mcu_ssat8(mcu_requant32(a3, multiplier, shift) + zp);
            }
            for (; c < cols; c++) {
                const int8_t *r = vt + c * vt_stride;
                int32_t acc = colsum[c];
                for (int32_t j = 0; j < n; j++) acc += p[j] * r[j];
                out[c] = mcu_ssat8(mcu_requant32(acc, multiplier, shift) + zp);
            }
        }
    }
}
#endif

/* O[t, h*hd ...] for heads [h0, h1), whose probabilities and q/k/v slice are given */
void mcu_matmul_av(const mcu_block_t *b, const int8_t *probs, const int8_t *qkv, int8_t *o, int32_t h0, int32_t h1,
                   int32_t *rel)
{
    const int32_t n = b->tokens, hd = b->head_dim, width = (h1 - h0) * hd, inner = b->heads * hd;
    for (int32_t h = 0; h < h1 - h0; h++) {
        if (b->rel_key) { /* row by row: each row's per-table-row sums differ */
            for (int32_t t = 0; t < n; t++)
                mcu_av_row_rel(b, probs + (h * n + t) * n, qkv + 2 * width + h * hd, 3 * width,
                               o + t * inner + (h0 + h) * hd, t, rel);
            continue;
        }
#ifdef MCU_DSP
        if (n <= MCU_AVT_TOKENS) {
            av_head_transposed(b, probs + h * n * n, qkv + 2 * width + h * hd, 3 * width, o + (h0 + h) * hd, inner);
            continue;
        }
#endif
        for (int32_t t = 0; t < n; t++)
            mcu_av_row(b, probs + (h * n + t) * n, qkv + 2 * width + h * hd, 3 * width, o + t * inner + (h0 + h) * hd);
    }
}
