"""The vectorised integer forward in PyTorch (int64 tensors; matmuls in float64, exact as in
``intops.dot``, or on a CPU in float32 where a bound on the operands proves that exact too), so that
int8 accuracy can be measured fast, also on a GPU. Gives the same int8 tensors as ``fakequant`` (NumPy)
bit for bit; the tests compare them."""

from __future__ import annotations

import torch

from mcuformer.quantize.intops import ADD_LEFT_SHIFT, PROB_ZERO_POINT, rel_pos_rows
from mcuformer.quantize.model import QuantModel, conv_stem_tensor
from mcuformer.space import patch_padding

I64, F64 = torch.int64, torch.float64


def requantize(acc, m, s):
    """``fixedpoint.requantize`` on int64 tensors (m, s: ints or per-channel tensors); ``acc`` is kept."""
    return requantize_(acc.clone(), m, s)


def requantize_to_int8(acc, m, s, zero_point: int):
    return requantize_to_int8_(acc.clone(), m, s, zero_point)


def requantize_(acc, m, s):
    """``requantize`` that works in place on ``acc`` (a temporary of the caller's) and returns it.

    The division by 2^e, rounded to nearest with ties away from zero, is written as one nudge and one
    shift, ``(x + (x < 0 ? n_neg : n_pos)) >> e`` with n_pos = 2^(e-1) and n_neg = 2^(e-1) - 1 (both 0 for
    e = 0), which equals ``divide_by_pot``. Everything is done in place on the one full-size tensor, since
    allocating and passing over int64 tensors is what this path spends its time on."""
    m, s = torch.as_tensor(m, dtype=I64, device=acc.device), torch.as_tensor(s, dtype=I64, device=acc.device)
    left = torch.clamp(s, min=0)
    x = acc.bitwise_left_shift_(left).mul_(m) if bool(left.any()) else acc.mul_(m)
    x.add_(1 << 30).bitwise_right_shift_(31)
    e = torch.clamp(-s, min=0)
    if not bool(e.any()):
        return x
    n_pos = (torch.ones_like(e) << e) >> 1
    neg = x >> 63  # -1 where x < 0 (an arithmetic shift), else 0: n_neg = n_pos - 1 where e > 0
    if not bool((e > 0).all()):
        neg &= -(e > 0).to(I64)
    return x.add_(n_pos).add_(neg).bitwise_right_shift_(e)


def requantize_to_int8_(acc, m, s, zero_point: int):
    """``requantize_to_int8`` in place on ``acc``, a temporary."""
    return requantize_(acc, m, s).add_(zero_point).clamp_(-128, 127)


F32_EXACT = 1 << 24  # every integer of smaller magnitude is a float32


def float32_is_ieee() -> bool:
    """Whether float32 matmuls and convolutions here are plain IEEE float32: a user's
    ``torch.set_float32_matmul_precision("medium")`` makes oneDNN compute them in bfloat16."""
    mkldnn = torch.backends.mkldnn
    modes = [getattr(getattr(mkldnn, k, None), "fp32_precision", "none") for k in ("matmul", "conv")]
    return torch.get_float32_matmul_precision() == "highest" and all(m in ("none", "ieee") for m in modes)


def _fits_float32(a32, b_max: float, k: int) -> bool:
    """Whether a float32 product of ``a32`` (integers, converted) and an operand of largest magnitude
    ``b_max`` over ``k`` terms is exact. Every partial sum, in whatever order BLAS adds, is an integer
    of magnitude at most k * max|a| * max|b|, so it is exact if that is below 2^24. A value of ``a``
    past 2^24 converts to at least 2^24 (rounding is monotone), so the bound also catches an inexact
    conversion (unless b is all zeros, when the product is exact anyway)."""
    a_max = float(a32.abs().amax()) if a32.numel() else 0.0
    return k * a_max * b_max < F32_EXACT


def _mm(a, b):
    # float64 holds every partial sum of int8 x int8 (or int8 x uint8) products exactly, so the result
    # is already a whole number: no rounding needed before the cast.
    return (a.to(F64) @ b.to(F64)).to(I64)


def _mm_any(a, b, float32: bool):
    """``_mm``, in float32 when that is provably exact (faster on a CPU)."""
    if float32:
        a32, b32 = a.to(torch.float32), b.to(torch.float32)
        b_max = float(b32.abs().amax()) if b32.numel() else 0.0
        if _fits_float32(a32, b_max, a.shape[-1]):
            return (a32 @ b32).to(I64)
    return _mm(a, b)


