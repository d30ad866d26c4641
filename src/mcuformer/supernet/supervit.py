"""The weight-sharing ViT supernet: elastic embed dim, depth, per-layer heads and MLP ratio, low-rank
rank and patch size. ``set_active_subnet(arch)`` picks a subnet; ``get_active_subnet(arch)`` copies it
out as a standalone ``ViT`` (Once-for-All's API)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.errors import SpaceError
import itertools

from mcuformer.space import Arch, SearchSpace, is_dense, mlp_hidden, patch_grid, pooled_size
from mcuformer.supernet.elastic import SuperConvStem, SuperLayerNorm, SuperLinear, SuperPatchEmbed
from mcuformer.supernet.vit import Attention, Block, Mlp, RelPos2D, ViT, drop_path


def max_rank(space: SearchSpace, in_max: int, out_max: int) -> int | None:
    """Rank of the stored factors of a block linear (None: the supernet stores dense weights)."""
    if not space.low_rank:
        return None
    top = space.max_rank_ratio
    return min(in_max, out_max) if is_dense(top) else max(1, int(top * min(in_max, out_max) + 1e-9))


def official_max_rank(space: SearchSpace, width: int) -> int:
    """Stored rank of an official three-factor layer: int(width x the largest rank ratio)."""
    return max(1, int(width * space.max_rank_ratio))


def active_shapes(arch: Arch, layer: int) -> dict:
    """(in, out, rank) each block linear is configured with: the official form trains its own ranks
    (which may exceed min(in, out)); ``linear_shapes`` gives what is exported."""
    shapes = arch.linear_shapes(layer)
    if arch.low_rank_form != "official":
        return shapes
    ranks = arch.official_ranks(layer)
    return {k: (i, o, ranks[k]) for k, (i, o, _) in shapes.items()}


class SuperAttention(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        e, self.head_dim = space.super_embed_dim, space.head_dim
        inner = space.super_num_heads * space.head_dim
        if space.low_rank_form == "official":  # both attention ranks come from the supernet width
            r = official_max_rank(space, e)
            self.qkv = SuperLinear(e, 3 * inner, r, out_groups=3, middle=True)
            self.proj = SuperLinear(inner, e, r, middle=True)
        else:
            self.qkv = SuperLinear(e, 3 * inner, max_rank(space, e, 3 * inner), out_groups=3)
            self.proj = SuperLinear(inner, e, max_rank(space, inner, e))
        self.num_heads = space.super_num_heads
        self.rel_pos = RelPos2D(space.rel_pos, space.head_dim) if space.rel_pos else None
        self.cls_token = space.cls_token

    def configure(self, arch: Arch, layer: int):
        shapes = active_shapes(arch, layer)
        self.num_heads = arch.num_heads[layer]
        self.qkv.configure(*shapes["qkv"])
        self.proj.configure(*shapes["proj"])

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.rel_pos is not None:  # the tables are shared by all heads and every token grid
            x = self.rel_pos.attention(q, k, v, self.cls_token)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))

    def active_module(self, arch: Arch, layer: int) -> Attention:
        m = Attention.__new__(Attention)
        nn.Module.__init__(m)
        m.num_heads, m.head_dim = self.num_heads, self.head_dim
        m.qkv, m.proj = self.qkv.active_module(), self.proj.active_module()
        m.rel_pos, m.cls_token = None, self.cls_token
        if self.rel_pos is not None:
            m.rel_pos = RelPos2D(self.rel_pos.clip, self.head_dim)
            m.rel_pos.load_state_dict(self.rel_pos.state_dict())
        return m


class SuperMlp(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        e = space.super_embed_dim
        hidden = mlp_hidden(space.super_mlp_ratio, e)
        if space.low_rank_form == "official":
            r = official_max_rank(space, min(e, hidden))
            self.fc1 = SuperLinear(e, hidden, r, middle=True)
            self.fc2 = SuperLinear(hidden, e, r, middle=True)
        else:
            self.fc1 = SuperLinear(e, hidden, max_rank(space, e, hidden))
            self.fc2 = SuperLinear(hidden, e, max_rank(space, hidden, e))

    def configure(self, arch: Arch, layer: int):
        shapes = active_shapes(arch, layer)
        self.fc1.configure(*shapes["fc1"])
        self.fc2.configure(*shapes["fc2"])

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))

    def active_module(self) -> Mlp:
        m = Mlp.__new__(Mlp)
        nn.Module.__init__(m)
        m.fc1, m.fc2 = self.fc1.active_module(), self.fc2.active_module()
        return m


class SuperBlock(nn.Module):
    def __init__(self, space: SearchSpace, drop_path_prob: float = 0.0):
        super().__init__()
        e = space.super_embed_dim
        self.norm1, self.attn = SuperLayerNorm(e), SuperAttention(space)
        self.norm2, self.mlp = SuperLayerNorm(e), SuperMlp(space)
        self.drop_path = drop_path_prob

    def configure(self, arch: Arch, layer: int):
        self.norm1.configure(arch.embed_dim)
        self.norm2.configure(arch.embed_dim)
        self.attn.configure(arch, layer)
        self.mlp.configure(arch, layer)

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def active_module(self, arch: Arch, layer: int) -> Block:
        m = Block.__new__(Block)
        nn.Module.__init__(m)
        m.norm1, m.norm2 = self.norm1.active_module(), self.norm2.active_module()
        m.attn, m.mlp = self.attn.active_module(arch, layer), self.mlp.active_module()
        m.drop_path = self.drop_path
        return m


def stem_key(arch: Arch) -> str:
    """Which position embedding a subnet uses: one per patch size, one per conv-stem token grid."""
    return f"conv{arch.grid}" if arch.stem == "conv" else str(arch.patch_size)


def conv_grids(space: SearchSpace) -> list[int]:
    """The token grid sides the space's conv stems can have (one per number of pools)."""
    grids = set()
    for layers in space.stem_layers:
        for pools in itertools.product(space.stem_pool, repeat=layers):
            size = space.img_size
            for p in pools:
                size = pooled_size(size) if p else size
            grids.add(size)
    return sorted(grids)


