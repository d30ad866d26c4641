"""``SearchSpace``: the choices of every elastic dimension, read from YAML.

Two file forms are accepted:

* the official MCUFormer/AutoFormer pair (``SUPERNET:`` + ``SEARCH_SPACE:`` with upper-case keys):
  ``supernet-T.yaml`` (embed dim, depth, heads, MLP ratio) and ``supernet-T-new.yaml`` (rank ratio,
  patch size). As in the official code, the ``SUPERNET`` rank ratio and patch size are the ones this
  supernet is built for, and the ``SEARCH_SPACE`` lists of those two are the grid that search-space
  evolution walks (our ``evolution:`` section).
* our single file (lower-case keys), e.g. ``configs/cifar10.yaml``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from mcuformer.errors import ConfigError, SpaceError
from mcuformer.space.arch import LOW_RANK_FORMS, POOLS, STEMS, Arch, is_dense
from mcuformer.utils.checks import check_number
from mcuformer.utils.io import read_structured, write_yaml

ELASTIC = ("embed_dim", "depth", "num_heads", "mlp_ratio", "rank_ratio", "patch_size")
OFFICIAL_KEYS = {"MLP_RATIO": "mlp_ratio", "NUM_HEADS": "num_heads", "EMBED_DIM": "embed_dim",
                 "DEPTH": "depth", "RANK_RATIO": "rank_ratio", "PATCH_SIZE": "patch_size",
                 "IMG_SIZE": "img_size", "NUM_CLASSES": "num_classes", "HEAD_DIM": "head_dim",
                 "LOW_RANK": "low_rank_form", "RELATIVE_POSITION": "rel_pos"}
# LOW_RANK (two-factor | official) and RELATIVE_POSITION (the clipping distance, 0 = off) are mcuformer
# additions under SUPERNET: the official scripts take them from --relative_position / the code
OFFICIAL_DEFAULTS = {"img_size": 240, "head_dim": 64, "cls_token": True, "pool": "gap",
                     "rank_ratio": [1.0], "patch_size": [16]}
# check_number's rules for the numbers of a space (its choices and supernet sizes by dimension). The upper
# bounds stop a typo from making later stages allocate gigabytes or count subnets for minutes; they lie far
# above the official ImageNet T space (240 px, supernet E256 D14 H4 M4, head_dim 64, patches up to 32) and
# within what the memory model measures (memory.schedule.LIMITS; mlp_ratio: Arch's own bound).
_POSITIVE_INT = dict(integer=True, positive=True)
RULES = {"embed_dim": dict(_POSITIVE_INT, maximum=4096), "depth": dict(_POSITIVE_INT, maximum=64),
         "num_heads": dict(_POSITIVE_INT, maximum=64), "mlp_ratio": dict(positive=True, maximum=64),
         "rank_ratio": dict(minimum=0, maximum=1), "patch_size": dict(_POSITIVE_INT, maximum=1024),
         "img_size": dict(_POSITIVE_INT, maximum=1024), "head_dim": dict(_POSITIVE_INT, maximum=512),
         "in_chans": dict(_POSITIVE_INT, maximum=16), "num_classes": dict(_POSITIVE_INT, maximum=100000),
         "stem_width": dict(_POSITIVE_INT, maximum=4096)}


@dataclass
class SearchSpace:
    """Choices per elastic dimension plus the fixed parts of the network.

    ``super_*`` sizes allocate the shared weights and may exceed the largest choice (the official
    T space has a 256-wide supernet but samples widths up to 216).
    """

    embed_dim: list[int]
    depth: list[int]
    num_heads: list[int]
    mlp_ratio: list[float]
    rank_ratio: list[float] = field(default_factory=lambda: [1.0])
    patch_size: list[int] = field(default_factory=lambda: [16])
    img_size: int = 224
    num_classes: int | None = None
    in_chans: int = 3
    head_dim: int = 64
    cls_token: bool = True
    pool: str = "gap"
    super_embed_dim: int | None = None
    super_depth: int | None = None
    super_num_heads: int | None = None
    super_mlp_ratio: float | None = None
    evolution: dict = field(default_factory=dict)  # {"rank_ratio": [...], "patch_size": [...]}
    name: str = "space"
    # the stem: patch embedding and/or the convolutional tokenizer (Arch's stem fields); the stem_*
    # choices apply to conv stems only (stem_width: the first conv's channels in a 2-layer stem;
    # stem_pool: whether a conv is followed by a max-pool, chosen per layer)
    stem: list[str] = field(default_factory=lambda: ["patch"])
    stem_layers: list[int] = field(default_factory=lambda: [1])
    stem_width: list[int] = field(default_factory=lambda: [16])
    stem_pool: list[bool] = field(default_factory=lambda: [True])
    low_rank_form: str = "two-factor"  # YAML key `low_rank`; "official": three factors, the official ranks
    rel_pos: int = 0  # >0: 2-D relative position tables (keys and values), distances clipped at this

    def __post_init__(self):
        for k in ("img_size", "in_chans", "head_dim") + (("num_classes",) if self.num_classes is not None else ()):
            setattr(self, k, self._number(k, getattr(self, k)))
        if not isinstance(self.cls_token, bool):
            raise SpaceError(f"space {self.name}: cls_token must be true or false, got {self.cls_token!r}")
        if self.pool not in POOLS:
            raise SpaceError(f"space {self.name}: pool must be one of {POOLS}, got {self.pool!r}")
        if self.pool == "cls" and not self.cls_token:
            raise SpaceError(f"space {self.name}: pool 'cls' needs cls_token: true")
        if self.low_rank_form not in LOW_RANK_FORMS:
            raise SpaceError(f"space {self.name}: low_rank must be one of {LOW_RANK_FORMS}, got {self.low_rank_form!r}")
        rel_pos = self.rel_pos
        if isinstance(rel_pos, bool) or not isinstance(rel_pos, int) or not 0 <= rel_pos <= self.img_size:
            raise SpaceError(f"space {self.name}: rel_pos must be an integer from 0 to img_size (the clipping "
                             f"distance, 14 in the official code; 0 = off), got {rel_pos!r}")
        for k in ELASTIC:
            setattr(self, k, self._choices(k, getattr(self, k)))
        for k in ("embed_dim", "depth", "num_heads", "mlp_ratio"):
            v = getattr(self, "super_" + k)
            v = max(getattr(self, k)) if v is None else self._number(f"supernet {k}", v, rule=k)
            setattr(self, "super_" + k, float(v) if k == "mlp_ratio" else v)
            if max(getattr(self, k)) > v:
                raise SpaceError(f"space {self.name}: largest {k} choice {max(getattr(self, k))} exceeds the "
                                 f"supernet's {v}")
        self._check_stem()
        if self.evolution is None:  # an empty `evolution:` section
            self.evolution = {}
        if not isinstance(self.evolution, dict):
            raise SpaceError(f"space {self.name}: evolution must be a mapping of rank_ratio and patch_size choices, "
                             f"got {self.evolution!r}")
        for k, v in list(self.evolution.items()):
            if k not in ("rank_ratio", "patch_size"):
                raise SpaceError(f"space {self.name}: evolution may list rank_ratio and patch_size choices only")
            self.evolution[k] = self._choices(k, v, "evolution ")

    def _number(self, name: str, value, rule: str | None = None):
        """``value`` checked by ``RULES[rule or name]``, or a SpaceError of this space naming ``name``."""
        try:
            return check_number(value, f"space {self.name}: {name}", **RULES[rule or name])
        except ConfigError as e:
            raise SpaceError(str(e)) from None

    def _choices(self, k: str, v, where: str = "") -> list:
        """The sorted distinct choices ``v`` of elastic dimension ``k`` (``where``: a prefix naming the section)."""
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, (list, tuple)) or not v:
            raise SpaceError(f"space {self.name}: {where}{k} must be a non-empty list of choices, got {v!r}")
        cast = float if k in ("mlp_ratio", "rank_ratio") else int
        vals = sorted({cast(self._number(f"{where}{k} choice", x, rule=k)) for x in v})
        if k == "patch_size" and vals[-1] > self.img_size:
            raise SpaceError(f"space {self.name}: {where}patch sizes {vals} exceed img_size {self.img_size}")
        if k == "rank_ratio" and self.low_rank_form == "official" and any(is_dense(r) for r in vals):
            raise SpaceError(f"space {self.name}: low_rank official needs {where}rank ratios strictly between 0 and 1, "
                             f"got {vals}")
        return vals

    def _check_stem(self) -> None:
        lists = {}
        for k in ("stem", "stem_layers", "stem_width", "stem_pool"):
            v = getattr(self, k)
            v = [v] if not isinstance(v, (list, tuple)) else list(v)
            if not v:
                raise SpaceError(f"space {self.name}: {k} must be a non-empty list of choices")
            lists[k] = v
        if any(v not in STEMS for v in lists["stem"]):
            raise SpaceError(f"space {self.name}: stem choices must be among {STEMS}, got {lists['stem']}")
        if any(isinstance(v, bool) or v not in (1, 2) for v in lists["stem_layers"]):
            raise SpaceError(f"space {self.name}: stem_layers choices must be 1 or 2, got {lists['stem_layers']}")
        lists["stem_width"] = [self._number("stem_width choice", v, rule="stem_width") for v in lists["stem_width"]]
        if any(not isinstance(v, bool) for v in lists["stem_pool"]):
            raise SpaceError(f"space {self.name}: stem_pool choices must be true/false, got {lists['stem_pool']}")
        self.stem = [s for s in STEMS if s in lists["stem"]]
        for k in ("stem_layers", "stem_width", "stem_pool"):
            setattr(self, k, sorted(set(lists[k])))

    @property
    def conv_stem(self) -> bool:
        return "conv" in self.stem

    @property
    def super_stem_width(self) -> int:
        """Channels of the shared first conv: the widest first layer of any conv stem."""
        return max([self.super_embed_dim] * (1 in self.stem_layers) + self.stem_width * (2 in self.stem_layers))

    # ---- facts about the supernet's shared weights ----
    @property
    def low_rank(self) -> bool:
        """True when the supernet stores factorised linears (any rank ratio choice below 1)."""
        return any(not is_dense(r) for r in self.rank_ratio)

    @property
    def max_rank_ratio(self) -> float:
        return max(self.rank_ratio)

    # ---- membership ----
    def check(self, arch: Arch) -> None:
        """Raise SpaceError naming the first field of ``arch`` that lies outside this space."""
        fixed = {"img_size": self.img_size, "in_chans": self.in_chans, "head_dim": self.head_dim,
                 "cls_token": self.cls_token, "pool": self.pool, **self._form_fields()}
        if self.num_classes is not None:
            fixed["num_classes"] = self.num_classes
        for k, v in fixed.items():
            if getattr(arch, k) != v:
                raise SpaceError(f"arch is outside space {self.name}: {k} is {getattr(arch, k)!r}, the space has {v!r}")
        if arch.stem not in self.stem:
            raise SpaceError(f"arch is outside space {self.name}: stem {arch.stem!r} is not one of {self.stem}")
        if arch.stem == "conv":
            bad = next((k for k, ok in (("stem_layers", arch.stem_layers in self.stem_layers),
                                        ("stem_width", arch.stem_layers == 1 or arch.stem_width in self.stem_width),
                                        ("stem_pool", set(arch.stem_pool) <= set(self.stem_pool))) if not ok), None)
            if bad:
                raise SpaceError(f"arch is outside space {self.name}: {bad} {getattr(arch, bad)} is not among "
                                 f"{getattr(self, bad)}")
        for k in ("embed_dim", "depth", "rank_ratio") + (("patch_size",) if arch.stem == "patch" else ()):
            if not _member(getattr(arch, k), getattr(self, k)):
                raise SpaceError(f"arch is outside space {self.name}: {k} {getattr(arch, k)} is not one of "
                                 f"{getattr(self, k)}")
        for k in ("num_heads", "mlp_ratio"):
            for i, v in enumerate(getattr(arch, k)):
                if not _member(v, getattr(self, k)):
                    raise SpaceError(f"arch is outside space {self.name}: {k}[{i}] = {v:g} is not one of "
                                     f"{getattr(self, k)}")

    def contains(self, arch: Arch) -> bool:
        try:
            self.check(arch)
            return True
        except SpaceError:
            return False

    # ---- canonical members ----
    def _arch(self, num_classes: int | None, **kw) -> Arch:
        n = num_classes or self.num_classes
        if n is None:
            raise SpaceError(f"space {self.name} has no num_classes; pass it (or take it from the data)")
        d = kw["depth"]
        kw["num_heads"] = [kw["num_heads"]] * d if isinstance(kw["num_heads"], (int, float)) else kw["num_heads"]
        kw["mlp_ratio"] = [kw["mlp_ratio"]] * d if isinstance(kw["mlp_ratio"], (int, float)) else kw["mlp_ratio"]
        return Arch(img_size=self.img_size, num_classes=n, in_chans=self.in_chans, head_dim=self.head_dim,
                    cls_token=self.cls_token, pool=self.pool, **self._form_fields(), **kw)

    def _form_fields(self) -> dict:
        """The Arch fields of the low-rank form (the official one ranks attention by the supernet width)."""
        official = self.low_rank_form == "official"
        return {"low_rank_form": self.low_rank_form, "attn_rank_width": self.super_embed_dim if official else 0,
                "rel_pos": self.rel_pos}

    def largest(self, num_classes: int | None = None) -> Arch:
        """Most compute: widest, deepest, most heads, highest rank, smallest patch (most tokens); a
        conv stem when the space has one (most layers and channels, the fewest pools)."""
        kw = dict(embed_dim=max(self.embed_dim), depth=max(self.depth), num_heads=max(self.num_heads),
                  mlp_ratio=max(self.mlp_ratio), rank_ratio=max(self.rank_ratio), patch_size=min(self.patch_size))
        if self.conv_stem:
            kw.update(self._conv(max(self.stem_layers), max(self.stem_width), min(self.stem_pool)))
        return self._arch(num_classes, **kw)

    def smallest(self, num_classes: int | None = None) -> Arch:
        """A patch stem when the space has one, else the smallest conv stem (most pools)."""
        kw = dict(embed_dim=min(self.embed_dim), depth=min(self.depth), num_heads=min(self.num_heads),
                  mlp_ratio=min(self.mlp_ratio), rank_ratio=min(self.rank_ratio), patch_size=max(self.patch_size))
        if "patch" not in self.stem:
            kw.update(self._conv(min(self.stem_layers), min(self.stem_width), max(self.stem_pool)))
        return self._arch(num_classes, **kw)

    @staticmethod
    def _conv(layers: int, width: int, pools) -> dict:
        """Arch fields of a conv stem (``pools``: one flag for every layer, or a list)."""
        pools = tuple(pools) if isinstance(pools, (list, tuple)) else (pools,) * layers
        return dict(stem="conv", stem_layers=layers, stem_width=width if layers == 2 else 0, stem_pool=pools,
                    patch_size=1)

    def _sample_stem(self, rng: random.Random) -> dict:
        """The stem of a random member; draws nothing in a patch-only space (its samples stay as before)."""
        if self.stem == ["patch"]:
            return {}
        if rng.choice(self.stem) == "patch":
            return {}
        layers = rng.choice(self.stem_layers)
        width = rng.choice(self.stem_width) if layers == 2 else 0
        return self._conv(layers, width, [rng.choice(self.stem_pool) for _ in range(layers)])

    def sample(self, rng: random.Random, num_classes: int | None = None) -> Arch:
        """A uniform random member (depth, width, rank, patch once; heads and MLP ratio per layer)."""
        depth = rng.choice(self.depth)
        kw = dict(embed_dim=rng.choice(self.embed_dim), depth=depth,
                  num_heads=[rng.choice(self.num_heads) for _ in range(depth)],
                  mlp_ratio=[rng.choice(self.mlp_ratio) for _ in range(depth)],
                  rank_ratio=rng.choice(self.rank_ratio), patch_size=rng.choice(self.patch_size))
        kw.update(self._sample_stem(rng))
        return self._arch(num_classes, **kw)

    def _mutate_stem(self, arch: Arch, patch_size: int, rng: random.Random, s_prob: float) -> dict:
        if self.stem == ["patch"]:
            return {}
        stem = rng.choice(self.stem) if rng.random() < s_prob else arch.stem
        if stem == "patch":
            size = patch_size if _member(patch_size, self.patch_size) else rng.choice(self.patch_size)
            return dict(stem="patch", stem_layers=0, stem_width=0, stem_pool=(), patch_size=size)
        if arch.stem != "conv":
            layers = rng.choice(self.stem_layers)
            return self._conv(layers, rng.choice(self.stem_width), [rng.choice(self.stem_pool) for _ in range(layers)])
        pick = lambda cur, choices: rng.choice(choices) if rng.random() < s_prob else cur  # noqa: E731
        layers = pick(arch.stem_layers, self.stem_layers)
        width = pick(arch.stem_width or rng.choice(self.stem_width), self.stem_width)
        pools = [pick(arch.stem_pool[i] if i < arch.stem_layers else rng.choice(self.stem_pool), self.stem_pool)
                 for i in range(layers)]
        return self._conv(layers, width, pools)

    def mutate(self, arch: Arch, rng: random.Random, m_prob: float = 0.2, s_prob: float = 0.4) -> Arch:
        """AutoFormer's mutation: depth, width, rank and patch each resampled with probability
        ``s_prob``; every layer's heads and MLP ratio with probability ``m_prob``."""
        self.check(arch)
        depth = rng.choice(self.depth) if rng.random() < s_prob else arch.depth
        heads = list(arch.num_heads[:depth]) + [rng.choice(self.num_heads) for _ in range(depth - arch.depth)]
        mlps = list(arch.mlp_ratio[:depth]) + [rng.choice(self.mlp_ratio) for _ in range(depth - arch.depth)]
        for i in range(depth):
            if rng.random() < m_prob:
                heads[i] = rng.choice(self.num_heads)
            if rng.random() < m_prob:
                mlps[i] = rng.choice(self.mlp_ratio)
        pick = lambda cur, choices: rng.choice(choices) if rng.random() < s_prob else cur  # noqa: E731
        kw = dict(embed_dim=pick(arch.embed_dim, self.embed_dim), rank_ratio=pick(arch.rank_ratio, self.rank_ratio),
                  patch_size=pick(arch.patch_size, self.patch_size))
        kw.update(self._mutate_stem(arch, kw["patch_size"], rng, s_prob))
        return replace(arch, depth=depth, num_heads=tuple(heads), mlp_ratio=tuple(mlps), **kw)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each gene from either parent; a layer that only the deeper parent has comes from it."""
        self.check(a)
        self.check(b)
        depth = rng.choice([a.depth, b.depth])

        def layer(ga, gb, i):
            opts = [g[i] for g in (ga, gb) if i < len(g)]
            return rng.choice(opts)

        kw = dict(depth=depth,
                  num_heads=tuple(layer(a.num_heads, b.num_heads, i) for i in range(depth)),
                  mlp_ratio=tuple(layer(a.mlp_ratio, b.mlp_ratio, i) for i in range(depth)),
                  embed_dim=rng.choice([a.embed_dim, b.embed_dim]),
                  rank_ratio=rng.choice([a.rank_ratio, b.rank_ratio]),
                  patch_size=rng.choice([a.patch_size, b.patch_size]))
        if self.stem != ["patch"]:
            src = rng.choice([a, b])  # the stem comes whole from one parent
            patch = kw["patch_size"] if src.stem == "patch" and kw["patch_size"] != 1 else src.patch_size
            kw.update(stem=src.stem, stem_layers=src.stem_layers, stem_width=src.stem_width,
                      stem_pool=src.stem_pool, patch_size=patch)
        return replace(a, **kw)

    def with_factors(self, rank_ratio: float, patch_size: int) -> "SearchSpace":
        """The space of one point of the (rank ratio, patch size) grid (search-space evolution)."""
        return replace(self, rank_ratio=[rank_ratio], patch_size=[patch_size],
                       evolution=dict(self.evolution), name=f"{self.name}@r{rank_ratio:g}p{patch_size}")

    def size(self) -> int:
        """Number of distinct subnets."""
        per_layer = len(self.num_heads) * len(self.mlp_ratio)
        layers = sum(per_layer**d for d in self.depth)
        stems = len(self.patch_size) if "patch" in self.stem else 0
        if self.conv_stem:
            stems += sum((len(self.stem_width) if n == 2 else 1) * len(self.stem_pool) ** n for n in self.stem_layers)
        return len(self.embed_dim) * len(self.rank_ratio) * stems * layers

    # ---- (de)serialisation ----
    def to_dict(self) -> dict:
        d = {"name": self.name, "img_size": self.img_size, "num_classes": self.num_classes,
             "in_chans": self.in_chans, "head_dim": self.head_dim, "cls_token": self.cls_token,
             "pool": self.pool}
        for k in ELASTIC:
            d[k] = list(getattr(self, k))
        d["super"] = {"embed_dim": self.super_embed_dim, "depth": self.super_depth,
                      "num_heads": self.super_num_heads, "mlp_ratio": self.super_mlp_ratio}
        if self.evolution:
            d["evolution"] = {k: list(v) for k, v in self.evolution.items()}
        if self.conv_stem:  # patch-only spaces are written as before
            d.update(stem=list(self.stem), stem_layers=list(self.stem_layers), stem_width=list(self.stem_width),
                     stem_pool=list(self.stem_pool))
        if self.low_rank_form != "two-factor":
            d["low_rank"] = self.low_rank_form
        if self.rel_pos:
            d["rel_pos"] = self.rel_pos
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "space") -> "SearchSpace":
        if not isinstance(d, dict):
            raise SpaceError(f"{where}: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        if "low_rank" in d:
            d["low_rank_form"] = d.pop("low_rank")
        sup = d.pop("super", None) or {}
        if not isinstance(sup, dict):
            raise SpaceError(f"{where}: 'super' must be a mapping")
        for k, v in sup.items():
            if k not in ("embed_dim", "depth", "num_heads", "mlp_ratio"):
                raise SpaceError(f"{where}: unknown key super.{k}")
            d["super_" + k] = v
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpaceError(f"{where}: unknown key(s) {unknown}; known: {sorted(known - {'evolution'}) + ['evolution', 'super']}")
        missing = [k for k in ("embed_dim", "depth", "num_heads", "mlp_ratio") if k not in d]
        if missing:
            raise SpaceError(f"{where}: missing key(s) {missing}")
        d.setdefault("name", Path(where).stem if where != "space" else "space")
        try:
            return cls(**d)
        except TypeError as e:
            raise SpaceError(f"{where}: {e}") from None

    @classmethod
    def load(cls, paths: str | Path | Sequence[str | Path]) -> "SearchSpace":
        """Load one of our files, or one or two official files (``supernet-T.yaml`` [+ ``-new``])."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        docs = [(str(p), read_structured(p)) for p in paths]
        for p, doc in docs:
            if not isinstance(doc, dict):
                raise SpaceError(f"{p}: expected a YAML mapping at the top level")
        official = [("SUPERNET" in doc or "SEARCH_SPACE" in doc) for _, doc in docs]
        if all(official):
            return cls._from_official(docs)
        if len(docs) != 1 or any(official):
            raise SpaceError("give either one mcuformer space file or official SUPERNET/SEARCH_SPACE files, not a mix")
        return cls.from_dict(docs[0][1], where=docs[0][0])

    @classmethod
    def _from_official(cls, docs) -> "SearchSpace":
        choices, supers = {}, {}
        for p, doc in docs:
            unknown = sorted(set(doc) - {"SUPERNET", "SEARCH_SPACE"})
            if unknown:
                raise SpaceError(f"{p}: unknown top-level key(s) {unknown}")
            for section, target in (("SUPERNET", supers), ("SEARCH_SPACE", choices)):
                sec = doc.get(section) or {}
                if not isinstance(sec, dict):
                    raise SpaceError(f"{p}: {section} must be a mapping")
                for k, v in sec.items():
                    if k not in OFFICIAL_KEYS:
                        raise SpaceError(f"{p}: unknown key {section}.{k}; known: {sorted(OFFICIAL_KEYS)}")
                    target[OFFICIAL_KEYS[k]] = v
        d = dict(OFFICIAL_DEFAULTS)
        for k in ("img_size", "num_classes", "head_dim", "low_rank_form", "rel_pos"):
            if k in supers:
                d[k] = supers.pop(k)
        for k in ("embed_dim", "depth", "num_heads", "mlp_ratio"):
            if k not in choices:
                raise SpaceError(f"official space files lack SEARCH_SPACE.{k.upper()} (give supernet-T.yaml too)")
            d[k] = choices[k]
            if k in supers:
                d["super_" + k] = supers[k]
        # rank ratio and patch size: the SUPERNET value is this supernet's; the lists are the evolution grid
        evolution = {}
        for k in ("rank_ratio", "patch_size"):
            if k in supers:
                d[k] = [supers[k]]
            elif k in choices:
                d[k] = [max(choices[k]) if k == "rank_ratio" else min(choices[k])]
            if k in choices:
                evolution[k] = choices[k]
        d["evolution"] = evolution
        d["name"] = "+".join(Path(p).stem for p, _ in docs)
        return cls.from_dict(d, where=" + ".join(p for p, _ in docs))

    def save(self, path) -> Path:
        return write_yaml(path, self.to_dict())


def _member(v: float, choices: Sequence[float]) -> bool:
    return any(abs(float(v) - float(c)) < 1e-9 for c in choices)
