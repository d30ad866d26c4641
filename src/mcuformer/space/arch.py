"""``Arch``: one subnet of the supernet, as a small plain data object (one YAML/JSON file per subnet)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from mcuformer.errors import SpaceError
from mcuformer.utils.io import read_structured, write_json, write_yaml

POOLS = ("gap", "cls")
STEMS = ("patch", "conv")

# "two-factor": in -> rank -> out with rank = ratio x min(in, out) of the sampled layer (mcuformer's);
# "official": the official MCUFormer layers in -> r -> r -> out (a trainable r x r middle factor), the
# attention rank taken from the supernet width and the MLP rank from the sampled width (see official_rank)
LOW_RANK_FORMS = ("two-factor", "official")


def is_dense(rank_ratio: float) -> bool:
    """A rank ratio of 1.0 (or 0, the official code's 'off') means a plain dense linear layer."""
    return rank_ratio <= 0 or rank_ratio >= 1.0


def low_rank(rank_ratio: float, in_features: int, out_features: int) -> int | None:
    """Rank of a factorised ``in -> rank -> out`` linear, or None when the layer stays dense."""
    if is_dense(rank_ratio):
        return None
    # the small epsilon keeps 0.9 * 230 from becoming 206.99999 -> 206
    return max(1, int(rank_ratio * min(in_features, out_features) + 1e-9))


def official_rank(rank_ratio: float, width: int) -> int | None:
    """The official rule: ``int(width * ratio)`` (plain truncation, as the official code computes it)."""
    return None if is_dense(rank_ratio) else max(1, int(width * rank_ratio))


def mlp_hidden(mlp_ratio: float, embed_dim: int) -> int:
    return int(mlp_ratio * embed_dim + 1e-9)


def patch_grid(img_size: int, patch_size: int) -> int:
    """Tokens per side. Like the official PatchembedSuper, a patch that does not divide the image
    pads the image (240 px at patch 28 -> 9x9 tokens with 6 px of padding per side)."""
    return math.ceil(img_size / patch_size)


def patch_padding(img_size: int, patch_size: int) -> tuple[int, int]:
    """(before, after) zero padding of each spatial side."""
    total = patch_grid(img_size, patch_size) * patch_size - img_size
    return total // 2, total - total // 2


def pooled_size(size: int) -> int:
    """Side of a feature map after a 3x3, stride-2 max-pool with padding 1: ceil(size / 2)."""
    return (size - 1) // 2 + 1


@dataclass(frozen=True)
class Arch:
    """One subnet. ``num_heads`` and ``mlp_ratio`` have one entry per layer."""

    img_size: int
    patch_size: int
    rank_ratio: float
    embed_dim: int
    depth: int
    num_heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    num_classes: int
    head_dim: int = 64
    in_chans: int = 3
    cls_token: bool = True
    pool: str = "gap"
    # the convolutional tokenizer (stem "conv"): stem_layers 3x3 convolutions (padding 1) with ReLU,
    # the first of two with stem_width channels, the last with embed_dim; stem_pool[i]: layer i is
    # followed by a 3x3 stride-2 max-pool (padding 1). Tokens are the last map's pixels. A patch stem
    # has stem_layers 0, stem_width 0, stem_pool () and omits these fields in files.
    stem: str = "patch"
    stem_layers: int = 0
    stem_width: int = 0
    stem_pool: tuple[bool, ...] = ()
    low_rank_form: str = "two-factor"
    attn_rank_width: int = 0  # "official" form: the supernet embed dim the attention rank is taken from
    rel_pos: int = 0  # >0: 2-D relative position tables on keys and values, distances clipped at this

    def __post_init__(self):
        # normalise lists from YAML into tuples so that Arch is hashable (the search caches by it)
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        object.__setattr__(self, "mlp_ratio", tuple(float(m) for m in self.mlp_ratio))
        object.__setattr__(self, "rank_ratio", float(self.rank_ratio))
        if isinstance(self.stem_pool, (list, tuple)):
            object.__setattr__(self, "stem_pool", tuple(bool(p) for p in self.stem_pool))
        for name in ("img_size", "patch_size", "embed_dim", "depth", "num_classes", "head_dim", "in_chans"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise SpaceError(f"arch: {name} must be a positive integer, got {v!r}")
        if len(self.num_heads) != self.depth or len(self.mlp_ratio) != self.depth:
            raise SpaceError(
                f"arch: depth is {self.depth} but num_heads has {len(self.num_heads)} entries "
                f"and mlp_ratio has {len(self.mlp_ratio)}"
            )
        if any(h <= 0 for h in self.num_heads):
            raise SpaceError(f"arch: num_heads must be positive, got {list(self.num_heads)}")
        if any(not (0 < m <= 64) for m in self.mlp_ratio):
            raise SpaceError(f"arch: mlp_ratio must be in (0, 64], got {list(self.mlp_ratio)}")
        if not (0 <= self.rank_ratio <= 1.0):
            raise SpaceError(f"arch: rank_ratio must be in [0, 1], got {self.rank_ratio}")
        if self.patch_size > self.img_size:
            raise SpaceError(f"arch: patch_size {self.patch_size} is larger than img_size {self.img_size}")
        if not isinstance(self.cls_token, bool):
            raise SpaceError(f"arch: cls_token must be true or false, got {self.cls_token!r}")
        if self.pool not in POOLS:
            raise SpaceError(f"arch: pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool == "cls" and not self.cls_token:
            raise SpaceError("arch: pool 'cls' needs cls_token: true")
        if self.low_rank_form not in LOW_RANK_FORMS:
            raise SpaceError(f"arch: low_rank_form must be one of {LOW_RANK_FORMS}, got {self.low_rank_form!r}")
        if isinstance(self.rel_pos, bool) or not isinstance(self.rel_pos, int) or self.rel_pos < 0:
            raise SpaceError(f"arch: rel_pos must be a non-negative integer (the clipping distance), "
                             f"got {self.rel_pos!r}")
        official = self.low_rank_form == "official"
        if isinstance(self.attn_rank_width, bool) or not isinstance(self.attn_rank_width, int) or \
                self.attn_rank_width < 0 or (official and self.attn_rank_width == 0):
            raise SpaceError("arch: the official low-rank form needs attn_rank_width (the supernet embed dim), "
                             f"got {self.attn_rank_width!r}")
        self._check_stem()

    def _check_stem(self) -> None:
        if self.stem not in STEMS:
            raise SpaceError(f"arch: stem must be one of {STEMS}, got {self.stem!r}")
        for name in ("stem_layers", "stem_width"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise SpaceError(f"arch: {name} must be a non-negative integer, got {v!r}")
        if not isinstance(self.stem_pool, tuple):
            raise SpaceError(f"arch: stem_pool must be a list of true/false, one per stem layer, got {self.stem_pool!r}")
        if self.stem == "patch":
            if self.stem_layers or self.stem_width or self.stem_pool:
                raise SpaceError("arch: stem_layers, stem_width and stem_pool belong to stem 'conv'")
            return
        if self.stem_layers not in (1, 2):
            raise SpaceError(f"arch: a conv stem has 1 or 2 layers, got stem_layers {self.stem_layers}")
        if (self.stem_width > 0) != (self.stem_layers == 2):
            raise SpaceError("arch: stem_width (the first conv's channels) is set exactly when stem_layers is 2")
        if len(self.stem_pool) != self.stem_layers:
            raise SpaceError(f"arch: stem_pool needs one entry per stem layer ({self.stem_layers}), "
                             f"got {list(self.stem_pool)}")
        if self.patch_size != 1:
            raise SpaceError(f"arch: a conv stem has no patches; patch_size must be 1, got {self.patch_size}")

    # ---- derived sizes (the memory model and the supernet both use these) ----
    @property
    def grid(self) -> int:
        if self.stem == "conv":
            size = self.img_size
            for pooled in self.stem_pool:
                size = pooled_size(size) if pooled else size
            return size
        return patch_grid(self.img_size, self.patch_size)

    def stem_convs(self) -> list[tuple[int, int, int, bool]]:
        """(map side, in channels, out channels, pooled after) of each conv of a conv stem."""
        out, size, cin = [], self.img_size, self.in_chans
        for i in range(self.stem_layers):
            cout = self.embed_dim if i == self.stem_layers - 1 else self.stem_width
            out.append((size, cin, cout, self.stem_pool[i]))
            size, cin = (pooled_size(size) if self.stem_pool[i] else size), cout
        return out

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:
        return self.num_patches + int(self.cls_token)

    def qkv_dim(self, layer: int) -> int:
        """Width of q (and of k and v) in a layer: heads x head_dim."""
        return self.num_heads[layer] * self.head_dim

    def mlp_dim(self, layer: int) -> int:
        return mlp_hidden(self.mlp_ratio[layer], self.embed_dim)

    def rank(self, in_features: int, out_features: int) -> int | None:
        return low_rank(self.rank_ratio, in_features, out_features)

    def official_ranks(self, layer: int) -> dict[str, int | None]:
        """Ranks of the official three-factor layers (in -> r -> r -> out): the attention's from the
        supernet width, the MLP's from min(sampled width, hidden); None when the ratio means dense."""
        e, m = self.embed_dim, self.mlp_dim(layer)
        attn = official_rank(self.rank_ratio, self.attn_rank_width)
        mlp = official_rank(self.rank_ratio, min(e, m))
        return {"qkv": attn, "proj": attn, "fc1": mlp, "fc2": mlp}

    def linear_shapes(self, layer: int) -> dict[str, tuple[int, int, int | None]]:
        """(in, out, rank) of the four block linears of a layer as the engine runs them; rank None = dense.

        In the official form the middle factor is folded into the first, so a layer is two factors
        of the official rank, or one dense matrix when that rank reaches min(in, out) (both exact)."""
        e, q, m = self.embed_dim, self.qkv_dim(layer), self.mlp_dim(layer)
        shapes = {"qkv": (e, 3 * q), "proj": (q, e), "fc1": (e, m), "fc2": (m, e)}
        if self.low_rank_form == "official":
            ranks = self.official_ranks(layer)
            return {k: (i, o, None if ranks[k] is None or ranks[k] >= min(i, o) else ranks[k])
                    for k, (i, o) in shapes.items()}
        return {k: (i, o, self.rank(i, o)) for k, (i, o) in shapes.items()}

    def num_params(self, folded: bool = False) -> int:
        """Parameters of the subnet (weights and biases). In the official form this counts the three
        trained factors, as the official code does, unless ``folded`` (the exported two factors)."""
        e = self.embed_dim
        if self.stem == "conv":
            n = sum(9 * cin * cout + cout for _, cin, cout, _ in self.stem_convs())
        else:
            n = self.in_chans * self.patch_size**2 * e + e  # patch embedding
        n += self.num_tokens * e + (e if self.cls_token else 0)  # position embedding, cls token
        three = self.low_rank_form == "official" and not folded
        for i in range(self.depth):
            n += 4 * e  # two LayerNorms
            ranks = self.official_ranks(i) if three else {}
            for k, (fi, fo, r) in self.linear_shapes(i).items():
                if three and ranks[k] is not None:
                    r = ranks[k]
                    n += r * (fi + r + fo) + fo
                else:
                    n += (fi * fo if r is None else r * (fi + fo)) + fo
        n += 2 * e + e * self.num_classes + self.num_classes  # final norm, head
        n += self.depth * self.rel_pos_params()
        return n

    def rel_pos_params(self) -> int:
        """Relative position table entries of one layer: for keys and values, a vertical and a
        horizontal table of 2k+2 rows (row 0: the class token) by head_dim."""
        return 4 * (2 * self.rel_pos + 2) * self.head_dim if self.rel_pos else 0

    # ---- (de)serialisation ----
    def to_dict(self) -> dict:
        d = asdict(self)
        if self.low_rank_form == "two-factor":  # files of the default form stay as they were
            del d["low_rank_form"], d["attn_rank_width"]
        if not self.rel_pos:
            del d["rel_pos"]
        d["num_heads"] = list(self.num_heads)
        d["mlp_ratio"] = list(self.mlp_ratio)
        if self.stem == "patch":  # files of patch-stem archs read as before the conv stem existed
            for k in ("stem", "stem_layers", "stem_width", "stem_pool"):
                del d[k]
        else:
            d["stem_pool"] = list(self.stem_pool)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "arch") -> "Arch":
        if not isinstance(d, dict):
            raise SpaceError(f"{where}: expected a mapping of arch fields, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpaceError(f"{where}: unknown arch field(s) {unknown}; known: {sorted(known)}")
        missing = [k for k in ("img_size", "patch_size", "rank_ratio", "embed_dim", "depth", "num_heads",
                               "mlp_ratio", "num_classes") if k not in d]
        if missing:
            raise SpaceError(f"{where}: missing arch field(s) {missing}")
        d = dict(d)
        for k in ("num_heads", "mlp_ratio"):
            if isinstance(d[k], (int, float)) and not isinstance(d[k], bool):
                d[k] = [d[k]] * int(d["depth"])  # a scalar means 'the same for every layer'
            if not isinstance(d[k], (list, tuple)):
                raise SpaceError(f"{where}: {k} must be a list (one entry per layer), got {d[k]!r}")
        if "stem_pool" in d and not isinstance(d["stem_pool"], (list, tuple)):
            raise SpaceError(f"{where}: stem_pool must be a list of true/false, got {d['stem_pool']!r}")
        try:
            return cls(**d)
        except (TypeError, ValueError) as e:
            raise SpaceError(f"{where}: {e}") from None

    @classmethod
    def load(cls, path) -> "Arch":
        data = read_structured(path)
        if isinstance(data, dict) and "arch" in data and isinstance(data["arch"], dict):
            data = data["arch"]  # files written by the search carry metrics beside the arch
        return cls.from_dict(data, where=str(path))

    def save(self, path) -> Path:
        path = Path(path)
        if path.suffix.lower() == ".json":
            return write_json(path, self.to_dict())
        return write_yaml(path, self.to_dict())

    def short(self) -> str:
        """A compact human-readable summary, e.g. for tables and plot labels."""
        heads = "/".join(str(h) for h in self.num_heads)
        mlps = "/".join(f"{m:g}" for m in self.mlp_ratio)
        stem = f"p{self.patch_size}"
        if self.stem == "conv":  # e.g. c16P-E: conv 16 + pool, conv to E
            stem = "c" + "-".join(f"{'E' if i == self.stem_layers - 1 else self.stem_width}{'P' if p else ''}"
                                  for i, p in enumerate(self.stem_pool))
        return (f"E{self.embed_dim} D{self.depth} {stem} r{self.rank_ratio:g} "
                f"H[{heads}] M[{mlps}]")