class TorchInt8:
    """The quantised model's arrays as int64 tensors on one device."""

    def __init__(self, q: QuantModel, device="cpu", float32: bool = True):
        """``float32``: allow the float32 matmuls where they are exact (False: all in float64)."""
        self.q, self.device, self.allow_float32 = q, torch.device(device), float32
        self.p = {k: torch.from_numpy(v.astype("int64")).to(self.device) for k, v in q.params.items()}
        # the weight matrices transposed once, in both float widths, with their largest magnitude
        self.w64 = {k: v.T.to(F64).contiguous() for k, v in self.p.items() if k.endswith(".weight") and v.ndim == 2}
        self.w32 = {k: v.to(torch.float32) for k, v in self.w64.items()}
        self.w_max = {k: float(v.abs().amax()) if v.numel() else 0.0 for k, v in self.w64.items()}
        self.conv_w32 = {}  # the conv stem's weights as (O, C, 3, 3), made on first use
        self.float32 = False

    def weight_mm(self, x, key: str):
        """x @ weight.T, exact: in float32 where ``_fits_float32`` proves it exact, else in float64."""
        if self.float32:
            x32 = x.to(torch.float32)
            if _fits_float32(x32, self.w_max[key], x.shape[-1]):
                return (x32 @ self.w32[key]).to(I64)
        return (x.to(F64) @ self.w64[key]).to(I64)

    def factor(self, name: str, x):
        p = self.p
        acc = self.weight_mm(x, f"{name}.weight").add_(p[f"{name}.bias"])
        return requantize_to_int8_(acc, p[f"{name}.multiplier"], p[f"{name}.shift"], self.q.consts[name]["zero_point"])

    def chain(self, name: str, x):
        if f"{name}.down.weight" in self.p:
            return self.factor(f"{name}.up", self.factor(f"{name}.down", x))
        return self.factor(name, x)

    def layernorm(self, name: str, x, out: str):
        e = x.shape[-1]
        s, ss = x.sum(-1, keepdim=True), (x * x).sum(-1, keepdim=True)
        var = e * ss - s * s
        r = torch.floor(torch.sqrt(var.to(F64))).to(I64)
        r = torch.where(r * r > var, r - 1, r)
        r = torch.clamp(torch.where((r + 1) * (r + 1) <= var, r + 1, r), min=1)
        n = self.p[f"{name}.weight"] * (e * x - s)
        q = torch.div(n.abs() + r // 2, r, rounding_mode="floor")
        c = self.q.consts[name]
        return requantize_to_int8_(torch.where(n < 0, -q, q).add_(self.p[f"{name}.bias"]), c["multiplier"],
                                   c["shift"], self.q.act[out][1])

    def add(self, name: str, a, an: str, b, bn: str, out: str):
        c, act = self.q.consts[name], self.q.act
        ra = requantize_((a - act[an][1]) << ADD_LEFT_SHIFT, c["m1"], c["s1"])
        rb = requantize_((b - act[bn][1]) << ADD_LEFT_SHIFT, c["m2"], c["s2"])
        return requantize_to_int8_(ra + rb, c["mo"], c["so"], act[out][1])

    def conv_stem(self, x):
        """The conv stem's layers on int64 HWC maps (B, H, W, C): the tokens (B, grid^2, E)."""
        q, arch = self.q, self.q.arch
        for i in range(arch.stem_layers):
            name = f"stem.conv{i}"
            inp = "image" if i == 0 else conv_stem_tensor(arch, i - 1)
            xp = torch.nn.functional.pad(x, (0, 0, 1, 1, 1, 1), value=q.act[inp][1])
            zp = q.consts[name]["zero_point"]
            acc = self.conv3x3(xp, f"{name}.weight").add_(self.p[f"{name}.bias"])
            x = requantize_to_int8_(acc, self.p[f"{name}.multiplier"], self.p[f"{name}.shift"], zp).clamp_(min=zp)
            if arch.stem_pool[i]:  # int8 values are exact in any float; padding never wins a max
                pooled = torch.nn.functional.max_pool2d(x.permute(0, 3, 1, 2).to(torch.float32), 3, 2, 1)
                x = pooled.permute(0, 2, 3, 1).to(I64)
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def conv3x3(self, xp, key: str):
        """The accumulators of a 3x3 convolution without padding of padded HWC maps (B, H+2, W+2, C):
        by ``conv2d`` in float32 where ``_fits_float32`` proves it exact, else as ``weight_mm`` of the
        (ky, kx, c) windows."""
        b, hp, wp, c = xp.shape
        h, w = hp - 2, wp - 2
        if self.float32:
            x32 = xp.to(torch.float32)
            if _fits_float32(x32, self.w_max[key], 9 * c):
                if key not in self.conv_w32:
                    self.conv_w32[key] = self.p[key].reshape(-1, 3, 3, c).permute(0, 3, 1, 2).to(torch.float32)
                out = torch.nn.functional.conv2d(x32.permute(0, 3, 1, 2), self.conv_w32[key])
                return out.permute(0, 2, 3, 1).to(I64)
        cols = torch.stack([xp[:, ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)], 3)
        return self.weight_mm(cols.reshape(b, h, w, 9 * c), key)

    @torch.no_grad()
    def forward(self, image):
        """int8 logits (int64 tensor, B x classes) of int8 images (B, H, W, C) (tensor or array)."""
        q, arch = self.q, self.q.arch
        # on a GPU float32 may be TF32, so there it stays float64
        self.float32 = self.allow_float32 and self.device.type == "cpu" and float32_is_ieee()
        x = torch.as_tensor(image).to(self.device, I64)
        b = x.shape[0]
        if arch.stem == "conv":
            t = self.conv_stem(x)
        else:
            pad = patch_padding(arch.img_size, arch.patch_size)
            if any(pad):
                x = torch.nn.functional.pad(x, (0, 0, pad[0], pad[1], pad[0], pad[1]))
            _, h, _, c = x.shape
            p, g = arch.patch_size, h // arch.patch_size
            x = x.reshape(b, g, p, g, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, g * g, p * p * c)
            t = self.chain("patch_embed.proj", x)
        if arch.cls_token:
            t = torch.cat([self.p["cls_token"].expand(b, 1, -1), t], 1)
        x = self.add("stem.pos_add", t, "stem.patches", self.p["pos_embed"], "stem.pos_embed", "stem.x")
        xn = "stem.x"
        for i in range(arch.depth):
            x, xn = self.block(f"blocks.{i}", arch.num_heads[i], x, xn)
        hn = self.layernorm("norm", x, "head.norm.out")
        if arch.pool == "cls":
            pooled = hn[:, 0]
        else:
            c = q.consts["head.pool"]
            tokens = hn[:, int(arch.cls_token):]
            pooled = requantize_to_int8_(tokens.sum(1) - tokens.shape[1] * q.act["head.norm.out"][1],
                                         c["multiplier"], c["shift"], q.act["head.pooled"][1])
        return self.chain("head", pooled)

    def block(self, p: str, heads: int, x, xn: str):
        q, hd = self.q, self.q.arch.head_dim
        b, n, _ = x.shape
        h = self.layernorm(f"{p}.norm1", x, f"{p}.norm1.out")
        qkv = self.chain(f"{p}.attn.qkv", h).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        c = q.consts[f"{p}.attn.qk"]
        acc = _mm_any(qkv[0], qkv[1].transpose(-1, -2), self.float32)
        if q.arch.rel_pos:  # the q . R gathers (intops.rel_pos_scores)
            dv, dh = (torch.from_numpy(r).to(self.device).expand(b, heads, n, n)
                      for r in rel_pos_rows(q.arch.num_tokens, q.arch.cls_token, q.arch.rel_pos))
            qr = _mm(qkv[0], self.p[f"{p}.attn.rel_pos.key"].T)
            acc = acc + qr.gather(-1, dv) + qr.gather(-1, dh)
        s = requantize_to_int8_(acc, c["multiplier"], c["shift"], q.act[f"{p}.attn.scores"][1])
        t = self.p[f"{p}.attn.exp_lut"][s.max(-1, keepdim=True).values - s]
        total = t.sum(-1, keepdim=True)
        pr = torch.clamp(torch.div(t * 256 + total // 2, total, rounding_mode="floor"), max=255) - 128
        c = q.consts[f"{p}.attn.av"]
        acc = _mm_any(pr - PROB_ZERO_POINT, qkv[2], self.float32)
        if q.arch.rel_pos:  # per query row, the weights summed per table row, times the table
            table = self.p[f"{p}.attn.rel_pos.value"]
            sums = torch.zeros(b, heads, n, table.shape[0], dtype=I64, device=self.device)
            sums.scatter_add_(-1, dv, pr - PROB_ZERO_POINT).scatter_add_(-1, dh, pr - PROB_ZERO_POINT)
            acc = acc + _mm(sums, table)
        o = requantize_to_int8_(acc, c["multiplier"], c["shift"], q.act[f"{p}.attn.o"][1])
        o = o.transpose(1, 2).reshape(b, n, heads * hd)
        x1 = self.add(f"{p}.add1", x, xn, self.chain(f"{p}.attn.proj", o), f"{p}.attn.proj.out", f"{p}.x1")
        h = self.chain(f"{p}.mlp.fc1", self.layernorm(f"{p}.norm2", x1, f"{p}.norm2.out"))
        h = self.p[f"{p}.mlp.gelu_lut"][h + 128]
        y = self.chain(f"{p}.mlp.fc2", h)
        return self.add(f"{p}.add2", x1, f"{p}.x1", y, f"{p}.mlp.fc2.out", f"{p}.out"), f"{p}.out"

