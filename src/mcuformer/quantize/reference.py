"""The NumPy integer reference: runs ``mcuformer.memory.build_ops(arch)`` op by op, in its order,
each kernel token by token (row by row) as the C engine will, on one int8 image. The oracle for the
engine; its logits equal the vectorised path's (``fakequant``) bit for bit, whatever the techniques.

Tensors live in a dict by the op list's names; an output that the memory model writes over its
input (``alias``, same shape) is the same array, so a kernel that read a row it had already
overwritten would give different numbers here.
"""

from __future__ import annotations

import numpy as np

from mcuformer.memory import Techniques, build_ops
from mcuformer.memory.ops import Op
from mcuformer.quantize import intops
from mcuformer.quantize.fakequant import conv_layer, conv_stem, factor, patches, rel_pos
from mcuformer.quantize.model import QuantModel
from mcuformer.space import patch_padding


def mirror(images: np.ndarray) -> np.ndarray:
    """The horizontal mirror of an int8 HWC image, or of each of a batch (NHWC): the width is axis -2."""
    return np.ascontiguousarray(np.asarray(images)[..., ::-1, :])


class Reference:
    def __init__(self, q: QuantModel, techniques: Techniques = Techniques.all(), ops: list[Op] | None = None):
        self.q, self.arch = q, q.arch
        self.ops = ops if ops is not None else build_ops(q.arch, techniques)

    def run(self, image: np.ndarray) -> np.ndarray:
        """int8 logits of one int8 (H, W, C) image."""
        self.t = {"image": np.asarray(image, np.int8)}
        for op in self.ops:
            getattr(self, f"k_{op.kernel}")(op)
        return self.t["logits"].copy()

    def run_hflip(self, image: np.ndarray) -> np.ndarray:
        """Horizontal-flip test-time augmentation, as the engine's ``mcuformer_invoke_hflip``: the int8
        logits of the image and of its mirror, summed (int64 here, int16 in C: |sum| <= 256)."""
        return self.run(image).astype(np.int64) + self.run(mirror(image)).astype(np.int64)

    # ------------------------------------------------------------ helpers

    def out(self, op: Op, i: int = 0, shape=None) -> np.ndarray:
        """The output buffer: the aliased input's array when written over it, else a new one."""
        t = op.outputs[i]
        shape = shape or t.shape
        if t.name in self.t:  # a head-by-head op filling its part of a shared output
            return self.t[t.name]
        if t.alias in self.t and self.t[t.alias].shape == tuple(shape):
            self.t[t.name] = self.t[t.alias]
        else:
            self.t[t.name] = np.zeros(shape, np.int8)
        return self.t[t.name]

    def block_of(self, op: Op) -> str:
        return ".".join(op.name.split(".")[:2])

    def layer(self, op: Op) -> int:
        return int(op.name.split(".")[1])

    def zp(self, tensor: str) -> int:
        return self.q.act[tensor][1]

    def ln(self, name: str, x: np.ndarray) -> np.ndarray:
        c = self.q.consts[name]
        out = {"norm": "head.norm.out"}.get(name, f"{name}.out")
        return intops.layernorm(x, self.q.params[f"{name}.weight"], self.q.params[f"{name}.bias"], c["multiplier"],
                                c["shift"], self.zp(out))

    def chain(self, name: str, x: np.ndarray, rows=slice(None)) -> np.ndarray:
        """A dense linear or the low-rank pair, for one token (``rows``: of the last factor)."""
        if f"{name}.down.weight" in self.q.params:
            return factor(self.q, f"{name}.up", factor(self.q, f"{name}.down", x), rows)
        return factor(self.q, name, x, rows)

    def add(self, name: str, a, an: str, b, bn: str, out: str) -> np.ndarray:
        return intops.add(a, self.zp(an), b, self.zp(bn), self.q.consts[name], self.zp(out))

    def qkv_rows(self, layer: int, part: int, h0: int, h1: int) -> slice:
        """Output channels of part (0 q, 1 k, 2 v) for heads [h0, h1) in the [q | k | v] layout."""
        inner, hd = self.arch.num_heads[layer] * self.arch.head_dim, self.arch.head_dim
        return slice(part * inner + h0 * hd, part * inner + h1 * hd)

    def attention_row(self, p: str, layer: int, xt, K, V, h0: int, h1: int, o_row, t: int) -> None:
        """One query row t, heads [h0, h1): LayerNorm, [down], per head q, scores, softmax, AV -> o_row."""
        hd = self.arch.head_dim
        rel_k, rel_v = rel_pos(self.q, p, slice(t, t + 1))
        ctx = self.ln(f"{p}.norm1", xt)
        if f"{p}.attn.qkv.down.weight" in self.q.params:
            ctx = factor(self.q, f"{p}.attn.qkv.down", ctx)
        up = f"{p}.attn.qkv.up" if f"{p}.attn.qkv.up.weight" in self.q.params else f"{p}.attn.qkv"
        qk, av = self.q.consts[f"{p}.attn.qk"], self.q.consts[f"{p}.attn.av"]
        for h in range(h0, h1):
            qv = factor(self.q, up, ctx, self.qkv_rows(layer, 0, h, h + 1))
            cols = slice((h - h0) * hd, (h - h0 + 1) * hd)
            s = intops.matmul_qk(qv[None], K[:, cols], qk["multiplier"], qk["shift"], self.zp(f"{p}.attn.scores"),
                                 rel_k)[0]
            pr = intops.softmax(s, self.q.params[f"{p}.attn.exp_lut"])
            o_row[h * hd:(h + 1) * hd] = intops.matmul_av(pr[None], V[:, cols], av["multiplier"], av["shift"],
                                                          self.zp(f"{p}.attn.o"), rel_v)[0]

    # ------------------------------------------------------------ the stem

    def _tokens(self, op: Op, add_pos: bool) -> None:
        a = self.arch
        pix = patches(self.t["image"], a.patch_size, patch_padding(a.img_size, a.patch_size))
        x = self.out(op, shape=(a.num_tokens, a.embed_dim))
        cls = int(a.cls_token)
        for j in range(pix.shape[0]):  # row by row of patches, as the decomposition needs
            tok = factor(self.q, "patch_embed.proj", pix[j])
            if add_pos:
                tok = self.add("stem.pos_add", tok, "stem.patches", self.q.params["pos_embed"][cls + j],
                               "stem.pos_embed", "stem.x")
            x[cls + j] = tok
        if cls:  # written last: its row may lie over image bytes
            tok = self.q.params["cls_token"]
            x[0] = self.add("stem.pos_add", tok, "stem.patches", self.q.params["pos_embed"][0], "stem.pos_embed",
                            "stem.x") if add_pos else tok

    def k_patch_embed(self, op: Op) -> None:
        self._tokens(op, add_pos=False)

    def k_patch_embed_pos(self, op: Op) -> None:
        self._tokens(op, add_pos=True)

    def k_pos_add(self, op: Op) -> None:
        x, out = self.t[op.inputs[0].name], self.out(op)
        for t in range(x.shape[0]):
            out[t] = self.add("stem.pos_add", x[t], "stem.patches", self.q.params["pos_embed"][t], "stem.pos_embed",
                              "stem.x")

    # ------------------------------------------------------------ the conv stem

    def _conv_tokens(self, op: Op, fmap: np.ndarray, add_pos: bool) -> None:
        """The last stage's map into the token matrix: pixel rows after the cls row, the cls row last."""
        a = self.arch
        cls = int(a.cls_token)
        x = self.out(op, shape=(a.num_tokens, a.embed_dim))
        rows = fmap.reshape(-1, a.embed_dim)
        pos = self.q.params["pos_embed"]
        for t in range(rows.shape[0]):
            x[cls + t] = (self.add("stem.pos_add", rows[t], "stem.patches", pos[cls + t], "stem.pos_embed", "stem.x")
                          if add_pos else rows[t])
        if cls:
            tok = self.q.params["cls_token"]
            x[0] = self.add("stem.pos_add", tok, "stem.patches", pos[0], "stem.pos_embed", "stem.x") if add_pos else tok

    def _stage(self, op: Op, fmap: np.ndarray) -> None:
        if op.kernel == "conv3x3":  # the conv alone; its pool (if any) is the next stage
            out = conv_layer(self.q, fmap, op.attrs["layer"])
        else:
            out = intops.maxpool3x3s2(fmap)
        if op.attrs["last"]:
            self._conv_tokens(op, out, op.attrs["add_pos"])
        else:
            self.out(op)[:] = out

    def k_conv3x3(self, op: Op) -> None:
        self._stage(op, self.t[op.inputs[0].name])

    def k_maxpool(self, op: Op) -> None:
        self._stage(op, self.t[op.inputs[0].name])

    def k_conv_stem_rows(self, op: Op) -> None:
        """The row-by-row schedule computes the same maps (the engine keeps three rows of each)."""
        x = self.t["image"]
        for i in range(self.arch.stem_layers):
            x = conv_stem(self.q, x, i)
        self._conv_tokens(op, x, op.attrs["add_pos"])

    # ------------------------------------------------------------ layer-wise kernels

    def k_layernorm(self, op: Op) -> None:
        x, out = self.t[op.inputs[0].name], self.out(op)
        for t in range(x.shape[0]):
            out[t] = self.ln(op.params[0].name.rsplit(".", 1)[0], x[t])

    def k_linear(self, op: Op) -> None:
        x = self.t[op.inputs[0].name]
        name = op.params[0].name.rsplit(".", 1)[0]
        rows = slice(None)
        if "heads" in op.attrs:  # one head's [q | k | v] rows
            h0, h1 = op.attrs["heads"]
            layer = self.layer(op)
            parts = [np.arange(self.q.params[f"{name}.weight"].shape[0])[self.qkv_rows(layer, j, h0, h1)]
                     for j in range(3)]
            rows = np.concatenate(parts)
        if x.ndim == 1:
            self.out(op)[:] = factor(self.q, name, x, rows)
            return
        out = self.out(op)
        for t in range(x.shape[0]):
            out[t] = factor(self.q, name, x[t], rows)

    def _qkv_split(self, op: Op, qkv: np.ndarray):
        h0, h1 = op.attrs["heads"]
        w = (h1 - h0) * self.arch.head_dim
        return h0, h1, qkv[:, :w], qkv[:, w:2 * w], qkv[:, 2 * w:]

    def k_matmul_qk(self, op: Op) -> None:
        p, hd = self.block_of(op), self.arch.head_dim
        h0, h1, qm, km, _ = self._qkv_split(op, self.t[op.inputs[0].name])
        n = qm.shape[0]
        scores = self.out(op)
        scores = scores.reshape(h1 - h0, n, n)
        c = self.q.consts[f"{p}.attn.qk"]
        for h in range(h1 - h0):
            cols = slice(h * hd, (h + 1) * hd)
            for t in range(n):
                scores[h, t] = intops.matmul_qk(qm[t, cols][None], km[:, cols], c["multiplier"], c["shift"],
                                                self.zp(f"{p}.attn.scores"), rel_pos(self.q, p, slice(t, t + 1))[0])[0]

    def k_softmax(self, op: Op) -> None:
        p = self.block_of(op)
        s = self.t[op.inputs[0].name]
        out = self.out(op)
        rows, outs = s.reshape(-1, s.shape[-1]), out.reshape(-1, s.shape[-1])
        for r in range(rows.shape[0]):
            outs[r] = intops.softmax(rows[r], self.q.params[f"{p}.attn.exp_lut"])

    def k_matmul_av(self, op: Op) -> None:
        p, hd = self.block_of(op), self.arch.head_dim
        probs = self.t[op.inputs[0].name]
        h0, h1, _, _, vm = self._qkv_split(op, self.t[op.inputs[1].name])
        n = vm.shape[0]
        probs = probs.reshape(h1 - h0, n, n)
        o = self.out(op)
        c = self.q.consts[f"{p}.attn.av"]
        for h in range(h1 - h0):
            for t in range(n):
                o[t, (h0 + h) * hd:(h0 + h + 1) * hd] = intops.matmul_av(
                    probs[h, t][None], vm[:, h * hd:(h + 1) * hd], c["multiplier"], c["shift"],
                    self.zp(f"{p}.attn.o"), rel_pos(self.q, p, slice(t, t + 1))[1])[0]

    def k_add(self, op: Op) -> None:
        p = self.block_of(op)
        a, b = (self.t[i.name] for i in op.inputs)
        first = op.name.endswith("add1")
        an = self.arch_prev(p) if first else f"{p}.x1"
        bn = f"{p}.attn.proj.out" if first else f"{p}.mlp.fc2.out"
        out = self.out(op)
        for t in range(a.shape[0]):
            out[t] = self.add(op.name, a[t], an, b[t], bn, f"{p}.x1" if first else f"{p}.out")

    def arch_prev(self, p: str) -> str:
        """The name (in ``QuantModel.act``) of block p's input."""
        i = int(p.split(".")[1])
        return "stem.x" if i == 0 else f"blocks.{i - 1}.out"

    def k_gelu(self, op: Op) -> None:
        x, out = self.t[op.inputs[0].name], self.out(op)
        for t in range(x.shape[0]):
            out[t] = intops.table_lookup(x[t], self.q.params[f"{self.block_of(op)}.mlp.gelu_lut"])

    def k_mean_pool(self, op: Op) -> None:
        x = self.t[op.inputs[0].name]
        sums = np.zeros(x.shape[1], np.int64)  # the int32 scratch
        for t in range(int(op.attrs["skip_cls"]), x.shape[0]):
            sums += x[t]
        self.out(op)[:] = self.pool_out(sums)

    def pool_out(self, sums: np.ndarray) -> np.ndarray:
        n = self.arch.num_tokens - int(self.arch.cls_token)
        c = self.q.consts["head.pool"]
        return intops.requantize_to_int8(sums - n * self.zp("head.norm.out"), c["multiplier"], c["shift"],
                                         self.zp("head.pooled"))

    def k_take_cls(self, op: Op) -> None:
        self.out(op)[:] = self.t[op.inputs[0].name][0]

    # ------------------------------------------------------------ fused kernels

    def k_ln_kv(self, op: Op) -> None:
        p, layer = self.block_of(op), self.layer(op)
        h0, h1 = op.attrs["heads"]
        x = self.t[op.inputs[0].name]
        K, V = self.out(op, 0), self.out(op, 1)
        for t in range(x.shape[0]):
            ctx = self.ln(f"{p}.norm1", x[t])
            if f"{p}.attn.qkv.down.weight" in self.q.params:
                ctx = factor(self.q, f"{p}.attn.qkv.down", ctx)
            up = f"{p}.attn.qkv.up" if f"{p}.attn.qkv.up.weight" in self.q.params else f"{p}.attn.qkv"
            K[t] = factor(self.q, up, ctx, self.qkv_rows(layer, 1, h0, h1))
            V[t] = factor(self.q, up, ctx, self.qkv_rows(layer, 2, h0, h1))

    def k_attention(self, op: Op) -> None:
        p, layer = self.block_of(op), self.layer(op)
        h0, h1 = op.attrs["heads"]
        x, K, V = (self.t[i.name] for i in op.inputs)
        o = self.out(op)
        for t in range(x.shape[0]):
            self.attention_row(p, layer, x[t], K, V, h0, h1, o[t], t)

    def k_attention_proj_residual(self, op: Op) -> None:
        p, layer = self.block_of(op), self.layer(op)
        x, K, V = (self.t[i.name] for i in op.inputs)
        out = self.out(op)  # x itself: row t is written over x_t after its last read
        o_row = np.zeros(self.arch.num_heads[layer] * self.arch.head_dim, np.int8)
        for t in range(x.shape[0]):
            self.attention_row(p, layer, x[t], K, V, *op.attrs["heads"], o_row, t)
            y = self.chain(f"{p}.attn.proj", o_row)
            out[t] = self.add(f"{p}.add1", x[t], self.arch_prev(p), y, f"{p}.attn.proj.out", f"{p}.x1")

    def k_proj_residual(self, op: Op) -> None:
        p = self.block_of(op)
        o, x = (self.t[i.name] for i in op.inputs)
        out = self.out(op)
        for t in range(x.shape[0]):
            y = self.chain(f"{p}.attn.proj", o[t])
            out[t] = self.add(f"{p}.add1", x[t], self.arch_prev(p), y, f"{p}.attn.proj.out", f"{p}.x1")

    def mlp_hidden(self, p: str, xt: np.ndarray) -> np.ndarray:
        h = self.chain(f"{p}.mlp.fc1", self.ln(f"{p}.norm2", xt))
        return intops.table_lookup(h, self.q.params[f"{p}.mlp.gelu_lut"])

    def k_mlp_residual(self, op: Op) -> None:
        p = self.block_of(op)
        x = self.t[op.inputs[0].name]
        out = self.out(op)
        for t in range(x.shape[0]):
            y = self.chain(f"{p}.mlp.fc2", self.mlp_hidden(p, x[t]))
            out[t] = self.add(f"{p}.add2", x[t], f"{p}.x1", y, f"{p}.mlp.fc2.out", f"{p}.out")

    def k_ln_fc1_gelu(self, op: Op) -> None:
        p = self.block_of(op)
        x, out = self.t[op.inputs[0].name], self.out(op)
        for t in range(x.shape[0]):
            out[t] = self.mlp_hidden(p, x[t])

    def k_fc2_residual(self, op: Op) -> None:
        p = self.block_of(op)
        hidden, x = (self.t[i.name] for i in op.inputs)
        out = self.out(op)
        for t in range(x.shape[0]):
            y = self.chain(f"{p}.mlp.fc2", hidden[t])
            out[t] = self.add(f"{p}.add2", x[t], f"{p}.x1", y, f"{p}.mlp.fc2.out", f"{p}.out")

    def k_ln_pool(self, op: Op) -> None:
        x = self.t[op.inputs[0].name]
        if op.attrs["pool"] == "cls":
            self.out(op)[:] = self.ln("norm", x[0])
            return
        sums = np.zeros(x.shape[1], np.int64)
        for t in range(int(op.attrs["skip_cls"]), x.shape[0]):
            row = self.ln("norm", x[t])
            if op.attrs["in_place"]:
                x[t] = row
            sums += row
        self.out(op)[:] = self.pool_out(sums)


def reference_logits(q: QuantModel, images: np.ndarray, techniques: Techniques = Techniques.all()) -> np.ndarray:
    """int8 logits (B, classes) of int8 images (B, H, W, C), one image at a time."""
    ref = Reference(q, techniques)
    return np.stack([ref.run(im) for im in images])