class SuperViT(nn.Module):
    """Weight-sharing ViT over a ``SearchSpace``. One patch stem and position embedding per patch
    size (token counts differ); with conv stems, one shared elastic conv stem and a position
    embedding per token grid; blocks, norm and head are shared by every subnet."""

    def __init__(self, space: SearchSpace, num_classes: int | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        num_classes = num_classes or space.num_classes
        if num_classes is None:
            raise SpaceError(f"space {space.name} has no num_classes and none was given")
        self.space, self.num_classes = space, num_classes
        e = space.super_embed_dim
        patch_sizes = space.patch_size if "patch" in space.stem else []
        self.patch_embeds = nn.ModuleDict(
            {str(p): SuperPatchEmbed(space.img_size, p, space.in_chans, e) for p in patch_sizes})
        cls = int(space.cls_token)
        grids = {str(p): patch_grid(space.img_size, p) for p in patch_sizes}
        self.conv_stem = None
        if space.conv_stem:
            self.conv_stem = SuperConvStem(space.in_chans, space.super_stem_width, e, 2 in space.stem_layers)
            grids.update({f"conv{g}": g for g in conv_grids(space)})
        self.pos_embeds = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(1, g ** 2 + cls, e)) for k, g in grids.items()})
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e)) if space.cls_token else None
        depth = space.super_depth
        self.blocks = nn.ModuleList(
            SuperBlock(space, drop_path_rate * i / max(depth - 1, 1)) for i in range(depth))
        self.norm = SuperLayerNorm(e)
        self.head = SuperLinear(e, num_classes, None)
        for p in self.pos_embeds.values():
            nn.init.trunc_normal_(p, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.set_active_subnet(space.largest(num_classes))

    # ---- subnet selection ----
    def set_active_subnet(self, arch: Arch) -> None:
        self.space.check(arch)
        if arch.num_classes != self.num_classes:
            raise SpaceError(f"arch has {arch.num_classes} classes, the supernet {self.num_classes}")
        self.arch = arch
        e = arch.embed_dim
        if arch.stem == "conv":
            self.conv_stem.configure(arch)
        else:
            self.patch_embeds[str(arch.patch_size)].configure(e)
        for i in range(arch.depth):
            self.blocks[i].configure(arch, i)
        self.norm.configure(e)
        self.head.configure(e, self.num_classes, None)

    @torch.no_grad()
    def get_active_subnet(self, arch: Arch | None = None) -> ViT:
        """A standalone ``ViT`` holding copies of the active slices (equal outputs, no sharing)."""
        if arch is not None:
            self.set_active_subnet(arch)
        arch, e = self.arch, self.arch.embed_dim
        net = ViT(arch)
        net.patch_embed = self.stem().active_module()
        net.pos_embed.copy_(self.pos_embeds[stem_key(arch)][:, :, :e])
        if self.cls_token is not None:
            net.cls_token.copy_(self.cls_token[:, :, :e])
        net.blocks = nn.ModuleList(self.blocks[i].active_module(arch, i) for i in range(arch.depth))
        net.norm, net.head = self.norm.active_module(), self.head.active_module()
        return net.to(self.head.weight.device).train(self.training)

    # ---- forward of the active subnet ----
    def forward_features(self, x):
        arch, e = self.arch, self.arch.embed_dim
        x = self.stem()(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token[:, :, :e].expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embeds[stem_key(arch)][:, :, :e]
        for blk in self.blocks[: arch.depth]:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0] if arch.pool == "cls" else x[:, int(arch.cls_token):].mean(dim=1)

    def forward(self, x):
        return self.head(self.forward_features(x))

    def stem(self) -> nn.Module:
        """The active subnet's stem module."""
        return self.conv_stem if self.arch.stem == "conv" else self.patch_embeds[str(self.arch.patch_size)]

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay (timm convention: biases, norms, embeddings)."""
        skip = {"cls_token"} | {f"pos_embeds.{k}" for k in self.pos_embeds}
        return skip | {n for n, p in self.named_parameters() if p.ndim <= 1}
