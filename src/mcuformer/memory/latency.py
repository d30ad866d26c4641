"""The latency model: instructions of each kernel call predicted from its shape, for the schedule choice
(``schedule.py``: the fastest schedule that fits) and the search (``--max-latency-ms``).

Each op's work is counted in a few units that the C engine's cost follows (``op_work``): MACs of its
token-wise matmuls, the output rows those matmuls requantise and how many matmul calls make them, the
MACs and outputs of attention's QK^T and AV, the elements of its LayerNorms (and their rows), softmax,
adds, tables and pooling, and one call. Predicted instructions are the dot product of that work with
instructions per unit (``COEFFICIENTS``), fitted by least squares on per-call instruction counts from
the emulated Cortex-M7 (``benchmarks/latency_model.py``: QEMU mps2-an500 -icount shift=0, DSP build).

The conv stem's kernels (``conv3x3``, ``maxpool``, ``conv_stem_rows``) are not in that fit yet: their
rules borrow the patch stem's instructions per MAC and the pooling rate (an approximation, see
docs/conv-stem.md for their measured instructions).

These are QEMU INSTRUCTION COUNTS, not cycles: latency in ms = instructions / clock, which assumes one
instruction per cycle (a Cortex-M7 dual-issues some pairs but waits on flash and loads; no cycle-accurate
model is available here).
"""

from __future__ import annotations

from collections import Counter

from mcuformer.memory.ops import Op

UNITS = ("mm_macs", "mm_outputs", "mm_calls", "stem_macs", "attn_macs", "attn_outputs", "ln_elements", "ln_rows",
         "softmax_elements", "add_elements", "table_elements", "pool_elements", "calls")

# instructions per unit of work, fitted on the emulator by benchmarks/latency_model.py (DSP build, 20 random
# archs; on 20 others whole-inference predictions were within 4.6 %: benchmarks/results/latency_model.json)
COEFFICIENTS = {
    "mm_macs": 1.22, "mm_outputs": 23.005, "mm_calls": 305.251, "stem_macs": 2.523, "attn_macs": 1.837,
    "attn_outputs": 32.696, "ln_elements": 37.507, "ln_rows": 199.083, "softmax_elements": 21.489,
    "add_elements": 32.078, "table_elements": 5.972, "pool_elements": 11.491, "calls": 82.224,
}


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _scratch(op: Op, suffix: str) -> int:
    """The width of the op's per-row scratch vector ``<op>.<suffix>`` (0 when it has none)."""
    for t in op.scratch:
        if t.name.endswith("." + suffix):
            return t.shape[0]
    return 0


