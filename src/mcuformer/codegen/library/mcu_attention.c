/* Fused attention (operator integration): K and V are built once (ln_kv); then each query row
 * recomputes its LayerNorm, [down] and q, its N scores, the softmax in place and the AV sum, so
 * neither q for all tokens nor any (N, N) matrix is ever stored. */
#include "mcu_kernels.h"
#include "mcu_attention_row.h"
#include "mcu_dot.h"
#include "mcu_fixedpoint.h"
#include <string.h>

#define MCU_AV_CHUNK 16 /* output columns whose int32 sums wait on the stack while summing over the keys */

/* the per-tensor output stage; its constants are read into locals once per row (an int8 store may
 * alias the block struct, so the compiler would reload them after every store) */
typedef struct {
    int32_t multiplier, shift, zp;
} out_stage_t;

static inline int8_t score_out(const out_stage_t *o, int32_t acc)
{
    return mcu_ssat8(mcu_requant32(acc, o->multiplier, o->shift) + o->zp);
}

#ifdef MCU_DSP
#define MCU_QW_WORDS 64 /* q widened once per row (mcu_widen_s8's pairs) on the stack: head_dim <= 128 */

/* two keys' sums against the unpacked q (qw), hd a multiple of 16: no tail, the step unrolled */
static void scores_pairs16(const int32_t *qw, const int8_t *k, int32_t stride, int32_t n, int32_t hd,
                           const out_stage_t *os, int8_t *scores)
{
    const out_stage_t o = *os;
    for (int32_t j = 0; j + 2 <= n; j += 2) {
        const int8_t *k0 = k + j * stride, *k1 = k0 + stride, *stop = k0 + hd;
        const int32_t *w = qw;
        int32_t a0 = 0, a1 = 0;
        do {
#define MCU_SCORE_STEP(u)                                                                                     \
    {                                                                                                         \
        const int32_t x0 = mcu_read_s8x4(k0 + 4 * (u)), x1 = mcu_read_s8x4(k1 + 4 * (u));                     \
        const int32_t we = w[2 * (u)], wo = w[2 * (u) + 1];                                                   \
        a0 = __smlad(we, __sxtb16(x0), a0);                                                                   \
        a1 = __smlad(we, __sxtb16(x1), a1);                                                                   \
        a0 = __smlad(wo, mcu_sxtb16_odd(x0), a0);                                                             \
        a1 = __smlad(wo, mcu_sxtb16_odd(x1), a1);                                                             \
    }
            MCU_SCORE_STEP(0)
            MCU_SCORE_STEP(1)
            MCU_SCORE_STEP(2)
            MCU_SCORE_STEP(3)
#undef MCU_SCORE_STEP
            w += 8;
            k0 += 16;
            k1 += 16;
        } while (k0 < stop);
        scores[j] = score_out(&o, a0);
        scores[j + 1] = score_out(&o, a1);
    }
}

/* scores[j] = sat(requant(q . k_j) + zp): q is unpacked to int16 pairs once, then two keys at a time
 * read four int8 each per step (SXTB16, SMLAD against the unpacked q), then the per-tensor output stage
 * on the int32 fast path (mcu_requant32). */
void mcu_scores_row(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores)
{
    const out_stage_t os = {b->qk_multiplier, b->qk_shift, b->score_zp};
    const int32_t hd = b->head_dim, n = b->tokens, quads = hd >> 2;
    if (hd > 2 * MCU_QW_WORDS) {
        for (int32_t j = 0; j < n; j++) scores[j] = score_out(&os, mcu_dot_s8(q, k + j * stride, hd, 0));
        return;
    }
    int32_t qw[MCU_QW_WORDS];
    for (int32_t i = 0; i < quads; i++) {
        const int32_t v = mcu_read_s8x4(q + 4 * i);
        qw[2 * i] = __sxtb16(v);
        qw[2 * i + 1] = mcu_sxtb16_odd(v);
    }
    int32_t j = 0;
    if ((hd & 15) == 0) {
        scores_pairs16(qw, k, stride, n, hd, &os, scores);
        j = n & ~1;
    }
    for (; j + 2 <= n; j += 2) {
        const int8_t *k0 = k + j * stride, *k1 = k0 + stride;
        const int32_t *w = qw, *end = qw + 2 * quads;
        int32_t a0 = 0, a1 = 0;
        for (; w < end; w += 2, k0 += 4, k1 += 4) {
            const int32_t x0 = mcu_read_s8x4(k0), x1 = mcu_read_s8x4(k1);
            a0 = __smlad(w[0], __sxtb16(x0), a0);
            a1 = __smlad(w[0], __sxtb16(x1), a1);
            a0 = __smlad(w[1], mcu_sxtb16_odd(x0), a0);
            a1 = __smlad(w[1], mcu_sxtb16_odd(x1), a1);
        }
        for (int32_t c = 4 * quads; c < hd; c++, k0++, k1++) {
            a0 += q[c] * *k0;
            a1 += q[c] * *k1;
        }
        scores[j] = score_out(&os, a0);
        scores[j + 1] = score_out(&os, a1);
    }
    if (j < n) scores[j] = score_out(&os, mcu_dot_s8(q, k + j * stride, hd, 0));
}
#else
/* scores[j] = sat(requant(q . k_j) + zp), four keys at a time */
void mcu_scores_row(const mcu_block_t *b, const int8_t *q, const int8_t *k, int32_t stride, int8_t *scores)
{
    const out_stage_t os = {b->qk_multiplier, b->qk_shift, b->score_zp};
    const int32_t hd = b->head_dim, n = b->tokens;
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int32_t acc[4] = {0, 0, 0, 0};
        mcu_dot4_s8(q, k + j * stride, stride, hd, acc);
        for (int32_t r = 0; r < 4; r++) scores[j + r] = score_out(&os, acc[r]);
    }
    for (; j < n; j++) scores[j] = score_out(&os, mcu_dot_s8(q, k + j * stride, hd, 0));
}
#endif

