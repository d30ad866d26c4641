"""Fixed-point requantisation and the integer non-linearities against float models of their rules."""

import math
from fractions import Fraction

import numpy as np
import pytest

from mcuformer.quantize import intops
from mcuformer.quantize.fixedpoint import (divide_by_pot, quantize_multiplier, requantize, requantize_to_int8,
                                           rounded_div)


def _round_half_away(fr: Fraction) -> int:
    q = math.floor(abs(fr) + Fraction(1, 2))
    return q if fr >= 0 else -q


def test_quantize_multiplier_is_normalised_and_accurate():
    real = np.exp(np.random.default_rng(0).uniform(np.log(1e-8), np.log(1e8), 2000))
    m, s = quantize_multiplier(real)
    assert np.all((m >= 2 ** 30) & (m < 2 ** 31))
    assert np.allclose(m * np.exp2(s.astype(np.float64) - 31), real, rtol=2.0 ** -30, atol=0)
    assert quantize_multiplier(1.0) == (np.array([2 ** 30]), np.array([1]))
    assert quantize_multiplier(0.5)[1][0] == 0


def test_requantize_matches_an_exact_model_of_the_rounding_rule():
    """(v * M + 2^30) >> 31 (floor), then divide by 2^r rounding ties away from zero; exact rationals."""
    rng = np.random.default_rng(1)
    v = rng.integers(-2 ** 31 + 1, 2 ** 31, 4000)
    v[:6] = [0, 1, -1, 2 ** 31 - 1, -2 ** 31 + 1, 12345]
    real = np.exp(rng.uniform(np.log(1e-6), np.log(0.99), 4000))
    m, s = quantize_multiplier(real)
    got = requantize(v, m, s)
    for vi, mi, si, gi in zip(v.tolist(), m.tolist(), s.tolist(), got.tolist()):
        high = (vi * mi + 2 ** 30) // 2 ** 31
        assert gi == _round_half_away(Fraction(high, 2 ** -si)), (vi, mi, si)
    # and it is the real product to within one unit (float64 model of the real multiplication)
    assert np.all(np.abs(got - v * (m * np.exp2(s - 31.0))) <= 1.0)


def test_torch_requantize_equals_numpys():
    """The in-place torch requantisation (one nudge and one shift) against fixedpoint's, per channel and
    scalar, with right shifts, left shifts and no shift, and on the ties."""
    import torch

    from mcuformer.quantize import torchpath

    rng = np.random.default_rng(2)
    for trial in range(60):
        c = int(rng.integers(1, 24))
        m, s = rng.integers(2 ** 30, 2 ** 31, c), rng.integers(-31, 6, c)
        s = np.zeros(c, np.int64) if trial % 4 == 0 else np.abs(s) if trial % 4 == 1 else s
        acc = rng.integers(-2 ** 24, 2 ** 24, (40, c))
        acc[:4] = rng.integers(-300, 300, (4, c))
        t = [torch.from_numpy(a) for a in (acc, m, s)]
        assert np.array_equal(torchpath.requantize(*t).numpy(), requantize(acc, m, s)), trial
        assert np.array_equal(torchpath.requantize_to_int8(*t, -3).numpy(), requantize_to_int8(acc, m, s, -3))
    ties = np.array([5, -5, 3, -3, 4, -4, 6, -6, 0, 1, -1])
    for shift in (-1, -2, 0, 2):  # multiplier 2^30 is one half: the ties of every shift
        assert np.array_equal(torchpath.requantize(torch.from_numpy(ties), 2 ** 30, shift).numpy(),
                              requantize(ties, 2 ** 30, shift)), shift


def test_rounding_ties():
    assert divide_by_pot(np.array([5, -5, 3, -3, 4, -4, 6, -6]), 1).tolist() == [3, -3, 2, -2, 2, -2, 3, -3]
    assert divide_by_pot(np.array([-7, 7, -6, 6]), 2).tolist() == [-2, 2, -2, 2]
    assert rounded_div(np.array([5, -5, 4, -4, 7, -7]), 2).tolist() == [3, -3, 2, -2, 4, -4]
    assert rounded_div(np.array([10, -10, 11]), 4).tolist() == [3, -3, 3]
    assert requantize_to_int8(np.array([10 ** 9, -10 ** 9]), 2 ** 30, 0, 5).tolist() == [127, -128]


def test_isqrt_is_floor_sqrt_over_a_wide_range():
    rng = np.random.default_rng(2)
    v = np.concatenate([np.arange(0, 5000), rng.integers(0, 2 ** 62, 20000),
                        np.array([k * k + d for k in rng.integers(1, 2 ** 31, 2000) for d in (-1, 0, 1)])])
    assert intops.isqrt(v).tolist() == [math.isqrt(int(x)) for x in v]


@pytest.mark.parametrize("scale", [0.01, 0.05, 0.2, 1.0])
def test_exp_table_exhaustive(scale):
    t = intops.exp_table(scale)
    d = np.arange(256)
    assert t.dtype == np.uint16 and t[0] == 65535
    assert np.all(np.abs(t / 65535.0 - np.exp(-scale * d)) <= 0.5 / 65535 + 1e-12)
    assert np.all(np.diff(t.astype(int)) <= 0)


