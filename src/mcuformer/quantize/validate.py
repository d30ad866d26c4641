"""Check a quantised model read from disk before anything uses it (export, verify, evaluate --quantized).

A ``mcuformer quantize`` folder is input like any other: a wrong shape would become an out-of-bounds
read in the generated C, and a manifest constant that is not an integer would be pasted into C source.
So every tensor is held to the shape and dtype the memory model gives its arch, every activation
scale a number in [SCALE_MIN, SCALE_MAX] and every zero point and requant constant an integer in its
range. The result has plain Python ints and floats only, made here.
"""

from __future__ import annotations

import math

import numpy as np

from mcuformer.errors import CheckpointError, McuformerError

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
SHIFT_MIN, SHIFT_MAX = -31, 30  # what fixedpoint.quantize_multiplier produces
ZP_MIN, ZP_MAX = -128, 127
# quantize writes no scale below SCALE_MIN; above SCALE_MAX an int8 tensor would span more than 2.5e8, far
# beyond any trained activation, and the header's MCUFORMER_INPUT_SCALE must stay a float32 (1e308 is inf there)
SCALE_MIN, SCALE_MAX = 1e-8, 1e6
# keys of each op's scalar constants, by the op name's last part (see quantize/model.py's _Builder)
ADD_KEYS = ("m1", "s1", "m2", "s2", "mo", "so")
MULT_KEYS = ("multiplier", "shift")


def _int(value, where: str, lo: int, hi: int) -> int:
    """An integer (an int, or a float/NumPy value with no fraction) in [lo, hi]; anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise CheckpointError(f"{where} must be an integer, got {value!r}"[:200])
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value) or not float(value).is_integer():
            raise CheckpointError(f"{where} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise CheckpointError(f"{where} = {v} is outside [{lo}, {hi}]")
    return v


def _expected_consts(arch, params) -> dict[str, tuple[str, ...]]:
    """op name -> the keys of its constants, for the arch's ops."""
    factors = sorted({n.rsplit(".", 1)[0] for n in params if n.endswith(".weight")
                      and f"{n.rsplit('.', 1)[0]}.multiplier" in params})
    out = {f: ("zero_point",) for f in factors}
    out["stem.pos_add"] = ADD_KEYS
    for i in range(arch.depth):
        p = f"blocks.{i}"
        for k in ("norm1", "norm2", "attn.qk", "attn.av"):
            out[f"{p}.{k}"] = MULT_KEYS
        out[f"{p}.add1"] = out[f"{p}.add2"] = ADD_KEYS
    out["norm"] = MULT_KEYS
    if arch.pool != "cls":
        out["head.pool"] = MULT_KEYS
    return out


def _expected_act(arch, params) -> list[str]:
    names = ["image", "stem.patches", "stem.pos_embed", "stem.x", "head.norm.out", "head.pooled", "logits"]
    for i in range(arch.depth):
        p = f"blocks.{i}"
        names += [f"{p}.{t}" for t in ("norm1.out", "attn.q", "attn.k", "attn.v", "attn.scores", "attn.probs",
                                       "attn.o", "attn.proj.out", "x1", "norm2.out", "mlp.fc1.out", "mlp.act",
                                       "mlp.fc2.out", "out")]
    # a low-rank linear's middle tensor
    names += [n[: -len(".down.weight")] + ".mid" for n in params if n.endswith(".down.weight")]
    return names


