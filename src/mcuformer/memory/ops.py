"""The operator list of a subnet at int8: every kernel call in execution order, with the tensors it
reads, writes and uses as scratch, and the parameters it reads from flash.

This module builds one *section* at a time (the stem, one block, the head) for one fixed set of
techniques; ``schedule.py`` picks the techniques per section and joins the sections. The C engine
implements exactly these kernels with exactly these buffers.

Arithmetic (the same whatever the techniques, so every schedule gives the same bits):

* activations are int8, one byte per element; weights int8 with per-output-channel scales;
* every dot product accumulates in an int32 *register* and is requantised (int32 multiplier and
  shift per output channel) straight to int8, so no kernel keeps an int32 buffer except mean
  pooling (one int32 sum per channel);
* LayerNorm of a token makes two passes over its E int8 values (sum and sum of squares in int32
  registers, integer square root) and then writes E int8 values: no scratch;
* softmax of a row of int8 scores: max, sum of exp (a 256-entry uint16 table per attention layer,
  indexed by max - x), then the int8 probabilities; three passes, in place, no scratch;
* GELU is a 256-entry int8 table per layer; residual and position adds requantise two int8 inputs.

Buffers and sizes: a tensor's arena bytes are its element bytes rounded up to ``ALIGN`` (4) so
that every offset stays 4-byte aligned (int32 scratch and word-wise copies need it). A tensor may
be written over another one (``alias``): the planner then gives both one buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from mcuformer.memory.techniques import Techniques

ALIGN = 4
ITEMSIZE = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4}
# Code in flash, an estimate until the engine's linker map measures it: the kernel library (every
# kernel above, portable + DSP paths, the integer sqrt/exp helpers, startup and a minimal HAL) and
# one call per op in model.c (the kernel's arguments are immediates: offsets, sizes, scalars).
CODE_LIBRARY_BYTES = 24 * 1024
CODE_PER_CALL_BYTES = 48


def align(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    n = ITEMSIZE[dtype]
    for d in shape:
        n *= d
    return n


@dataclass(frozen=True, slots=True)
class Tensor:
    """An arena buffer. ``alias``: the name of a tensor this one is written over; it then starts
    ``alias_offset`` bytes after that tensor's start (negative: before it)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "int8"
    kind: str = "activation"
    alias: str | None = None
    alias_offset: int = 0

    @property
    def nbytes(self) -> int:
        return _nbytes(self.shape, self.dtype)

    @property
    def size(self) -> int:
        """Arena bytes, alignment padding included."""
        return align(self.nbytes)