def test_softmax_within_its_bound():
    """|p_int - p| <= 1/512 (output rounding) + 2^-10 (table rounding), except that p near 1 saturates at
    255/256 (an error of at most 1/256)."""
    rng = np.random.default_rng(3)
    for scale in (0.02, 0.08, 0.3):
        table = intops.exp_table(scale)
        for n in (1, 4, 16, 64, 197):
            x = rng.integers(-128, 128, (50, n)).astype(np.int8)
            p = intops.softmax(x, table)
            deq = (p.astype(np.float64) + 128) / 256
            xi = x.astype(np.int64)
            f = np.exp(scale * (xi - xi.max(1, keepdims=True)))
            f /= f.sum(1, keepdims=True)
            err = np.abs(deq - f)
            assert np.max(err) <= 1 / 256
            assert np.all(err[p < 127] <= 1 / 512 + 2 ** -10)


def test_gelu_table_exhaustive():
    """Every int8 input: the table's value is round(gelu(x) / s_out) + z_out, so within half an output step."""
    for s_in, z_in, s_out, z_out in [(0.05, 0, 0.03, -100), (0.02, 10, 0.01, -110), (0.1, -40, 0.1, -120)]:
        t = intops.function_table(intops.gelu, s_in, z_in, s_out, z_out)
        x = (np.arange(-128, 128) - z_in) * s_in
        g = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
        deq = (t.astype(np.float64) - z_out) * s_out
        inside = (g / s_out + z_out >= -128.5) & (g / s_out + z_out <= 127.5)
        assert inside.sum() > 200
        assert np.max(np.abs(deq - g)[inside]) <= s_out / 2 + 1e-12
        assert np.array_equal(intops.table_lookup(np.arange(-128, 128), t), t)


def test_layernorm_within_one_step_of_float():
    rng = np.random.default_rng(4)
    e = 64
    g, b = rng.normal(1, 0.3, e), rng.normal(0, 0.2, e)
    sg = np.abs(g).max() / 32767
    gq, bq = np.rint(g / sg).astype(np.int16), np.rint(b / sg).astype(np.int32)
    s_out, z_out = 0.03, 3
    m, s = quantize_multiplier(sg / s_out)
    x = rng.integers(-128, 128, (500, e)).astype(np.int8)
    x[:5] = rng.integers(-3, 3, (5, e))  # small variance
    out = intops.layernorm(x, gq, bq, m, s, z_out)
    xf = x.astype(np.float64)
    f = (xf - xf.mean(1, keepdims=True)) / xf.std(1, keepdims=True) * g + b
    ideal = np.clip(np.rint(f / s_out) + z_out, -128, 127)
    assert np.max(np.abs(out - ideal)) <= 1
    assert np.mean(out == ideal) > 0.9


def test_constant_token_does_not_divide_by_zero():
    x = np.full((1, 8), 7, np.int8)
    out = intops.layernorm(x, np.full(8, 100, np.int16), np.full(8, 50, np.int32), 2 ** 30, 1, 0)
    assert out.tolist() == [[50] * 8]  # gamma * 0 + beta, times 1.0


def test_add_exhaustive_within_half_a_step():
    """All 65536 input pairs: the inputs are rescaled at 2^20 times finer steps, so only the final rounding
    matters (ties may go either way)."""
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    for s1, z1, s2, z2, so, zo in [(0.1, 3, 0.05, -7, 0.12, 1), (0.02, 0, 0.2, 0, 0.2, -5)]:
        p = intops.add_params(s1, s2, so)
        out = intops.add(a, z1, b, z2, p, zo)
        exact = (s1 * (a - z1) + s2 * (b - z2)) / so + zo
        inside = (exact > -128.5) & (exact < 127.5)
        assert np.all(np.abs(out - exact)[inside] <= 0.5 + 2 ** -12)
        assert np.all(out[exact <= -128.5] == -128) and np.all(out[exact >= 127.5] == 127)


def test_rel_pos_rows_are_the_float_models_index():
    """The integer path's table rows equal the float model's ``rel_pos_index`` (horizontal offset by 2k+2)."""
    from mcuformer.supernet.vit import rel_pos_index
    for tokens, cls, clip in [(17, True, 2), (16, False, 1), (26, True, 14), (9, False, 3)]:
        dv, dh = intops.rel_pos_rows(tokens, cls, clip)
        fv, fh = rel_pos_index(tokens, cls, clip)
        assert np.array_equal(dv, fv.numpy()) and np.array_equal(dh, fh.numpy() + 2 * clip + 2)


def test_rel_pos_accumulators_by_their_definition():
    """q . R[dv] + q . R[dh] and sum_r P_r R[r], loop by loop, against the vectorised forms."""
    rng = np.random.default_rng(3)
    tokens, clip, hd = 10, 1, 5  # 3x3 grid and a cls token
    dv, dh = intops.rel_pos_rows(tokens, True, clip)
    table = rng.integers(-127, 128, (2 * (2 * clip + 2), hd)).astype(np.int8)
    q = rng.integers(-128, 128, (tokens, hd)).astype(np.int8)
    p = rng.integers(-128, 128, (tokens, tokens)).astype(np.int8)
    s = intops.rel_pos_scores(q, table, (dv, dh))
    o = intops.rel_pos_values(p, table, (dv, dh))
    for i in range(tokens):
        for j in range(tokens):
            qi = q[i].astype(np.int64)
            assert s[i, j] == qi @ table[dv[i, j]] + qi @ table[dh[i, j]]
        expect = sum((int(p[i, j]) + 128) * (table[dv[i, j]].astype(np.int64) + table[dh[i, j]]) for j in range(tokens))
        assert np.array_equal(o[i], expect)
