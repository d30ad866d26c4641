/* mcuformer int8 kernel library: the kernels of the memory model's op list (docs/memory-model.md)
 * with the integer semantics of docs/quantization.md. Every kernel works one token (one row) at a
 * time, reads its constants from flash through a const parameter struct, and touches no memory but
 * the pointers it is given: no malloc, no globals. Portable C99; on a core with the DSP extension
 * (__ARM_FEATURE_DSP: Cortex-M4/M7) the dot products use SMLAD and give the same bits. */
#ifndef MCU_KERNELS_H
#define MCU_KERNELS_H

#include <stdint.h>

/* One int8 matmul in -> out: acc[o] = bias[o] + sum_k x[k] * weight[o][k] (int32; the input zero
 * point is folded into bias), then requantised per output channel to int8 at out_zp. */
typedef struct {
    const int8_t *weight;      /* [out][in], row-major */
    const int32_t *bias;       /* [out] */
    const int32_t *multiplier; /* [out], in [2^30, 2^31) */
    const int32_t *shift;      /* [out], positive = left */
    int32_t in, out, out_zp;
} mcu_factor_t;

/* A dense linear (down.weight == 0: only `up` is used) or a low-rank pair down (in -> r), up (r -> out). */
typedef struct {
    mcu_factor_t down, up;
} mcu_linear_t;

/* Integer LayerNorm: gamma int16 and beta int32 at one scale, one per-tensor output requant. */
typedef struct {
    const int16_t *gamma;
    const int32_t *beta;
    int32_t dim, multiplier, shift, out_zp;
} mcu_layernorm_t;

/* a + b of two int8 tensors (CMSIS-NN arm_elementwise_add_s8 arithmetic, left shift 20). */
typedef struct {
    int32_t a_zp, a_multiplier, a_shift;
    int32_t b_zp, b_multiplier, b_shift;
    int32_t out_multiplier, out_shift, out_zp;
} mcu_add_t;

/* The stem: patch convolution as a matmul over each patch's p*p*C HWC pixels, cls token, position. */
typedef struct {
    mcu_factor_t proj;         /* in = p*p*C, out = E */
    const int8_t *cls_token;   /* [E] at the patch tokens' scale, or 0 */
    const int8_t *pos_embed;   /* [N][E] */
    mcu_add_t pos_add;
    int32_t img_size, channels, patch, grid, pad;
} mcu_stem_t;

/* A 3x3 convolution (stride 1, padding 1) + ReLU over int8 HWC maps of one side: the conv stem's
 * layer. Padded pixels hold in_zp (a real zero; the bias folds -in_zp * sum(w) over the whole
 * window). ReLU is the clamp of the output at out_zp (the real zero). */
typedef struct {
    mcu_factor_t f;            /* in = 9 * in_chans, weights [out][ky][kx][c]; out = channels */
    int32_t in_zp, width, in_chans;
} mcu_conv3x3_t;

/* A stage of the conv stem: a conv layer, or the 3x3 stride-2 max-pool (padding 1) after one. */
typedef struct {
    int32_t kind;              /* 0: conv, 1: max-pool */
    int32_t layer;             /* the conv layer (its own, or the one it pools) */
    int32_t in_size, out_size, channels; /* map sides, output channels */
} mcu_stem_stage_t;

/* The convolutional tokenizer: the last stage's pixels are the tokens (E channels each). */
typedef struct {
    mcu_conv3x3_t conv[2];
    mcu_stem_stage_t stage[4];
    int32_t stages;
    const int8_t *cls_token;   /* [E] at the tokens' scale, or 0 */
    const int8_t *pos_embed;   /* [N][E] */
    mcu_add_t pos_add;
    int32_t grid, dim;
} mcu_conv_stem_t;

/* One transformer block's constants. */
typedef struct {
    mcu_layernorm_t norm1;
    mcu_linear_t qkv;          /* up (or the dense factor) has 3*heads*head_dim outputs: [q | k | v] */
    int32_t tokens, dim, heads, head_dim;
    int32_t qk_multiplier, qk_shift, score_zp;
    const uint16_t *exp_lut;   /* [256] */
    int32_t av_multiplier, av_shift, o_zp;
    mcu_linear_t proj;
    mcu_add_t add1;
    mcu_layernorm_t norm2;
    mcu_linear_t fc1;
    const int8_t *gelu_lut;    /* [256] */
    mcu_linear_t fc2;
    mcu_add_t add2;
    int32_t hidden;
    /* 2-D relative position (0 when off): int8 tables [2(2 clip + 2)][head_dim], the vertical rows then
     * the horizontal ones, keys at k's scale and values at v's (added at the q.k and AV accumulators);
     * the index rule: tokens on a grid_side x grid_side grid after the cls token (if cls), distances
     * clipped to [-clip, clip] (mcu_attention_rel.c) */
    const int8_t *rel_key, *rel_value;
    int32_t rel_clip, grid_side, cls;
} mcu_block_t;

/* The head: final LayerNorm, pooling, classifier. */
typedef struct {
    mcu_layernorm_t norm;
    int32_t tokens, dim, skip_cls;  /* skip_cls: row 0 is the cls token, not pooled by the mean */
    int32_t pool_multiplier, pool_shift, pool_in_zp, pool_out_zp;
    mcu_factor_t fc;
} mcu_head_t;

/* ---- building blocks (mcu_linear.c, mcu_layernorm.c, mcu_elementwise.c) ---- */

/* y[i] = output channel first + i, i < count; lut (may be 0) is applied to each output;
 * residual (may be 0): y[i] = add(residual[i], output) instead (y may equal residual). */