@dataclass(frozen=True, slots=True)
class Param:
    """A constant array in flash. kind: weight | bias | requant | norm | embedding | lut."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str

    @property
    def size(self) -> int:
        return align(_nbytes(self.shape, self.dtype))


@dataclass(frozen=True, slots=True, eq=False)
class Op:
    """One kernel call. ``scratch`` tensors live only during the call; ``macs`` counts its int8
    multiply-accumulates (recomputation included); ``attrs`` are the kernel's other arguments
    (head range, in-place flags, pooling)."""

    name: str
    kernel: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    scratch: tuple[Tensor, ...] = ()
    params: tuple[Param, ...] = ()
    macs: int = 0
    attrs: dict = field(default_factory=dict)

    @property
    def flash_bytes(self) -> int:
        """Bytes of the parameters this kernel reads (a parameter shared by two ops counts in both;
        ``unique_flash_bytes`` counts each once)."""
        return sum(p.size for p in self.params)


def unique_params(ops) -> dict[str, Param]:
    """Every parameter once, in first-use order."""
    seen: dict[str, Param] = {}
    for op in ops:
        for p in op.params:
            seen.setdefault(p.name, p)
    return seen


def unique_flash_bytes(ops) -> int:
    return sum(p.size for p in unique_params(ops).values())


def code_bytes(num_ops: int) -> int:
    return CODE_LIBRARY_BYTES + CODE_PER_CALL_BYTES * num_ops


# ---------------------------------------------------------------- parameters (what lives in flash)

def factor_params(name: str, fin: int, fout: int) -> tuple[Param, ...]:
    """One int8 matmul ``fin -> fout``: weights, an int32 bias per output channel (the float bias, or
    zero, plus the input zero-point correction -zp*sum(w) folded in, so the inner loop is a plain
    int8 x int8 dot product) and an int32 multiplier and int32 shift per output channel (the layout
    of CMSIS-NN's per-channel quantisation parameters)."""
    return (Param(f"{name}.weight", (fout, fin), "int8", "weight"),
            Param(f"{name}.bias", (fout,), "int32", "bias"),
            Param(f"{name}.multiplier", (fout,), "int32", "requant"),
            Param(f"{name}.shift", (fout,), "int32", "requant"))


def linear_factors(name: str, fin: int, fout: int, rank: int | None) -> list[tuple[Param, ...]]:
    """A dense linear is one factor; a low-rank one is ``down`` (fin -> rank) then ``up``."""
    if rank is None:
        return [factor_params(name, fin, fout)]
    return [factor_params(f"{name}.down", fin, rank), factor_params(f"{name}.up", rank, fout)]


def norm_params(name: str, dim: int) -> tuple[Param, ...]:
    """LayerNorm affine: gamma int16 (one per-tensor scale), beta int32 at the accumulator scale."""
    return (Param(f"{name}.weight", (dim,), "int16", "norm"), Param(f"{name}.bias", (dim,), "int32", "norm"))


def _flat(factors) -> tuple[Param, ...]:
    return tuple(p for f in factors for p in f)


def linear_macs(fin: int, fout: int, rank: int | None) -> int:
    """Multiply-accumulates of one token through a dense or low-rank linear."""
    return fin * fout if rank is None else rank * (fin + fout)


# ---------------------------------------------------------------- section shapes (cache keys)

class StemDims(NamedTuple):
    img_size: int
    patch_size: int
    in_chans: int
    embed_dim: int
    grid: int
    cls_token: bool
    pad_before: int  # zero rows (and columns) before the image; padding is never stored

    @property
    def tokens(self) -> int:
        return self.grid * self.grid + int(self.cls_token)

    @property
    def image_bytes(self) -> int:
        return self.img_size * self.img_size * self.in_chans


class ConvStemDims(NamedTuple):
    """A conv stem: ``convs`` holds (map side, in channels, out channels, pooled after) per layer."""

    img_size: int
    in_chans: int
    embed_dim: int
    convs: tuple[tuple[int, int, int, bool], ...]
    grid: int
    cls_token: bool

    @property
    def tokens(self) -> int:
        return self.grid * self.grid + int(self.cls_token)

    @property
    def image_bytes(self) -> int:
        return self.img_size * self.img_size * self.in_chans

    def stages(self) -> list[tuple[str, int, tuple[int, int, int]]]:
        """(kind 'conv' | 'pool', layer, output map (side, side, channels)) in execution order."""
        out = []
        for i, (size, _, cout, pooled) in enumerate(self.convs):
            out.append(("conv", i, (size, size, cout)))
            if pooled:
                side = (size - 1) // 2 + 1
                out.append(("pool", i, (side, side, cout)))
        return out


class BlockDims(NamedTuple):
    tokens: int
    embed_dim: int
    heads: int
    head_dim: int
    hidden: int
    qkv_rank: int | None
    proj_rank: int | None
    fc1_rank: int | None
    fc2_rank: int | None
    rel_pos: int = 0  # 2-D relative position clipping distance (0: none); see schedule.with_rel_pos

    @property
    def inner(self) -> int:
        return self.heads * self.head_dim


class HeadDims(NamedTuple):
    tokens: int
    embed_dim: int
    num_classes: int
    pool: str
    cls_token: bool


def token_tensor(name: str, tokens: int, embed_dim: int, **kw) -> Tensor:
    return Tensor(name, (tokens, embed_dim), **kw)


# ---------------------------------------------------------------- emitting ops

class _Emitter:
    def __init__(self, flags: Techniques):
        self.flags = flags
        self.ops: list[Op] = []

    def emit(self, name, kernel, inputs, outputs, scratch=(), params=(), macs=0, **attrs) -> None:
        self.ops.append(Op(name, kernel, tuple(inputs), tuple(outputs), tuple(scratch), tuple(params), macs, attrs))

    def linear(self, name: str, inp: Tensor, out_width: int, params, **attrs) -> Tensor:
        """A token-wise int8 matmul ``(N, in) -> (N, out)`` into a new buffer. (Writing it over a
        dying input, row t into ``[t*out, (t+1)*out)``, is possible when out <= in, but it saves
        nothing at any peak we measured and its shrinking buffers fragment the arena.)"""
        rows, fin = inp.shape
        out = Tensor(f"{name}.out", (rows, out_width))
        self.emit(name, "linear", [inp], [out], (), params, rows * fin * out_width, **attrs)
        return out


# ---------------------------------------------------------------- the stem

def decomposition_offset(d: StemDims) -> int:
    """Where the image must start, in bytes after the token matrix's start, so that the patch
    embedding can write its tokens over image bytes it has consumed.

    Tokens are made one row of patches at a time (row j reads image strip j: the stored rows of
    padded rows [j*p, (j+1)*p)). Token row j (patch tokens j*g .. (j+1)*g - 1, after the cls slot)
    may only cover image bytes of strips < j, so its end must not pass the start of strip j:
    ``(cls + (j+1)*g) * E <= offset + start_j``. The cls row is written last.
    """
    row_bytes = d.img_size * d.in_chans
    need = 0
    for j in range(d.grid):
        start_j = min(max(j * d.patch_size - d.pad_before, 0), d.img_size) * row_bytes
        need = max(need, (int(d.cls_token) + (j + 1) * d.grid) * d.embed_dim - start_j)
    return align(need)


def stem_ops(d: StemDims, flags: Techniques) -> list[Op]:
    """Patch embedding (a p x p, stride p int8 convolution read straight from the HWC image, no
    im2col buffer; padded pixels are zeros the kernel never stores), the cls row, the position add.

    Kernels: ``patch_embed`` writes the patch tokens and copies the cls token into row 0;
    ``pos_add`` adds the position embedding (in place with token overwriting); with operator
    integration ``patch_embed_pos`` adds the position embedding before writing each token.
    With patch decomposition the tokens are written over consumed image bytes (decomposition_offset).
    """
    e = _Emitter(flags)
    n, dim = d.tokens, d.embed_dim
    image = Tensor("image", (d.img_size, d.img_size, d.in_chans), kind="input")
    over_image = dict(alias="image", alias_offset=-decomposition_offset(d)) if flags.patch_decomposition else {}
    # the convolution is a matmul over a patch's p*p*C pixels, its weights stored in the image's HWC order
    conv = factor_params("patch_embed.proj", d.patch_size * d.patch_size * d.in_chans, dim)
    if d.cls_token:
        conv += (Param("cls_token", (dim,), "int8", "embedding"),)
    pos = Param("pos_embed", (n, dim), "int8", "embedding")
    attrs = dict(patch=d.patch_size, grid=d.grid, pad=d.pad_before,
                 macs=d.grid * d.grid * d.patch_size * d.patch_size * d.in_chans * dim)
    if flags.operator_integration:
        x = token_tensor("stem.x", n, dim, **over_image)
        e.emit("stem.patch_embed", "patch_embed_pos", [image], [x], params=conv + (pos,), **attrs)
        return e.ops
    tokens = token_tensor("stem.patches", n, dim, **over_image)
    e.emit("stem.patch_embed", "patch_embed", [image], [tokens], params=conv, **attrs)
    in_place = flags.token_overwriting
    x = token_tensor("stem.x", n, dim, alias=tokens.name if in_place else None)
    e.emit("stem.pos_add", "pos_add", [tokens], [x], params=(pos,), in_place=in_place)
    return e.ops


# ---------------------------------------------------------------- the conv stem

# rows of a stage's output kept by the row-by-row schedule: a 3x3 window (stride 1 or 2) reads three
RING_ROWS = 3


def conv_stem_ops(d: ConvStemDims, flags: Techniques) -> list[Op]:
    """The convolutional tokenizer: per layer ``conv3x3`` (3x3, padding 1, int8 weights per output
    channel, ReLU folded into the output clamp; each pixel's 3x3xC window is gathered into a ``col``
    scratch of 9*C bytes and goes through the int8 matmul) and optionally ``maxpool`` (3x3, stride 2,
    padding 1), reading and writing HWC int8 maps; the last stage writes the token matrix (its pixels row by
    row after the cls row, which it also writes), then ``pos_add`` as in the patch stem.

    With operator integration the last stage adds the position embedding as it writes each token.
    With the row-by-row schedule the whole stem is one op, ``conv_stem_rows``: every stage's output
    but the last lives only as a ring of ``RING_ROWS`` rows (scratch), a row computed when the next
    stage first needs it, so no feature map is ever whole; the image and the tokens are the only
    large buffers.
    """
    e = _Emitter(flags)
    n, dim = d.tokens, d.embed_dim
    image = Tensor("image", (d.img_size, d.img_size, d.in_chans), kind="input")
    convs = [factor_params(f"stem.conv{i}", 9 * cin, cout) for i, (_, cin, cout, _) in enumerate(d.convs)]
    tail = ((Param("cls_token", (dim,), "int8", "embedding"),) if d.cls_token else ())
    pos = Param("pos_embed", (n, dim), "int8", "embedding")
    fuse = flags.operator_integration
    tail += (pos,) if fuse else ()
    out = token_tensor("stem.x" if fuse else "stem.patches", n, dim)
    stages = d.stages()
    conv_macs = [size * size * 9 * cin * cout for size, cin, cout, _ in d.convs]
    if flags.row_by_row:
        rings = tuple(Tensor(f"stem.rows.ring{k}", (RING_ROWS, shape[1], shape[2]), kind="scratch")
                      for k, (_, _, shape) in enumerate(stages[:-1]))
        col = Tensor("stem.rows.col", (9 * max(cin for _, cin, _, _ in d.convs),), kind="scratch")
        e.emit("stem.rows", "conv_stem_rows", [image], [out], rings + (col,), tuple(p for c in convs for p in c) + tail,
               sum(conv_macs), add_pos=fuse)
    else:
        cur = image
        for k, (kind, i, shape) in enumerate(stages):
            last = k == len(stages) - 1
            nxt = out if last else Tensor(f"stem.{kind}{i}.out", shape)
            params = (convs[i] if kind == "conv" else ()) + (tail if last else ())
            col = (Tensor(f"stem.conv{i}.col", (9 * d.convs[i][1],), kind="scratch"),) if kind == "conv" else ()
            e.emit(f"stem.{kind}{i}", "conv3x3" if kind == "conv" else "maxpool", [cur], [nxt], col, params,
                   conv_macs[i] if kind == "conv" else 0, layer=i, stage=k, last=last, add_pos=fuse and last)
            cur = nxt
    if not fuse:
        in_place = flags.token_overwriting
        x = token_tensor("stem.x", n, dim, alias=out.name if in_place else None)
        e.emit("stem.pos_add", "pos_add", [out], [x], params=(pos,), in_place=in_place)
    return e.ops


# ---------------------------------------------------------------- a transformer block

def block_ops(prefix: str, d: BlockDims, x: Tensor, flags: Techniques) -> list[Op]:
    """``x + attn(norm1(x))`` then ``+ mlp(norm2(.))``; the last op's output is the block's output."""
    e = _Emitter(flags)
    p = _BlockParams(prefix, d)
    if flags.operator_integration:
        x1 = _attention_fused(e, prefix, d, x, p)
        _mlp_fused(e, prefix, d, x1, p)
    else:
        x1 = _attention_layerwise(e, prefix, d, x, p)
        _mlp_layerwise(e, prefix, d, x1, p)
    return e.ops


class _BlockParams:
    def __init__(self, prefix: str, d: BlockDims):
        e, q = d.embed_dim, d.inner
        self.norm1 = norm_params(f"{prefix}.norm1", e)
        self.qkv = linear_factors(f"{prefix}.attn.qkv", e, 3 * q, d.qkv_rank)
        self.exp_lut = Param(f"{prefix}.attn.exp_lut", (256,), "uint16", "lut")
        self.proj = linear_factors(f"{prefix}.attn.proj", q, e, d.proj_rank)
        self.norm2 = norm_params(f"{prefix}.norm2", e)
        self.fc1 = linear_factors(f"{prefix}.mlp.fc1", e, d.hidden, d.fc1_rank)
        self.gelu_lut = Param(f"{prefix}.mlp.gelu_lut", (256,), "int8", "lut")
        self.fc2 = linear_factors(f"{prefix}.mlp.fc2", d.hidden, e, d.fc2_rank)


def _linear_chain(e: _Emitter, name: str, inp: Tensor, out_width: int, factors, rank) -> Tensor:
    """A dense linear, or the two ops of a low-rank one."""
    if rank is None:
        return e.linear(name, inp, out_width, factors[0])
    mid = e.linear(f"{name}.down", inp, rank, factors[0])
    return e.linear(f"{name}.up", mid, out_width, factors[1])


def _attention_layerwise(e: _Emitter, prefix: str, d: BlockDims, x: Tensor, p: _BlockParams) -> Tensor:
    """LayerNorm, qkv, QK^T (int8 scores, one per (head, query, key)), softmax, AV, proj, residual
    add, each over all tokens. Head by head: only one head's (N, 3*hd) q/k/v slice and (N, N)
    scores exist; the heads' outputs fill the (N, H*hd) attention output in turn."""
    n, q, hd = d.tokens, d.inner, d.head_dim
    to = e.flags.token_overwriting
    a = f"{prefix}.attn"
    ln = token_tensor(f"{prefix}.norm1.out", n, d.embed_dim)
    e.emit(f"{prefix}.norm1", "layernorm", [x], [ln], params=p.norm1)
    src = ln
    if d.qkv_rank is not None:
        src = e.linear(f"{a}.qkv.down", ln, d.qkv_rank, p.qkv[0])
    out = Tensor(f"{a}.o", (n, q))
    if e.flags.head_by_head:
        for h in range(d.heads):
            head = dict(heads=(h, h + 1))
            qkv = e.linear(f"{a}.h{h}.qkv", src, 3 * hd, p.qkv[-1], **head)
            scores = Tensor(f"{a}.h{h}.scores", (n, n))
            e.emit(f"{a}.h{h}.qk", "matmul_qk", [qkv], [scores], macs=n * n * hd, **head)
            probs = Tensor(f"{a}.h{h}.probs", (n, n), alias=scores.name if to else None)
            e.emit(f"{a}.h{h}.softmax", "softmax", [scores], [probs], params=(p.exp_lut,), in_place=to)
            e.emit(f"{a}.h{h}.av", "matmul_av", [probs, qkv], [out], macs=n * n * hd, **head)
    else:
        whole = dict(heads=(0, d.heads))
        qkv = e.linear(f"{a}.qkv" + (".up" if d.qkv_rank is not None else ""), src, 3 * q, p.qkv[-1])
        scores = Tensor(f"{a}.scores", (d.heads, n, n))
        e.emit(f"{a}.qk", "matmul_qk", [qkv], [scores], macs=d.heads * n * n * hd, **whole)
        probs = Tensor(f"{a}.probs", (d.heads, n, n), alias=scores.name if to else None)
        e.emit(f"{a}.softmax", "softmax", [scores], [probs], params=(p.exp_lut,), in_place=to)
        e.emit(f"{a}.av", "matmul_av", [probs, qkv], [out], macs=d.heads * n * n * hd, **whole)
    y = _linear_chain(e, f"{a}.proj", out, d.embed_dim, p.proj, d.proj_rank)
    x1 = token_tensor(f"{prefix}.x1", n, d.embed_dim, alias=x.name if to else None)
    e.emit(f"{prefix}.add1", "add", [x, y], [x1], in_place=to)
    return x1


def _mlp_layerwise(e: _Emitter, prefix: str, d: BlockDims, x1: Tensor, p: _BlockParams) -> None:
    n = d.tokens
    to = e.flags.token_overwriting
    m = f"{prefix}.mlp"
    ln = token_tensor(f"{prefix}.norm2.out", n, d.embed_dim)
    e.emit(f"{prefix}.norm2", "layernorm", [x1], [ln], params=p.norm2)
    hidden = _linear_chain(e, f"{m}.fc1", ln, d.hidden, p.fc1, d.fc1_rank)
    act = Tensor(f"{m}.act", (n, d.hidden), alias=hidden.name if to else None)
    e.emit(f"{m}.gelu", "gelu", [hidden], [act], params=(p.gelu_lut,), in_place=to)
    y = _linear_chain(e, f"{m}.fc2", act, d.embed_dim, p.fc2, d.fc2_rank)
    out = token_tensor(f"{prefix}.out", n, d.embed_dim, alias=x1.name if to else None)
    e.emit(f"{prefix}.add2", "add", [x1, y], [out], in_place=to)


def _row_scratch(opname: str, *parts: tuple[str, int | None]) -> tuple[Tensor, ...]:
    """Per-token int8 vectors of a fused kernel; a part of width None (a dense layer has no rank
    vector) is left out."""
    return tuple(Tensor(f"{opname}.{name}", (width,), kind="scratch") for name, width in parts if width)


def _kv_macs(d: BlockDims, heads: int) -> int:
    """``ln_kv`` over all tokens: the down factor (if any) again for every call, then k and v rows."""
    ctx = d.qkv_rank or d.embed_dim
    down = d.embed_dim * d.qkv_rank if d.qkv_rank else 0
    return d.tokens * (down + heads * 2 * d.head_dim * ctx)


def _rows_macs(d: BlockDims, heads: int) -> int:
    """Fused attention over all query rows: LayerNorm's down factor recomputed per row, then per head
    q (hd outputs), N scores and the AV sum."""
    ctx = d.qkv_rank or d.embed_dim
    down = d.embed_dim * d.qkv_rank if d.qkv_rank else 0
    return d.tokens * (down + heads * d.head_dim * (ctx + 2 * d.tokens))


def _attention_fused(e: _Emitter, prefix: str, d: BlockDims, x: Tensor, p: _BlockParams) -> Tensor:
    """Fused attention.

    ``ln_kv``: per token t, LayerNorm(x_t) -> ``ln`` (E), [down -> ``mid`` (qkv rank)], then only
    the k and v rows of the heads in range -> K[t], V[t].

    ``attention``: per query row t, LayerNorm(x_t) -> ``ln``, [-> ``mid``], then per head h:
    q_{t,h} -> ``q`` (hd); int8 scores q.k_j for all j -> ``scores`` (N); softmax in place;
    o = sum_j p_j v_j -> O[t, h*hd:(h+1)*hd]. q is recomputed from x_t (never stored for all
    tokens); the LayerNorm and down projection are computed again for it (compute for memory).

    ``attention_proj_residual`` (with token overwriting): the same per query row for all heads into
    ``o`` (H*hd), then [proj down -> ``proj_mid``], proj up + residual written over x_t. x_t is
    needed only for row t's own q and residual, and K, V were built before, so it can be
    overwritten.

    ``proj_residual``: per token, [O_t -> ``proj_mid``], up, + x_t -> out_t (over x_t with token
    overwriting).

    Head by head: K_h, V_h (N x hd each) for one head at a time, the heads' outputs gathering in O
    (N x H*hd), then ``proj_residual``. (Projecting each head separately would need int32 partial
    sums of N x E, larger than O.)
    """
    n, q, hd = d.tokens, d.inner, d.head_dim
    to = e.flags.token_overwriting
    a = f"{prefix}.attn"
    qkv = p.norm1 + _flat(p.qkv)
    x1 = token_tensor(f"{prefix}.x1", n, d.embed_dim, alias=x.name if to else None)
    if e.flags.head_by_head:
        out = Tensor(f"{a}.o", (n, q))
        for h in range(d.heads):
            head = dict(heads=(h, h + 1))
            k, v = Tensor(f"{a}.h{h}.k", (n, hd)), Tensor(f"{a}.h{h}.v", (n, hd))
            name = f"{a}.h{h}.ln_kv"
            e.emit(name, "ln_kv", [x], [k, v], _row_scratch(name, ("ln", d.embed_dim), ("mid", d.qkv_rank)),
                   qkv, _kv_macs(d, 1), **head)
            name = f"{a}.h{h}.rows"
            e.emit(name, "attention", [x, k, v], [out],
                   _row_scratch(name, ("ln", d.embed_dim), ("mid", d.qkv_rank), ("q", hd), ("scores", n)),
                   qkv + (p.exp_lut,), _rows_macs(d, 1), **head)
        _proj_residual(e, a, d, out, x, x1, p, to)
        return x1
    whole = dict(heads=(0, d.heads))
    k, v = Tensor(f"{a}.k", (n, q)), Tensor(f"{a}.v", (n, q))
    name = f"{a}.ln_kv"
    e.emit(name, "ln_kv", [x], [k, v], _row_scratch(name, ("ln", d.embed_dim), ("mid", d.qkv_rank)), qkv,
           _kv_macs(d, d.heads), **whole)
    if to:
        name = f"{a}.rows_proj_residual"
        e.emit(name, "attention_proj_residual", [x, k, v], [x1],
               _row_scratch(name, ("ln", d.embed_dim), ("mid", d.qkv_rank), ("q", hd), ("scores", n),
                            ("o", q), ("proj_mid", d.proj_rank)),
               qkv + (p.exp_lut,) + _flat(p.proj),
               _rows_macs(d, d.heads) + n * linear_macs(q, d.embed_dim, d.proj_rank), in_place=True, **whole)
        return x1
    out = Tensor(f"{a}.o", (n, q))
    name = f"{a}.rows"
    e.emit(name, "attention", [x, k, v], [out],
           _row_scratch(name, ("ln", d.embed_dim), ("mid", d.qkv_rank), ("q", hd), ("scores", n)),
           qkv + (p.exp_lut,), _rows_macs(d, d.heads), **whole)
    _proj_residual(e, a, d, out, x, x1, p, to)
    return x1


def _proj_residual(e, a, d, out, x, x1, p, in_place) -> None:
    name = f"{a}.proj_residual"
    e.emit(name, "proj_residual", [out, x], [x1], _row_scratch(name, ("proj_mid", d.proj_rank)),
           _flat(p.proj), d.tokens * linear_macs(d.inner, d.embed_dim, d.proj_rank), in_place=in_place)


def _mlp_fused(e: _Emitter, prefix: str, d: BlockDims, x1: Tensor, p: _BlockParams) -> None:
    """Fused MLP.

    ``mlp_residual`` (with token overwriting): per token, LayerNorm(x_t) -> ``ln`` (E),
    [down -> ``mid1``], fc1 + GELU table -> ``hidden`` (mE), [down -> ``mid2``], fc2 + x_t written
    over x_t: one hidden vector instead of N of them.

    Without token overwriting: ``ln_fc1_gelu`` (per token, ``ln``, [``mid1``] -> GELU'd hidden row
    of the (N, mE) hidden matrix), then ``fc2_residual`` (per token, [``mid2``], + x_t -> out_t).
    """
    n = d.tokens
    m = f"{prefix}.mlp"
    fc1 = p.norm2 + _flat(p.fc1) + (p.gelu_lut,)
    fc1_macs = linear_macs(d.embed_dim, d.hidden, d.fc1_rank)
    fc2_macs = linear_macs(d.hidden, d.embed_dim, d.fc2_rank)
    if e.flags.token_overwriting:
        out = token_tensor(f"{prefix}.out", n, d.embed_dim, alias=x1.name)
        name = f"{m}.residual"
        e.emit(name, "mlp_residual", [x1], [out],
               _row_scratch(name, ("ln", d.embed_dim), ("mid1", d.fc1_rank), ("hidden", d.hidden),
                            ("mid2", d.fc2_rank)),
               fc1 + _flat(p.fc2), n * (fc1_macs + fc2_macs), in_place=True)
        return
    hidden = Tensor(f"{m}.act", (n, d.hidden))
    name = f"{m}.ln_fc1_gelu"
    e.emit(name, "ln_fc1_gelu", [x1], [hidden], _row_scratch(name, ("ln", d.embed_dim), ("mid1", d.fc1_rank)),
           fc1, n * fc1_macs)
    out = token_tensor(f"{prefix}.out", n, d.embed_dim)
    name = f"{m}.fc2_residual"
    e.emit(name, "fc2_residual", [hidden, x1], [out], _row_scratch(name, ("mid2", d.fc2_rank)), _flat(p.fc2),
           n * fc2_macs, in_place=False)


# ---------------------------------------------------------------- the head

def head_ops(d: HeadDims, x: Tensor, flags: Techniques) -> list[Op]:
    """Final LayerNorm, pooling (mean over the patch tokens, or the cls row), classifier.

    ``layernorm`` over all tokens (in place with token overwriting: x dies here), then
    ``mean_pool`` (int32 ``sums`` (E) scratch, then requantised) or ``take_cls``. With operator
    integration ``ln_pool`` normalises one token at a time (into ``ln`` (E), or in place over x_t
    with token overwriting) and adds it to the int32 sums; for cls pooling it normalises row 0
    straight into the pooled vector. ``head.fc`` is a dense linear; its int8 logits are the output.
    """
    e = _Emitter(flags)
    n, dim = d.tokens, d.embed_dim
    to = flags.token_overwriting
    norm = norm_params("norm", dim)
    pooled = Tensor("head.pooled", (dim,))
    gap = d.pool == "gap"
    sums = (Tensor("head.pool.sums", (dim,), "int32", "scratch"),) if gap else ()
    if flags.operator_integration:
        row = (Tensor("head.norm_pool.ln", (dim,), kind="scratch"),) if gap and not to else ()
        e.emit("head.norm_pool", "ln_pool", [x], [pooled], row + sums, norm, pool=d.pool,
               skip_cls=d.cls_token, in_place=to)
    else:
        xn = token_tensor("head.norm.out", n, dim, alias=x.name if to else None)
        e.emit("head.norm", "layernorm", [x], [xn], params=norm, in_place=to)
        if gap:
            e.emit("head.pool", "mean_pool", [xn], [pooled], sums, skip_cls=d.cls_token)
        else:
            e.emit("head.pool", "take_cls", [xn], [pooled])
    logits = Tensor("logits", (d.num_classes,), kind="output")
    e.emit("head.fc", "linear", [pooled], [logits], params=factor_params("head", dim, d.num_classes),
           macs=dim * d.num_classes, in_place=False)
    return e.ops