def validate_quant_model(q, where: str = "quantised model"):
    """``q`` with its constants re-made as plain Python values, or a one-line CheckpointError naming the
    folder and the key."""
    from mcuformer.memory import Techniques, build_ops, unique_params
    from mcuformer.memory.schedule import check_arch

    try:
        check_arch(q.arch)
        expected = unique_params(build_ops(q.arch, Techniques.none()))
    except McuformerError as e:
        raise CheckpointError(f"{where}: {e}") from None
    if not isinstance(q.params, dict):
        raise CheckpointError(f"{where}: params.npz is not a set of named arrays")
    missing = [n for n in expected if n not in q.params]
    extra = sorted(set(q.params) - set(expected))
    if missing:
        raise CheckpointError(f"{where}: params.npz lacks {missing[0]} (the arch {q.arch.short()} needs it)"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if extra:
        raise CheckpointError(f"{where}: params.npz holds {extra[0]!r}, which the arch {q.arch.short()} has no use for")
    params = {}
    for name, p in expected.items():
        a = q.params[name]
        if not isinstance(a, np.ndarray):
            raise CheckpointError(f"{where}: {name} is not an array")
        if str(a.dtype) != p.dtype:
            raise CheckpointError(f"{where}: {name} is {a.dtype}, the engine needs {p.dtype}")
        if tuple(a.shape) != tuple(p.shape):
            raise CheckpointError(f"{where}: {name} has shape {tuple(a.shape)}, the arch needs {tuple(p.shape)}")
        params[name] = np.ascontiguousarray(a)
    for name, a in params.items():
        if name.endswith(".shift") and a.size and (a.min() < SHIFT_MIN or a.max() > SHIFT_MAX):
            raise CheckpointError(f"{where}: {name} holds shifts outside [{SHIFT_MIN}, {SHIFT_MAX}]")
        if name.endswith(".multiplier") and a.size and a.min() < 0:
            raise CheckpointError(f"{where}: {name} holds a negative multiplier")
        if name.endswith(".bias") and f"{name[:-5]}.weight" in params and params[f"{name[:-5]}.weight"].ndim == 2:
            fin = params[f"{name[:-5]}.weight"].shape[1]
            if a.size and int(np.abs(a.astype(np.int64)).max()) + fin * 128 * 128 >= 2 ** 31:
                raise CheckpointError(f"{where}: {name} is so large that the int32 accumulator may overflow")

    act = {}
    if not isinstance(q.act, dict):
        raise CheckpointError(f"{where}: manifest 'act' must be a mapping")
    for name in _expected_act(q.arch, params):
        if name not in q.act:
            raise CheckpointError(f"{where}: manifest lacks the scale and zero point of tensor {name!r}")
    for name, v in q.act.items():
        key = f"{where}: manifest act[{name!r}]"
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise CheckpointError(f"{key} must be [scale, zero_point]")
        scale = v[0]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise CheckpointError(f"{key}: scale must be a finite positive number, got {scale!r}"[:200])
        if not SCALE_MIN <= scale <= SCALE_MAX:
            raise CheckpointError(f"{key}: scale {scale:g} is outside [{SCALE_MIN:g}, {SCALE_MAX:g}]")
        act[str(name)] = (float(scale), _int(v[1], f"{key} zero point", ZP_MIN, ZP_MAX))

    consts = {}
    if not isinstance(q.consts, dict):
        raise CheckpointError(f"{where}: manifest 'consts' must be a mapping")
    for op, keys in _expected_consts(q.arch, params).items():
        c = q.consts.get(op)
        if not isinstance(c, dict):
            raise CheckpointError(f"{where}: manifest consts lack op {op!r}")
        made = {}
        for k in keys:
            if k not in c:
                raise CheckpointError(f"{where}: manifest consts[{op!r}] lacks {k!r}")
            if k == "zero_point":
                lo, hi = ZP_MIN, ZP_MAX
            elif k.startswith("s"):  # shift, s1, s2, so
                lo, hi = SHIFT_MIN, SHIFT_MAX
            else:
                lo, hi = 0, INT32_MAX
            made[k] = _int(c[k], f"{where}: manifest consts[{op!r}][{k!r}]", lo, hi)
        consts[op] = made
    extra = sorted(set(q.consts) - set(consts))
    if extra:
        raise CheckpointError(f"{where}: manifest consts hold op {extra[0]!r}, which the arch has no use for")

    q.params, q.act, q.consts = params, act, consts
    return q
