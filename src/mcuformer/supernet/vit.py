"""A plain (non-elastic) ViT for one ``Arch``: what ``SuperViT.get_active_subnet`` returns and what the
quantizer and code generator read. Pre-norm blocks, optional low-rank block linears, padded patch stem.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.space import Arch, patch_padding

LN_EPS = 1e-6  # timm's ViT value


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (the residual branch is dropped for a random subset of the batch)."""
    if prob <= 0.0 or not training:
        return x
    keep = 1.0 - prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class LowRankLinear(nn.Module):
    """``in -> rank -> out``: two matmuls, the bias on the second (the engine runs them per token)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.up(self.down(x))


def make_linear(in_features: int, out_features: int, rank: int | None) -> nn.Module:
    return nn.Linear(in_features, out_features) if rank is None else LowRankLinear(in_features, out_features, rank)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens; pads the image when p does not divide it."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.pad = patch_padding(img_size, patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        if any(self.pad):
            x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return self.proj(x).flatten(2).transpose(1, 2)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """The conv stem runs on NHWC maps: oneDNN's 3x3 convs are 1.6x and its max-pools 4-13x faster
    on them than on NCHW ones (2 CPU cores, 500 CIFAR maps), and the tokens are then a view."""
    return x.contiguous(memory_format=torch.channels_last)


def map_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) maps -> (B, H*W, C) tokens, pixels row-major (a view of channels-last maps)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class ConvStem(nn.Module):
    """The convolutional tokenizer (CCT-like): 3x3 convolutions (padding 1) with ReLU, each optionally
    followed by a 3x3 stride-2 max-pool (padding 1); the last conv has embed_dim channels, so the last
    map's pixels (row-major) are the tokens with no projection."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=1) for _, cin, cout, _ in arch.stem_convs())
        self.pools = tuple(arch.stem_pool)

    def forward(self, x):
        x = channels_last(x)
        for conv, pooled in zip(self.convs, self.pools):
            x = F.relu(conv(x), inplace=True)
            if pooled:
                x = F.max_pool2d(x, 3, 2, 1)
        return map_tokens(x)


def make_stem(arch: Arch) -> nn.Module:
    return ConvStem(arch) if arch.stem == "conv" else PatchEmbed(arch.img_size, arch.patch_size, arch.in_chans,
                                                                 arch.embed_dim)


def rel_pos_index(num_tokens: int, cls_token: bool, clip: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) table rows of the official 2-D relative position: vertical and horizontal distance
    between the patches of a query and a key, clipped to [-clip, clip] and shifted to rows
    1..2 clip+1; the class token's row and column use row 0."""
    n = num_tokens - int(cls_token)
    side = math.isqrt(n)
    idx = torch.arange(n, device=device)
    rows = [((idx[None, :] // side - idx[:, None] // side).clamp(-clip, clip) + clip + 1),
            ((idx[None, :] % side - idx[:, None] % side).clamp(-clip, clip) + clip + 1)]
    if cls_token:
        rows = [F.pad(r, (1, 0, 1, 0)) for r in rows]
    return rows[0], rows[1]


class RelPos2D(nn.Module):
    """Learned 2-D relative position tables (AutoFormer/MCUFormer's): for keys and for values, a
    vertical and a horizontal table of 2 clip + 2 rows by head_dim, shared by every head."""

    def __init__(self, clip: int, head_dim: int):
        super().__init__()
        self.clip = clip
        rows = 2 * clip + 2
        self.key_v, self.key_h = nn.Parameter(torch.empty(rows, head_dim)), nn.Parameter(torch.empty(rows, head_dim))
        self.value_v, self.value_h = (nn.Parameter(torch.empty(rows, head_dim)),
                                      nn.Parameter(torch.empty(rows, head_dim)))
        for t in (self.key_v, self.key_h, self.value_v, self.value_h):
            nn.init.trunc_normal_(t, std=0.02)

    def attention(self, q, k, v, cls_token: bool):
        """softmax((q k^T + q . R_k) / sqrt(d)) (v + R_v): the tables are indexed, never expanded to
        N x N x d (the query's dot products with the 2 clip + 2 rows are gathered; the attention
        weights are summed per row before they meet the value tables)."""
        b, h, n, d = q.shape
        dv, dh = rel_pos_index(n, cls_token, self.clip, q.device)
        dv, dh = dv.expand(b, h, n, n), dh.expand(b, h, n, n)
        scores = q @ k.transpose(-2, -1)
        scores = scores + (q @ self.key_v.t()).gather(-1, dv) + (q @ self.key_h.t()).gather(-1, dh)
        attn = (scores * d ** -0.5).softmax(-1)
        rows = self.key_v.shape[0]
        per_v = attn.new_zeros(b, h, n, rows).scatter_add_(-1, dv, attn)
        per_h = attn.new_zeros(b, h, n, rows).scatter_add_(-1, dh, attn)
        return attn @ v + per_v @ self.value_v + per_h @ self.value_h


class Attention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, head_dim: int, qkv_rank, proj_rank, rel_pos: int = 0,
                 cls_token: bool = True):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_dim
        inner = num_heads * head_dim
        self.qkv = make_linear(embed_dim, 3 * inner, qkv_rank)  # rows: [q heads | k heads | v heads]
        self.proj = make_linear(inner, embed_dim, proj_rank)
        self.rel_pos = RelPos2D(rel_pos, head_dim) if rel_pos else None
        self.cls_token = cls_token

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if getattr(self, "rel_pos", None) is not None:
            x = self.rel_pos.attention(q, k, v, self.cls_token)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, self.num_heads * self.head_dim))


class Mlp(nn.Module):
    def __init__(self, embed_dim: int, hidden: int, fc1_rank, fc2_rank):
        super().__init__()
        self.fc1 = make_linear(embed_dim, hidden, fc1_rank)
        self.fc2 = make_linear(hidden, embed_dim, fc2_rank)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, arch: Arch, layer: int):
        super().__init__()
        e = arch.embed_dim
        shapes = arch.linear_shapes(layer)
        self.norm1 = nn.LayerNorm(e, eps=LN_EPS)
        self.attn = Attention(e, arch.num_heads[layer], arch.head_dim, shapes["qkv"][2], shapes["proj"][2],
                              arch.rel_pos, arch.cls_token)
        self.norm2 = nn.LayerNorm(e, eps=LN_EPS)
        self.mlp = Mlp(e, arch.mlp_dim(layer), shapes["fc1"][2], shapes["fc2"][2])
        self.drop_path = 0.0

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class ViT(nn.Module):
    """The standalone subnet. ``forward(images) -> logits``."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        e = arch.embed_dim
        self.patch_embed = make_stem(arch)  # the stem: a PatchEmbed or a ConvStem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e)) if arch.cls_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, arch.num_tokens, e))
        self.blocks = nn.ModuleList(Block(arch, i) for i in range(arch.depth))
        self.norm = nn.LayerNorm(e, eps=LN_EPS)
        self.head = nn.Linear(e, arch.num_classes)

    def forward_features(self, x):
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0] if self.arch.pool == "cls" else x[:, int(self.arch.cls_token):].mean(dim=1)

    def forward(self, x):
        return self.head(self.forward_features(x))