void mcu_factor_rows(const mcu_factor_t *f, const int8_t *x, int32_t first, int32_t count, int8_t *y,
                     const int8_t *lut, const int8_t *residual, const mcu_add_t *add);
/* One token through a dense linear or a low-rank pair (mid: the rank vector, unused when dense). */
void mcu_linear_row(const mcu_linear_t *l, const int8_t *x, int8_t *mid, int8_t *y, const int8_t *lut,
                    const int8_t *residual, const mcu_add_t *add);
void mcu_layernorm_row(const mcu_layernorm_t *p, const int8_t *x, int8_t *y);
int8_t mcu_add_s8(const mcu_add_t *p, int32_t a, int32_t b);
void mcu_add_row(const mcu_add_t *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n);
void mcu_softmax_row(const int8_t *x, int8_t *y, int32_t n, const uint16_t *exp_lut);

/* ---- the op list's kernels, one call per op ---- */

/* mcu_stem.c */
void mcu_patch_embed(const mcu_stem_t *s, const int8_t *image, int8_t *x, int32_t add_pos);
void mcu_pos_add(const mcu_stem_t *s, const int8_t *x, int8_t *y);

/* mcu_conv3x3.c, mcu_maxpool.c: one output row from the three input rows of its window (a 0 row is
 * padding); the conv gathers each window into col (9 * in_chans bytes); the max-pool's input is
 * in_width wide and its output (in_width + 1) / 2 */
void mcu_conv3x3_row(const mcu_conv3x3_t *c, const int8_t *above, const int8_t *mid, const int8_t *below,
                     int8_t *out, int8_t *col);
void mcu_maxpool3x3s2_row(const int8_t *above, const int8_t *mid, const int8_t *below, int8_t *out,
                          int32_t in_width, int32_t channels);

/* mcu_conv_stem.c: the conv stem layer-wise (stage k over whole maps; the last stage writes the
 * token matrix, cls row included) or row by row (one call, rings of three rows per stage but the
 * last); col: the convs' window buffer (9 * their largest in_chans bytes; 0 for a max-pool stage);
 * add_pos: add the position embedding to each token as it is written */
void mcu_conv_stem_stage(const mcu_conv_stem_t *s, int32_t k, const int8_t *in, int8_t *out, int8_t *col,
                         int32_t add_pos);
void mcu_conv_stem_rows(const mcu_conv_stem_t *s, const int8_t *image, int8_t *x, int8_t *ring0, int8_t *ring1,
                        int8_t *ring2, int8_t *col, int32_t add_pos);
void mcu_conv_stem_pos_add(const mcu_conv_stem_t *s, const int8_t *x, int8_t *y);

/* mcu_layerwise.c: every token, one op each */
void mcu_layernorm(const mcu_layernorm_t *p, const int8_t *x, int8_t *y, int32_t tokens);
void mcu_linear(const mcu_factor_t *f, const int8_t *x, int8_t *y, int32_t tokens);
void mcu_linear_qkv_heads(const mcu_block_t *b, const mcu_factor_t *f, const int8_t *x, int8_t *y,
                          int32_t h0, int32_t h1);
/* rel: the int32 [2(2 clip + 2)] scratch of relative position (0 without it), here and below */
void mcu_matmul_qk(const mcu_block_t *b, const int8_t *qkv, int8_t *scores, int32_t nheads, int32_t *rel);
void mcu_softmax(const mcu_block_t *b, const int8_t *scores, int8_t *probs, int32_t rows);
void mcu_matmul_av(const mcu_block_t *b, const int8_t *probs, const int8_t *qkv, int8_t *o, int32_t h0,
                   int32_t h1, int32_t *rel);
void mcu_add(const mcu_add_t *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n);
void mcu_gelu(const int8_t *lut, const int8_t *x, int8_t *y, int32_t n);

/* mcu_attention.c: fused attention (operator integration) */
void mcu_ln_kv(const mcu_block_t *b, const int8_t *x, int8_t *k, int8_t *v, int8_t *ln, int8_t *mid,
               int32_t h0, int32_t h1);
void mcu_attention(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v, int8_t *o,
                   int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int32_t h0, int32_t h1, int32_t *rel);
void mcu_attention_proj_residual(const mcu_block_t *b, const int8_t *x, const int8_t *k, const int8_t *v,
                                 int8_t *y, int8_t *ln, int8_t *mid, int8_t *q, int8_t *scores, int8_t *o,
                                 int8_t *proj_mid, int32_t *rel);
void mcu_proj_residual(const mcu_block_t *b, const int8_t *o, const int8_t *x, int8_t *y, int8_t *proj_mid);

/* mcu_mlp.c: fused MLP */
void mcu_mlp_residual(const mcu_block_t *b, const int8_t *x, int8_t *y, int8_t *ln, int8_t *mid1,
                      int8_t *hidden, int8_t *mid2);
void mcu_ln_fc1_gelu(const mcu_block_t *b, const int8_t *x, int8_t *hidden, int8_t *ln, int8_t *mid1);
void mcu_fc2_residual(const mcu_block_t *b, const int8_t *hidden, const int8_t *x, int8_t *y, int8_t *mid2);

/* mcu_pool.c */
void mcu_mean_pool(const mcu_head_t *h, const int8_t *x, int8_t *pooled, int32_t *sums);
void mcu_take_cls(const mcu_head_t *h, const int8_t *x, int8_t *pooled);
void mcu_ln_pool(const mcu_head_t *h, int8_t *x, int8_t *pooled, int8_t *ln, int32_t *sums, int32_t cls_pool,
                 int32_t in_place);

#endif
