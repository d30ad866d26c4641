"""Fixed-point requantisation, bit-exact with CMSIS-NN's ``arm_nn_requantize`` (default, double rounding).

A real multiplier ``m > 0`` is stored as an int32 ``multiplier`` in [2^30, 2^31) and an int32 ``shift``
(positive: left) with ``m ~= multiplier * 2^(shift - 31)`` (TFLite ``QuantizeMultiplier``). Then

    requantize(v, multiplier, shift) =
        divide_by_pot(doubling_high_mult(v << max(shift, 0), multiplier), max(-shift, 0))

    doubling_high_mult(a, b) = (a * b + 2^30) >> 31           (int64 product, arithmetic shift: floor)
    divide_by_pot(x, e)      = x / 2^e rounded to nearest, ties away from zero

All functions take int64 NumPy arrays (or scalars) and return int64.
"""

from __future__ import annotations

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int64 arrays for positive real multipliers (zero gives (0, 0))."""
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    if np.any(real < 0) or not np.all(np.isfinite(real)):
        raise ValueError("multipliers must be finite and >= 0")
    frac, exp = np.frexp(real)  # real = frac * 2^exp, frac in [0.5, 1)
    mult = np.round(frac * (1 << 31)).astype(np.int64)
    carry = mult == (1 << 31)  # frac rounded up to 1.0
    mult = np.where(carry, mult // 2, mult)
    shift = exp.astype(np.int64) + carry
    tiny = shift < -31  # below the smallest representable multiplier: flush to zero
    mult, shift = np.where(tiny, 0, mult), np.where(tiny, 0, shift)
    if np.any(shift > 30):
        raise ValueError("a requantisation multiplier is too large (>= 2^30)")
    return mult, shift


def doubling_high_mult(a, b) -> np.ndarray:
    return (np.asarray(a, np.int64) * np.asarray(b, np.int64) + (1 << 30)) >> 31


def divide_by_pot(x, exponent) -> np.ndarray:
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def requantize(v, multiplier, shift) -> np.ndarray:
    """int32 accumulator(s) times the fixed-point multiplier (per element or broadcast)."""
    v, shift = np.asarray(v, np.int64), np.asarray(shift, np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    return divide_by_pot(doubling_high_mult(v << left, multiplier), right)


def requantize_to_int8(acc, multiplier, shift, zero_point=0) -> np.ndarray:
    """The kernels' output stage: requantise, add the output zero point, saturate to int8."""
    out = requantize(acc, multiplier, shift) + zero_point
    return np.clip(out, INT8_MIN, INT8_MAX).astype(np.int8)


def rounded_div(n, d) -> np.ndarray:
    """n / d for d > 0, rounded to nearest with ties away from zero (the C engine:
    ``n >= 0 ? (n + d/2) / d : -((-n + d/2) / d)``)."""
    n, d = np.asarray(n, np.int64), np.asarray(d, np.int64)
    q = (np.abs(n) + d // 2) // d
    return np.where(n < 0, -q, q)