def op_work(op: Op) -> Counter:
    """The units of work of one kernel call (see the module docstring)."""
    w: Counter = Counter(calls=1)
    k = op.kernel
    x = op.inputs[0] if op.inputs else None
    if k in ("patch_embed", "patch_embed_pos"):
        n, e = op.outputs[0].shape
        w.update(stem_macs=op.macs, mm_outputs=n * e)
        if k == "patch_embed_pos":
            w.update(add_elements=n * e)
    elif k == "pos_add" or k == "add":
        w.update(add_elements=_size(op.outputs[0].shape))
    elif k == "gelu":
        w.update(table_elements=_size(op.outputs[0].shape))
    elif k == "softmax":
        w.update(softmax_elements=_size(x.shape))
    elif k == "layernorm":
        w.update(ln_elements=_size(x.shape), ln_rows=x.shape[0])
    elif k == "linear":
        rows = x.shape[0] if len(x.shape) == 2 else 1
        width = op.outputs[0].shape[-1]
        w.update(mm_macs=op.macs, mm_outputs=rows * width, mm_calls=rows * (3 if "heads" in op.attrs else 1))
    elif k in ("matmul_qk", "matmul_av"):
        h0, h1 = op.attrs["heads"]
        n = x.shape[0] if k == "matmul_qk" else op.inputs[1].shape[0]
        outputs = (h1 - h0) * n * n if k == "matmul_qk" else op.macs // n  # scores, or O's elements
        w.update(attn_macs=op.macs, attn_outputs=outputs)
    elif k == "mean_pool":
        w.update(pool_elements=_size(x.shape))
    elif k == "take_cls":
        pass
    elif k in ("conv3x3", "conv_stem_rows"):
        # not calibrated yet: the patch stem's instructions per MAC (measured 1.3-3.4 for these convs)
        w.update(stem_macs=op.macs)
        if op.attrs.get("add_pos"):
            w.update(add_elements=_size(op.outputs[0].shape))
    elif k == "maxpool":
        w.update(pool_elements=3 * _size(op.outputs[0].shape) // 2)  # ~17 instructions per output byte
    elif k == "ln_pool":
        n, e = x.shape
        rows = 1 if op.attrs.get("pool") == "cls" else n - int(op.attrs.get("skip_cls", 0))
        w.update(ln_elements=rows * e, ln_rows=rows, pool_elements=rows * e)
    else:
        _fused_work(op, w)
    return w


def _fused_work(op: Op, w: Counter) -> None:
    """The fused kernels: attention rows (with or without the projection), ln_kv, the MLP kernels."""
    k = op.kernel
    x = op.inputs[0]
    n, e = x.shape
    mid = _scratch(op, "mid")
    if k == "ln_kv":
        width = op.outputs[0].shape[1]
        w.update(ln_elements=n * e, ln_rows=n, mm_macs=op.macs, mm_outputs=n * (2 * width + mid),
                 mm_calls=n * (2 + bool(mid)))
    elif k in ("attention", "attention_proj_residual"):
        h0, h1 = op.attrs["heads"]
        heads, hd = h1 - h0, _scratch(op, "q")
        attn = 2 * n * heads * n * hd
        w.update(ln_elements=n * e, ln_rows=n, attn_macs=attn, attn_outputs=n * heads * (n + hd),
                 softmax_elements=n * heads * n, mm_macs=op.macs - attn, mm_outputs=n * (heads * hd + mid),
                 mm_calls=n * (heads + bool(mid)))
        if k == "attention_proj_residual":
            proj_mid = _scratch(op, "proj_mid")
            w.update(mm_outputs=n * (e + proj_mid), mm_calls=n * (1 + bool(proj_mid)), add_elements=n * e)
    elif k == "proj_residual":
        proj_mid = _scratch(op, "proj_mid")
        w.update(mm_macs=op.macs, mm_outputs=n * (e + proj_mid), mm_calls=n * (1 + bool(proj_mid)),
                 add_elements=n * e)
    elif k in ("mlp_residual", "ln_fc1_gelu", "fc2_residual"):
        hidden = op.outputs[0].shape[1] if k == "ln_fc1_gelu" else (x.shape[1] if k == "fc2_residual"
                                                                   else _scratch(op, "hidden"))
        mid1, mid2 = _scratch(op, "mid1"), _scratch(op, "mid2")
        first, second = k != "fc2_residual", k != "ln_fc1_gelu"
        rows = first * (hidden + mid1) + second * (_out_width(op) + mid2)
        calls = first * (1 + bool(mid1)) + second * (1 + bool(mid2))
        w.update(mm_macs=op.macs, mm_outputs=n * rows, mm_calls=n * calls)
        if first:  # LayerNorm, fc1 with the GELU table in its output stage
            w.update(ln_elements=n * e, ln_rows=n, table_elements=n * hidden)
        if second:  # fc2 with the residual add in its output stage
            w.update(add_elements=n * _out_width(op))
    else:
        raise ValueError(f"the latency model has no rule for kernel {k!r}")


def _out_width(op: Op) -> int:
    return op.outputs[0].shape[1]


def op_instructions(op: Op, coefficients: dict | None = None) -> float:
    """Predicted instructions of one kernel call on the Cortex-M7 (DSP build)."""
    c = coefficients or COEFFICIENTS
    return sum(c[unit] * amount for unit, amount in op_work(op).items())


def predicted_instructions(ops, coefficients: dict | None = None) -> float:
    """Predicted instructions of one inference (a whole op list)."""
    return sum(op_instructions(op, coefficients) for op in ops)


def latency_ms(instructions: float, clock_mhz: float) -> float:
    """Milliseconds at ``clock_mhz``, assuming one instruction per cycle (see the module docstring)."""
    return instructions / (clock_mhz * 1e3)
