"""The quantised model: int8/int16/int32 arrays named as the memory model's flash parameters, the
activation scales and zero points, and the per-tensor requant constants; saved as a folder
(``params.npz`` + ``manifest.json``) and loaded without pickle."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mcuformer.errors import CheckpointError
from mcuformer.quantize import intops
from mcuformer.quantize.fixedpoint import quantize_multiplier
from mcuformer.quantize.validate import SCALE_MIN
from mcuformer.space import Arch
from mcuformer.supernet.vit import LowRankLinear, ViT
from mcuformer.utils.checks import input_file
from mcuformer.utils.io import atomic_write_all, text_file

FORMAT = "mcuformer-int8-v1"
# int8 tensors with zero point 0: the image (zero padding stays zero) and q, k, v (the attention
# kernels then need no offsets and the qkv linear one output zero point for its three parts)
SYMMETRIC_SUFFIXES = (".attn.q", ".attn.k", ".attn.v")
MIN_SCALE = SCALE_MIN  # the smallest scale quantize writes, and validate accepts
SAVED_FILES = ("params.npz", "manifest.json")
MAX_PARAMS_BYTES = 1 << 30  # all arrays together, uncompressed: far above any microcontroller's flash
MAX_MANIFEST_BYTES = 16 << 20


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz, refusing pickles and members whose uncompressed size passes the cap."""
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    if total > MAX_PARAMS_BYTES:
        raise CheckpointError(f"{path} unpacks to {total:,} bytes, more than the {MAX_PARAMS_BYTES >> 20} MB cap")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class QuantModel:
    arch: Arch
    params: dict[str, np.ndarray] = field(default_factory=dict)  # flash arrays, memory-model names
    act: dict[str, tuple[float, int]] = field(default_factory=dict)  # tensor -> (scale, zero point)
    consts: dict[str, dict] = field(default_factory=dict)  # op -> scalar requant constants
    info: dict = field(default_factory=dict)  # provenance (checkpoint, calibration)

    def quantize_image(self, images: torch.Tensor) -> np.ndarray:
        """Float (B, C, H, W) normalised images -> int8 (B, H, W, C), the engine's input layout."""
        scale, _ = self.act["image"]
        q = torch.clamp(torch.round(images.float() / scale), -128, 127).to(torch.int8)
        return q.permute(0, 2, 3, 1).contiguous().numpy()

    def save(self, folder) -> None:
        # both files are written before either replaces an old one: a failure leaves the old pair
        atomic_write_all(self.files(folder))

    def files(self, folder) -> list:
        """The folder's files as ``atomic_write_all`` takes them, for a writer that saves more beside them."""
        folder = Path(folder)
        manifest = json.dumps({"format": FORMAT, "arch": self.arch.to_dict(),
                               "act": {k: list(v) for k, v in self.act.items()},
                               "consts": self.consts, "info": self.info}, indent=2) + "\n"
        return [(folder / "params.npz", lambda f: np.savez(f, **self.params), "wb"),
                text_file(folder / "manifest.json", manifest)]

    @classmethod
    def load(cls, folder) -> "QuantModel":
        """Read a folder without trusting it: no pickle, capped sizes; the values are checked by
        ``mcuformer.quantize.validate`` before export, verify or evaluation use them."""
        folder = Path(folder)
        if not folder.is_dir():
            what = "a file, not a folder" if folder.exists() else "no such folder"
            raise CheckpointError(f"{folder}: not a quantised model ({what})")
        try:
            manifest_file = input_file(folder / "manifest.json", "manifest", CheckpointError)
            params_file = input_file(folder / "params.npz", "params", CheckpointError)
            if manifest_file.stat().st_size > MAX_MANIFEST_BYTES:
                raise CheckpointError(f"{manifest_file} is larger than {MAX_MANIFEST_BYTES >> 20} MB")
            manifest = json.loads(manifest_file.read_text())
            params = _load_npz(params_file)
        except CheckpointError as exc:
            raise CheckpointError(f"{folder}: not a quantised model ({exc})") from None
        except RecursionError:
            raise CheckpointError(f"{folder}: not a quantised model (manifest.json is nested too deeply)") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise CheckpointError(f"{folder}: not a quantised model ({str(exc)[:200]})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise CheckpointError(f"{folder}: format {fmt!r}, expected {FORMAT}")
        for k, typ in (("arch", dict), ("act", dict), ("consts", dict), ("info", dict)):
            if not isinstance(manifest.get(k, {}), typ):
                raise CheckpointError(f"{folder}/manifest.json: '{k}' must be a mapping")
        checkpoint = manifest.get("info", {}).get("checkpoint")
        if checkpoint is not None and not (isinstance(checkpoint, str) and checkpoint and "\0" not in checkpoint):
            raise CheckpointError(f"{folder}/manifest.json: info 'checkpoint' must be a path, not {checkpoint!r:.40}")
        arch = Arch.from_dict(manifest.get("arch"), where=f"{folder}/manifest.json arch")
        act = {}
        for k, v in manifest.get("act", {}).items():
            if not isinstance(v, list) or len(v) != 2:
                raise CheckpointError(f"{folder}/manifest.json: act[{k!r}] must be [scale, zero_point]")
            act[k] = (v[0], v[1])  # types and ranges: quantize.validate
        return cls(arch, params, act, manifest.get("consts", {}), manifest.get("info", {}))


def conv_stem_tensor(arch: Arch, layer: int) -> str:
    """The int8 tensor a conv-stem layer (and its max-pool, which keeps the scale) writes: the last
    layer's is the patch tokens' ``stem.patches``."""
    return "stem.patches" if layer == arch.stem_layers - 1 else f"stem.conv{layer}.out"


def act_qparams(name: str, lo: float, hi: float) -> tuple[float, int]:
    """Per-tensor int8 (scale, zero point) covering [lo, hi] and 0."""
    if name.endswith(".attn.probs"):
        return intops.PROB_SCALE, intops.PROB_ZERO_POINT
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if name == "image" or name.endswith(SYMMETRIC_SUFFIXES):
        return max(max(-lo, hi) / 127.0, MIN_SCALE), 0
    scale = max((hi - lo) / 255.0, MIN_SCALE)
    return scale, int(np.clip(np.rint(-128.0 - lo / scale), -128, 127))


def _mult(real) -> tuple[np.ndarray, np.ndarray]:
    m, s = quantize_multiplier(real)
    return m.astype(np.int32), s.astype(np.int32)


class _Builder:
    def __init__(self, model: ViT, ranges: dict[str, list[float]]):
        self.model = model
        self.q = QuantModel(model.arch)
        for name, (lo, hi) in ranges.items():
            self.q.act[name] = act_qparams(name, lo, hi)

    def factor(self, name: str, weight: torch.Tensor, bias, inp: str, out_scales: np.ndarray, out_zero: int):
        """One int8 matmul: per-channel symmetric weights, int32 bias with -z_in * sum(w) folded in."""
        w = weight.detach().double().numpy()
        sw = np.maximum(np.abs(w).max(1) / 127.0, MIN_SCALE)
        wq = np.clip(np.rint(w / sw[:, None]), -127, 127).astype(np.int8)
        s_in, z_in = self.q.act[inp]
        b = np.zeros(w.shape[0]) if bias is None else bias.detach().double().numpy()
        bq = np.rint(b / (s_in * sw)) - z_in * wq.astype(np.int64).sum(1)
        if np.abs(bq).max() + w.shape[1] * 128 * 128 >= 2 ** 31:  # the engine's int32 accumulator
            raise CheckpointError(f"{name}: bias plus dot product may overflow int32")
        self.q.params[f"{name}.weight"] = wq
        self.q.params[f"{name}.bias"] = bq.astype(np.int32)
        self.q.params[f"{name}.multiplier"], self.q.params[f"{name}.shift"] = _mult(s_in * sw / out_scales)
        self.q.consts[name] = {"zero_point": int(out_zero)}

    def linear(self, name: str, mod, inp: str, out: str, out_scales=None):
        """A dense or low-rank linear (down -> ``name.mid`` -> up) from tensor ``inp`` to ``out``."""
        s_out, z_out = self.q.act[out]
        scales = np.full(mod.out_features, s_out) if out_scales is None else out_scales
        if isinstance(mod, LowRankLinear):
            mid = f"{name}.mid"
            self.factor(f"{name}.down", mod.down.weight, None, inp, np.full(mod.rank, self.q.act[mid][0]),
                        self.q.act[mid][1])
            self.factor(f"{name}.up", mod.up.weight, mod.up.bias, mid, scales, z_out)
        else:
            self.factor(name, mod.weight, mod.bias, inp, scales, z_out)

    def norm(self, name: str, mod, out: str):
        """gamma int16 at s_g = max|gamma| / 32767, beta int32 at s_g, one output multiplier s_g / s_out."""
        g, b = mod.weight.detach().double().numpy(), mod.bias.detach().double().numpy()
        sg = max(np.abs(g).max() / 32767.0, MIN_SCALE)
        self.q.params[f"{name}.weight"] = np.rint(g / sg).astype(np.int16)
        self.q.params[f"{name}.bias"] = np.rint(b / sg).astype(np.int32)
        m, s = _mult(sg / self.q.act[out][0])
        self.q.consts[name] = {"multiplier": int(m[0]), "shift": int(s[0])}

    def add(self, name: str, a: str, b: str, out: str):
        self.q.consts[name] = intops.add_params(self.q.act[a][0], self.q.act[b][0], self.q.act[out][0])

    def build(self) -> QuantModel:
        model, q, arch = self.model, self.q, self.model.arch
        if arch.stem == "conv":
            inp = "image"
            for i, conv in enumerate(model.patch_embed.convs):
                # weights in the (ky, kx, c) order of the HWC input window; ReLU is the output clamp
                w_hwc = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)
                self.linear(f"stem.conv{i}", _Dense(w_hwc, conv.bias), inp, conv_stem_tensor(arch, i))
                inp = conv_stem_tensor(arch, i)
        else:
            conv = model.patch_embed.proj
            w_hwc = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # patch pixels in HWC order
            self.linear("patch_embed.proj", _Dense(w_hwc, conv.bias), "image", "stem.patches")
        s_p, z_p = q.act["stem.patches"]
        if model.cls_token is not None:
            q.params["cls_token"] = np.clip(np.rint(model.cls_token.detach().double().numpy().reshape(-1) / s_p)
                                            + z_p, -128, 127).astype(np.int8)
        pos = model.pos_embed.detach().double().numpy()[0]
        s_pos = max(np.abs(pos).max() / 127.0, MIN_SCALE)
        q.params["pos_embed"] = np.rint(pos / s_pos).astype(np.int8)
        q.act["stem.pos_embed"] = (s_pos, 0)
        self.add("stem.pos_add", "stem.patches", "stem.pos_embed", "stem.x")
        x = "stem.x"
        for i, blk in enumerate(model.blocks):
            x = self.block(f"blocks.{i}", blk, x)
        self.norm("norm", model.norm, "head.norm.out")
        if arch.pool == "cls":
            q.act["head.pooled"] = q.act["head.norm.out"]
        else:
            n = arch.num_tokens - int(arch.cls_token)
            m, s = _mult(q.act["head.norm.out"][0] / (n * q.act["head.pooled"][0]))
            q.consts["head.pool"] = {"multiplier": int(m[0]), "shift": int(s[0])}
        self.linear("head", model.head, "head.pooled", "logits")
        return q

    def block(self, p: str, blk, x: str) -> str:
        q, a = self.q, blk.attn
        self.norm(f"{p}.norm1", blk.norm1, f"{p}.norm1.out")
        inner = a.num_heads * a.head_dim
        if getattr(a, "rel_pos", None) is not None:
            self.rel_pos_tables(p, a.rel_pos)
        scales = np.repeat([q.act[f"{p}.attn.{t}"][0] for t in "qkv"], inner)
        self.linear(f"{p}.attn.qkv", a.qkv, f"{p}.norm1.out", f"{p}.attn.q", scales)
        s_s = q.act[f"{p}.attn.scores"][0]
        m, s = _mult(q.act[f"{p}.attn.q"][0] * q.act[f"{p}.attn.k"][0] * a.head_dim ** -0.5 / s_s)
        q.consts[f"{p}.attn.qk"] = {"multiplier": int(m[0]), "shift": int(s[0])}
        q.params[f"{p}.attn.exp_lut"] = intops.exp_table(s_s)
        m, s = _mult(intops.PROB_SCALE * q.act[f"{p}.attn.v"][0] / q.act[f"{p}.attn.o"][0])
        q.consts[f"{p}.attn.av"] = {"multiplier": int(m[0]), "shift": int(s[0])}
        self.linear(f"{p}.attn.proj", a.proj, f"{p}.attn.o", f"{p}.attn.proj.out")
        self.add(f"{p}.add1", x, f"{p}.attn.proj.out", f"{p}.x1")
        self.norm(f"{p}.norm2", blk.norm2, f"{p}.norm2.out")
        self.linear(f"{p}.mlp.fc1", blk.mlp.fc1, f"{p}.norm2.out", f"{p}.mlp.fc1.out")
        q.params[f"{p}.mlp.gelu_lut"] = intops.function_table(intops.gelu, *q.act[f"{p}.mlp.fc1.out"],
                                                              *q.act[f"{p}.mlp.act"])
        self.linear(f"{p}.mlp.fc2", blk.mlp.fc2, f"{p}.mlp.act", f"{p}.mlp.fc2.out")
        self.add(f"{p}.add2", f"{p}.x1", f"{p}.mlp.fc2.out", f"{p}.out")
        return f"{p}.out"


    def rel_pos_tables(self, p: str, rp) -> None:
        """The key tables [vertical; horizontal] int8 at k's scale and the value tables at v's, so that
        their dot products add to the q . k and AV accumulators with no requant of their own; k's and
        v's ranges are widened to cover the tables (no table entry saturates)."""
        for part, tables in (("key", (rp.key_v, rp.key_h)), ("value", (rp.value_v, rp.value_h))):
            t = torch.cat([x.detach() for x in tables]).double().numpy()
            act = f"{p}.attn.{part[0]}"
            scale = max(self.q.act[act][0], np.abs(t).max() / 127.0, MIN_SCALE)
            self.q.act[act] = (scale, 0)
            self.q.params[f"{p}.attn.rel_pos.{part}"] = np.clip(np.rint(t / scale), -127, 127).astype(np.int8)


class _Dense:
    """The patch convolution seen as a linear over a patch's HWC pixels."""

    def __init__(self, weight, bias):
        self.weight, self.bias, self.out_features = weight, bias, weight.shape[0]


def build_quant_model(model: ViT, ranges: dict[str, list[float]], info: dict | None = None) -> QuantModel:
    """Post-training quantisation of a float ViT with calibrated activation ranges."""
    q = _Builder(model, ranges).build()
    q.info = dict(info or {})
    return q
