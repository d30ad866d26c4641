"""The integer kernels of the int8 engine, on NumPy arrays with any leading dimensions.

Every function here is what one C kernel computes for one token (or one row of scores); given a
matrix it computes the same thing for every row, so the token-by-token reference and the
vectorised path share one definition. Only integer operations define the results: a matmul may
be evaluated in float64 because every int8 x int8 dot product these models have is an exact
integer below 2^53 (the memory model limits K * 127 * 128 < 2^31).
"""

from __future__ import annotations

import math

import numpy as np

from mcuformer.quantize.fixedpoint import (INT8_MAX, INT8_MIN, quantize_multiplier, requantize, requantize_to_int8,
                                           rounded_div)

ADD_LEFT_SHIFT = 20  # CMSIS-NN arm_elementwise_add_s8: inputs are scaled up by 2^20 before rescaling
EXP_ONE = 65535  # the exp table's 1.0 (uint16)
PROB_SCALE, PROB_ZERO_POINT = 1.0 / 256.0, -128  # softmax output: p = (q + 128) / 256


def dot(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """int8 (..., K) x int8 (M, K)^T -> exact int64 (..., M)."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)  # 2-D so that BLAS does it
    out = flat @ np.ascontiguousarray(w.T, dtype=np.float64)
    return np.rint(out).astype(np.int64).reshape(*x.shape[:-1], w.shape[0])


def linear(x, weight, bias, multiplier, shift, zero_point) -> np.ndarray:
    """acc = bias + sum_k x_k w_ok (the input zero point is folded into ``bias``), per-channel requant."""
    return requantize_to_int8(dot(x, weight) + bias, multiplier, shift, zero_point)


def conv3x3(x, weight, bias, multiplier, shift, in_zero_point: int, zero_point: int) -> np.ndarray:
    """3x3 convolution, padding 1, of int8 HWC maps (..., H, W, C) -> (..., H, W, O), then ReLU.

    Padded pixels hold the input zero point (a real zero), so with the zero point folded into
    ``bias`` over the full window they add nothing; weights are (O, 3*3*C) in (ky, kx, c) order.
    ReLU is the clamp of the output at its zero point (the real zero).
    """
    x = np.asarray(x)
    *lead, h, w, c = x.shape
    xp = np.pad(x, [(0, 0)] * len(lead) + [(1, 1), (1, 1), (0, 0)], constant_values=in_zero_point)
    cols = np.stack([xp[..., ky:ky + h, kx:kx + w, :] for ky in range(3) for kx in range(3)], axis=-2)
    out = linear(cols.reshape(*lead, h, w, 9 * c), weight, bias, multiplier, shift, zero_point)
    return np.maximum(out, zero_point).astype(np.int8)


def maxpool3x3s2(x) -> np.ndarray:
    """3x3 max-pool, stride 2, padding 1 (padded pixels never win) of int8 HWC maps: side ceil(H/2)."""
    x = np.asarray(x)
    *lead, h, w, _ = x.shape
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    xp = np.pad(x, [(0, 0)] * len(lead) + [(1, 1), (1, 1), (0, 0)], constant_values=INT8_MIN)
    windows = [xp[..., ky:ky + 2 * ho - 1:2, kx:kx + 2 * wo - 1:2, :] for ky in range(3) for kx in range(3)]
    return np.max(np.stack(windows), axis=0).astype(np.int8)


def isqrt(v) -> np.ndarray:
    """floor(sqrt(v)) of int64 v >= 0 (the engine: a bitwise integer square root)."""
    v = np.asarray(v, np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    return np.where((r + 1) * (r + 1) <= v, r + 1, r)


def layernorm(x, gamma, beta, multiplier, shift, zero_point) -> np.ndarray:
    """Integer LayerNorm of int8 tokens (..., E); the input scale and zero point cancel.

    s = sum x, ss = sum x^2 (int32); var_E = E*ss - s^2 (int64: E^2 times the variance);
    std_E = max(isqrt(var_E), 1); d_i = E*x_i - s, so d_i / std_E = (x_i - mean) / std;
    acc_i = rounded_div(gamma_i * d_i, std_E) + beta_i (int64 product, int32 result);
    out_i = requant(acc_i, multiplier, shift) + zero_point (one multiplier per tensor).
    """
    x = np.asarray(x, np.int64)
    e = x.shape[-1]
    s = x.sum(-1, keepdims=True)
    ss = (x * x).sum(-1, keepdims=True)
    std = np.maximum(isqrt(e * ss - s * s), 1)
    acc = rounded_div(gamma.astype(np.int64) * (e * x - s), std) + beta
    return requantize_to_int8(acc, multiplier, shift, zero_point)


def exp_table(score_scale: float) -> np.ndarray:
    """uint16 T[d] = round(65535 * exp(-score_scale * d)), d = max - x in 0..255."""
    d = np.arange(256, dtype=np.float64)
    return np.rint(EXP_ONE * np.exp(-score_scale * d)).astype(np.uint16)


def softmax(scores, table) -> np.ndarray:
    """int8 probabilities (scale 1/256, zero point -128) of int8 scores along the last axis.

    m = max x; T_j = table[m - x_j]; S = sum T_j (uint32); q_j = min((T_j * 256 + S/2) / S, 255) - 128
    (unsigned integer division, truncating).
    """
    x = np.asarray(scores, np.int64)
    t = table.astype(np.int64)[x.max(-1, keepdims=True) - x]
    total = t.sum(-1, keepdims=True)
    return (np.minimum((t * 256 + total // 2) // total, 255) - 128).astype(np.int8)


def table_lookup(x, table) -> np.ndarray:
    """An elementwise int8 -> int8 function: out = table[x + 128]."""
    return table[np.asarray(x, np.int64) + 128]


def function_table(fn, in_scale: float, in_zero: int, out_scale: float, out_zero: int) -> np.ndarray:
    """int8 table of fn: T[i] = sat(round(fn((i - 128 - in_zero) * in_scale) / out_scale) + out_zero)."""
    x = (np.arange(-128, 128, dtype=np.float64) - in_zero) * in_scale
    q = np.rint(fn(x) / out_scale) + out_zero
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact-erf GELU in float64 (what the float model computes)."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def add_params(s1: float, s2: float, s_out: float) -> dict:
    """Requant constants of a + b (CMSIS-NN's elementwise add): both inputs rescaled to
    2 * max(s1, s2) / 2^20, summed, rescaled to the output."""
    twice = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice)
    m2, sh2 = quantize_multiplier(s2 / twice)
    mo, sho = quantize_multiplier(twice / ((1 << ADD_LEFT_SHIFT) * s_out))
    return {"m1": int(m1[0]), "s1": int(sh1[0]), "m2": int(m2[0]), "s2": int(sh2[0]), "mo": int(mo[0]),
            "so": int(sho[0])}


def add(a, za: int, b, zb: int, p: dict, z_out: int) -> np.ndarray:
    """out = sat(requant(requant((a - za) << 20, m1) + requant((b - zb) << 20, m2), mo) + z_out)."""
    ra = requantize((np.asarray(a, np.int64) - za) << ADD_LEFT_SHIFT, p["m1"], p["s1"])
    rb = requantize((np.asarray(b, np.int64) - zb) << ADD_LEFT_SHIFT, p["m2"], p["s2"])
    return requantize_to_int8(ra + rb, p["mo"], p["so"], z_out)


def rel_pos_rows(num_tokens: int, cls_token: bool, clip: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, N) rows of the stacked relative position table [vertical; horizontal] (2 clip + 2 rows each)
    for query i and key j: the float model's ``rel_pos_index``, the horizontal rows offset by 2 clip + 2.
    Patch tokens a = i - cls, b = j - cls on a side x side grid: vertical row
    clamp(b / side - a / side, -clip, clip) + clip + 1, horizontal the same with b % side, a % side;
    the cls token's row and column use row 0 of each part."""
    n = num_tokens - int(cls_token)
    side = math.isqrt(n)
    idx = np.arange(n)
    dv = np.clip(idx[None, :] // side - idx[:, None] // side, -clip, clip) + clip + 1
    dh = np.clip(idx[None, :] % side - idx[:, None] % side, -clip, clip) + clip + 1
    if cls_token:
        dv, dh = (np.pad(d, ((1, 0), (1, 0))) for d in (dv, dh))
    return dv.astype(np.int64), (dh + 2 * clip + 2).astype(np.int64)


def rel_pos_scores(q, table, rows) -> np.ndarray:
    """The relative position part of the score accumulator: q_i . R[dv_ij] + q_i . R[dh_ij], exact int64.

    q (..., Nq, hd) symmetric int8, ``table`` the int8 key table (2(2 clip + 2), hd) at k's scale,
    ``rows`` the (dv, dh) pair of ``rel_pos_rows`` restricted to these Nq query rows."""
    qr = dot(np.asarray(q), table)  # (..., Nq, rows): the per-row int32 scratch of the engine
    dv, dh = (np.broadcast_to(r, qr.shape[:-1] + r.shape[-1:]) for r in rows)
    return np.take_along_axis(qr, dv, -1) + np.take_along_axis(qr, dh, -1)


def rel_pos_values(p, table, rows) -> np.ndarray:
    """The relative position part of the AV accumulator: sum_r P_ir R[r] with P_ir the sum of
    (p_ij + 128) over the keys j whose vertical or horizontal row is r (int32 sums per row).

    p (..., Nq, Nk) int8 probabilities, ``table`` the int8 value table at v's scale."""
    w = np.asarray(p, np.int64) - PROB_ZERO_POINT
    sums = np.zeros(w.shape[:-1] + (table.shape[0],), np.int64)
    for r in rows:  # one-hot (Nq, Nk, rows): for each query row, which table row each key adds to
        onehot = (r[..., None] == np.arange(table.shape[0])).astype(np.float64)
        sums += np.rint(np.einsum("...ij,ijr->...ir", w.astype(np.float64), onehot)).astype(np.int64)
    return np.rint(sums.astype(np.float64) @ table.astype(np.float64)).astype(np.int64)


def matmul_qk(q, k, multiplier, shift, zero_point, rel=None) -> np.ndarray:
    """Scores of symmetric int8 q (..., Nq, hd) and k (..., Nk, hd): requant(q . k [+ rel]) + zero point;
    ``rel``: (key table, rows) of relative position, added at the accumulator (``rel_pos_scores``)."""
    acc = np.rint(q.astype(np.float64) @ np.swapaxes(k, -1, -2).astype(np.float64)).astype(np.int64)
    if rel is not None:
        acc = acc + rel_pos_scores(q, *rel)
    return requantize_to_int8(acc, multiplier, shift, zero_point)


def matmul_av(p, v, multiplier, shift, zero_point, rel=None) -> np.ndarray:
    """o = requant(sum_j (p_j + 128) v_j [+ rel]) + zero point, probabilities p (..., Nq, Nk), symmetric v;
    ``rel``: (value table, rows) of relative position, added at the accumulator (``rel_pos_values``)."""
    acc = np.rint((p.astype(np.float64) - PROB_ZERO_POINT) @ v.astype(np.float64)).astype(np.int64)
    if rel is not None:
        acc = acc + rel_pos_values(p, *rel)
    return requantize_to_int8(acc, multiplier, shift, zero_point)


def mean_pool(x, zero_point_in: int, multiplier, shift, zero_point) -> np.ndarray:
    """Mean over the token axis (-2): int32 sums, minus N * zero point, one requant."""
    x = np.asarray(x, np.int64)
    n = x.shape[-2]
    return requantize_to_int8(x.sum(-2) - n * zero_point_in, multiplier, shift, zero_point)