/* acc[c] += sum_r sums[r] * R_v[r][c0 + c]: relative position's value tables, by the probabilities summed
 * per table row (mcu_av_row_sums; rows whose sum is 0 add nothing) */
static void add_rel_values(const mcu_block_t *b, const int32_t *sums, int32_t c0, int32_t width, int32_t *acc)
{
    const int32_t rows = 2 * (2 * b->rel_clip + 2), hd = b->head_dim;
    for (int32_t r = 0; r < rows; r++) {
        const int32_t w = sums[r];
        if (!w) continue;
        const int8_t *tr = b->rel_value + r * hd + c0;
        for (int32_t c = 0; c < width; c++) acc[c] += w * tr[c];
    }
}

void mcu_av_row(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o)
{
    mcu_av_row_sums(b, probs, v, stride, o, 0);
}

#ifdef MCU_DSP
#define MCU_AV_PAIRS 64 /* key pairs whose packed probabilities wait on the stack (256 bytes) */

/* (lo | hi << 16) */
static inline int32_t pack_low_halves(int32_t lo, int32_t hi)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

/* (lo >> 16 | hi & 0xffff0000) */
static inline int32_t pack_high_halves(int32_t lo, int32_t hi)
{
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(hi), "r"(lo));
    return r;
}

/* o[c] for c < hd: two keys per step, each SMLAD adding (p_j + 128) v_j[c] + (p_j+1 + 128) v_j+1[c];
 * four columns at a time: the pairs (v_j[c], v_j+1[c]) are two SXTB16 and one PKHBT or PKHTB per two
 * columns. The probabilities of up to MCU_AV_PAIRS key pairs are packed once as int16 pairs
 * (p_j + 128) | (p_j+1 + 128) << 16 for all the columns of a chunk. The sums are exact int32 sums
 * (|sum| <= 255 * 128 * N), as in the portable path. */
void mcu_av_row_sums(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                     const int32_t *rel_sums)
{
    const int32_t hd = b->head_dim, n = b->tokens, multiplier = b->av_multiplier, shift = b->av_shift;
    const int32_t zp = b->o_zp, pairs = n >> 1;
    int32_t packed[MCU_AV_PAIRS];
    for (int32_t c0 = 0; c0 < hd; c0 += MCU_AV_CHUNK) {
        const int32_t width = hd - c0 < MCU_AV_CHUNK ? hd - c0 : MCU_AV_CHUNK, quads = width & ~3;
        int32_t acc[MCU_AV_CHUNK] = {0};
        for (int32_t i0 = 0; i0 < pairs; i0 += MCU_AV_PAIRS) {
            const int32_t count = pairs - i0 < MCU_AV_PAIRS ? pairs - i0 : MCU_AV_PAIRS;
            for (int32_t i = 0; i < count; i++) {
                uint16_t two;
                memcpy(&two, probs + 2 * (i0 + i), 2);
                /* bytes 0 and 2 of (two | two << 8) are p_j and p_j+1 */
                packed[i] = __sadd16(__sxtb16((int32_t)two | (int32_t)two << 8), 0x00800080);
            }
            for (int32_t c = 0; c < quads; c += 4) {
                int32_t a0 = acc[c], a1 = acc[c + 1], a2 = acc[c + 2], a3 = acc[c + 3];
                const int8_t *vj = v + 2 * i0 * stride + c0 + c;
                for (int32_t i = 0; i < count; i++, vj += 2 * stride) {
                    const int32_t pp = packed[i];
                    const int32_t x = mcu_read_s8x4(vj), y = mcu_read_s8x4(vj + stride);
                    const int32_t xe = __sxtb16(x), ye = __sxtb16(y);
                    a0 = __smlad(pp, pack_low_halves(xe, ye), a0);
                    a2 = __smlad(pp, pack_high_halves(xe, ye), a2);
                    const int32_t xo = mcu_sxtb16_odd(x), yo = mcu_sxtb16_odd(y);
                    a1 = __smlad(pp, pack_low_halves(xo, yo), a1);
                    a3 = __smlad(pp, pack_high_halves(xo, yo), a3);
                }
                acc[c] = a0;
                acc[c + 1] = a1;
                acc[c + 2] = a2;
                acc[c + 3] = a3;
            }
        }
        for (int32_t c = quads; c < width; c++)
            for (int32_t j = 0; j < 2 * pairs; j++) acc[c] += (probs[j] + 128) * v[j * stride + c0 + c];
        if (n & 1) {
            const int32_t p = probs[n - 1] + 128;
            for (int32_t c = 0; c < width; c++) acc[c] += p * v[(n - 1) * stride + c0 + c];
        }
        if (rel_sums) add_rel_values(b, rel_sums, c0, width, acc);
        for (int32_t c = 0; c < width; c++) o[c0 + c] = mcu_ssat8(mcu_requant32(acc[c], multiplier, shift) + zp);
    }
}
#else
void mcu_av_row_sums(const mcu_block_t *b, const int8_t *probs, const int8_t *v, int32_t stride, int8_t *o,
                     const int32_t *rel_sums)
{
    for (int32_t c0 = 0; c0 < b->head_dim; c0 += MCU_AV_CHUNK) {
        const int32_t width = b->head_dim - c0 < MCU_AV_CHUNK ? b->head_dim - c0 : MCU_AV_CHUNK;
        int32_t acc[MCU_AV_CHUNK] = {0};
        for (int32_t j = 0; j < b->tokens; j++) {
            const int32_t p = probs[j] + 128;
            const int8_t *vj = v + j * stride + c0;
            for (int32_t c = 0; c < width; c++) acc[c] += p * vj[c];
        }
        if (rel_sums) add_rel_values(b, rel_sums, c0, width, acc);
        for (int32_t c = 0; c < width; c++)
            o[c0 + c] = mcu_ssat8(mcu_requant32(acc[c], b->av_multiplier, b->av_shift) + b->o_zp);
    }
}
#endif

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

/* heads [h0, h1) of query row t (x_t = xt) into o_row (o_row[h*hd ...]); k, v hold those heads only */
static void attention_row(const mcu_block_t *b, const int8_t *xt, const int8_t *k, const int8_t *v, int8_t *o_row,
                          int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int32_t h0, int32_t h1, int32_t t,
                          int32_t *rel)
{
    const int32_t hd = b->head_dim, width = (h1 - h0) * hd;
    const int8_t *ctx = qkv_context(b, xt, ln, mid);
    for (int32_t h = h0; h < h1; h++) {
        mcu_factor_rows(&b->qkv.up, ctx, h * hd, hd, q, 0, 0, 0);
        if (b->rel_key)
            mcu_scores_row_rel(b, q, k + (h - h0) * hd, width, scores, t, rel);
        else
            mcu_scores_row(b, q, k + (h - h0) * hd, width, scores);
        mcu_softmax_row(scores, scores, b->tokens, b->exp_lut);
        if (b->rel_key)
            mcu_av_row_rel(b, scores, v + (h - h0) * hd, width, o_row + h * hd, t, rel);
        else
            mcu_av_row_sums(b, scores, v + (h - h0) * hd, width, o_row + h * hd, 0);
    }
}

void mcu_attention(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v, int8_t *o,
                   int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int32_t h0, int32_t h1, int32_t *rel)
{
    const int32_t inner = b->heads * b->head_dim;
    for (int32_t t = 0; t < b->tokens; t++)
        attention_row(b, x + t * b->dim, k, v, o + t * inner, ln, mid, q, scores, h0, h1, t, rel);
}

/* Row t's output is written over x_t (y == x): x_t is read only for row t's own q and residual. */
void mcu_attention_proj_residual(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v,
                                 int8_t *y, int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int8_t *o,
                                 int8_t *proj_mid, int32_t *rel)
{
    for (int32_t t = 0; t < b->tokens; t++) {
        attention_row(b, x + t * b->dim, k, v, o, ln, mid, q, scores, 0, b->heads, t, rel);
        mcu_linear_row(&b->proj, o, proj_mid, y + t * b->dim, 0, x + t * b->dim, &b->add1);
    }
}

void mcu_proj_residual(const mcu_block_t *b, const int8_t *o, const int8_t *x, int8_t *y, int8_t *proj_mid)
{
    const int32_t inner = b->heads * b->head_dim;
    for (int32_t t = 0; t < b->tokens; t++)
        mcu_linear_row(&b->proj, o + t * inner, proj_mid, y + t * b->dim, 0, x + t * b->dim, &b->add1);
}
