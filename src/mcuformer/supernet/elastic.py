"""Elastic layers with weight entanglement (AutoFormer): a subnet uses the leading rows/columns of the
shared weights. Each layer is told its active sizes by ``configure(...)`` and can hand out a plain
module holding copies of its active slice (``active_module()``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mcuformer.space import patch_padding
from mcuformer.supernet.vit import LN_EPS, ConvStem, LowRankLinear, PatchEmbed, channels_last, map_tokens


def factorise(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD ``W ~= up @ down`` with the singular values split evenly (sqrt on each side).

    Because singular values come sorted, the leading r rows of ``down`` / columns of ``up`` are the
    best rank-r approximation for every r (Eckart-Young): exactly what nested elastic ranks need.
    """
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    up = (u[:, :rank] * root).to(weight.dtype)
    down = (root[:, None] * vh[:rank]).to(weight.dtype)
    return up, down


def copy_leading(target: torch.Tensor, src: torch.Tensor) -> None:
    """Copy into ``target`` the block where both tensors overlap, from index 0 on every axis: a checkpoint
    of another size fills the leading rows and columns, as weight entanglement slices them."""
    idx = tuple(slice(0, min(a, b)) for a, b in zip(target.shape, src.shape))
    target[idx] = src[idx].to(target.dtype)


class SuperLinear(nn.Module):
    """Dense (``rank_max=None``) or low-rank (``down``: rank_max x in_max, ``up``: out_max x rank_max).

    ``out_groups`` > 1 stores the output as that many equal blocks (q|k|v): a subnet takes the leading
    rows of each block, so a head keeps its weights whatever the number of heads.
    """

    def __init__(self, in_max: int, out_max: int, rank_max: int | None, bias: bool = True, out_groups: int = 1,
                 middle: bool = False):
        super().__init__()
        assert out_max % out_groups == 0
        assert not (middle and rank_max is None)
        self.in_max, self.out_max, self.rank_max, self.out_groups = in_max, out_max, rank_max, out_groups
        self.middle = middle  # the official form: a trainable rank x rank factor between down and up
        if rank_max is None:
            self.weight = nn.Parameter(torch.empty(out_max, in_max))
        else:
            self.down = nn.Parameter(torch.empty(rank_max, in_max))
            if middle:
                self.mid = nn.Parameter(torch.empty(rank_max, rank_max))
            self.up = nn.Parameter(torch.empty(out_max, rank_max))
        self.bias = nn.Parameter(torch.zeros(out_max)) if bias else None
        self.reset_parameters()
        self.configure(in_max, out_max, rank_max)

    @property
    def low_rank(self) -> bool:
        return self.rank_max is not None

    def reset_parameters(self, std: float = 0.02):
        dense = nn.init.trunc_normal_(torch.empty(self.out_max, self.in_max), std=std)
        self.load_dense(dense)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @torch.no_grad()
    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        """Set from a dense (out_max x in_max) matrix; low-rank layers take its truncated SVD."""
        if self.middle:  # like the official initialisation: V^T, diag(singular values), U
            u, sv, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
            r = min(self.rank_max, sv.numel())
            self.down.zero_()
            self.mid.zero_()
            self.up.zero_()
            self.down[:r].copy_(vh[:r])
            self.mid[:r, :r].copy_(torch.diag(sv[:r]))
            self.up[:, :r].copy_(u[:, :r])
        elif self.low_rank:
            up, down = factorise(weight, self.rank_max)
            self.up.copy_(up)
            self.down.copy_(down)
        else:
            self.weight.copy_(weight)
        if bias is not None and self.bias is not None:
            self.bias.copy_(bias)

    def configure(self, in_features: int, out_features: int, rank: int | None):
        """Active sizes. ``rank=None`` in a low-rank layer means full rank (min(in, out)) -- the subnet
        then exports a dense layer, the product of the two factors."""
        assert in_features <= self.in_max and out_features <= self.out_max
        self.active_in, self.active_out = in_features, out_features
        if self.low_rank:
            self.active_rank = min(rank if rank is not None else min(in_features, out_features), self.rank_max)
            self.active_dense = rank is None
        else:
            self.active_rank, self.active_dense = None, True

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        """Leading active rows of each output group."""
        if self.out_groups == 1:
            return t[: self.active_out]
        per = self.active_out // self.out_groups
        return t.view(self.out_groups, self.out_max // self.out_groups, *t.shape[1:])[:, :per].reshape(
            self.active_out, *t.shape[1:])

    def active_weights(self):
        bias = self._rows(self.bias) if self.bias is not None else None
        if not self.low_rank:
            return self._rows(self.weight)[:, : self.active_in], None, bias
        r = self.active_rank
        down = self.down[:r, : self.active_in]
        if self.middle:  # fold the middle factor into the first (exact up to rounding)
            down = (self.mid[:r, :r].double() @ down.double()).to(down.dtype)
        return self._rows(self.up)[:, :r], down, bias

    def forward(self, x):
        if self.middle:
            r = self.active_rank
            x = F.linear(F.linear(x, self.down[:r, : self.active_in]), self.mid[:r, :r])
            return F.linear(x, self._rows(self.up)[:, :r], self._rows(self.bias) if self.bias is not None else None)
        w, down, b = self.active_weights()
        if down is not None:
            x = F.linear(x, down)
        return F.linear(x, w, b)

    @torch.no_grad()
    def active_module(self) -> nn.Module:
        w, down, b = self.active_weights()
        # an official three-factor layer whose rank reaches min(in, out) exports as one dense matrix
        full_rank = self.middle and self.active_rank >= min(self.active_in, self.active_out)
        if down is None or self.active_dense or full_rank:
            if full_rank:
                down = self.mid[: self.active_rank, : self.active_rank].double() @ \
                    self.down[: self.active_rank, : self.active_in].double()
            full = w if down is None else w.double() @ down.double()
            m = nn.Linear(self.active_in, self.active_out, bias=b is not None)
            m.weight.copy_(full)
        else:
            m = LowRankLinear(self.active_in, self.active_out, self.active_rank, bias=b is not None)
            m.down.weight.copy_(down)
            m.up.weight.copy_(w)
        if b is not None:
            (m.bias if isinstance(m, nn.Linear) else m.up.bias).copy_(b)
        return m


class SuperLayerNorm(nn.Module):
    def __init__(self, dim_max: int, eps: float = LN_EPS):
        super().__init__()
        self.dim_max, self.eps = dim_max, eps
        self.weight = nn.Parameter(torch.ones(dim_max))
        self.bias = nn.Parameter(torch.zeros(dim_max))
        self.active_dim = dim_max

    def configure(self, dim: int):
        self.active_dim = dim

    def forward(self, x):
        d = self.active_dim
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], self.eps)

    @torch.no_grad()
    def active_module(self) -> nn.LayerNorm:
        m = nn.LayerNorm(self.active_dim, eps=self.eps)
        m.weight.copy_(self.weight[: self.active_dim])
        m.bias.copy_(self.bias[: self.active_dim])
        return m


class SuperPatchEmbed(nn.Module):
    """Patch stem for one patch size with an elastic output width (leading filters)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_max: int):
        super().__init__()
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.pad = patch_padding(img_size, patch_size)
        self.proj = nn.Conv2d(in_chans, embed_max, kernel_size=patch_size, stride=patch_size)
        # timm initialises the stem like a linear layer over the flattened patch
        fan_in = in_chans * patch_size * patch_size
        nn.init.trunc_normal_(self.proj.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.proj.bias)
        self.active_dim = embed_max

    def configure(self, dim: int):
        self.active_dim = dim

    def forward(self, x):
        if any(self.pad):
            x = F.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        d, p = self.active_dim, self.patch_size
        x = F.conv2d(x, self.proj.weight[:d], self.proj.bias[:d], stride=p)
        return x.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def active_module(self) -> PatchEmbed:
        m = PatchEmbed(self.img_size, self.patch_size, self.in_chans, self.active_dim)
        m.proj.weight.copy_(self.proj.weight[: self.active_dim])
        m.proj.bias.copy_(self.proj.bias[: self.active_dim])
        return m


class SuperConvStem(nn.Module):
    """The elastic convolutional tokenizer: two shared 3x3 convs. The first layer of every conv stem
    uses the leading filters of ``conv1`` (stem_width of them in a 2-layer stem, embed_dim in a 1-layer
    one); ``conv2`` maps the leading stem_width input channels to the leading embed_dim filters."""

    def __init__(self, in_chans: int, width_max: int, embed_max: int, two_layers: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width_max, 3, padding=1)
        self.conv2 = nn.Conv2d(width_max, embed_max, 3, padding=1) if two_layers else None
        self.arch = None

    def configure(self, arch):
        self.arch = arch

    def layers(self):
        """(conv module, in channels, out channels, pooled) of each active layer."""
        convs = (self.conv1, self.conv2)
        return [(convs[i], cin, cout, pooled) for i, (_, cin, cout, pooled) in enumerate(self.arch.stem_convs())]

    def forward(self, x):
        x = channels_last(x)
        for conv, cin, cout, pooled in self.layers():
            x = F.relu(F.conv2d(x, conv.weight[:cout, :cin], conv.bias[:cout], padding=1), inplace=True)
            if pooled:
                x = F.max_pool2d(x, 3, 2, 1)
        return map_tokens(x)

    @torch.no_grad()
    def active_module(self) -> ConvStem:
        m = ConvStem(self.arch)
        for plain, (conv, cin, cout, _) in zip(m.convs, self.layers()):
            plain.weight.copy_(conv.weight[:cout, :cin])
            plain.bias.copy_(conv.bias[:cout])
        return m
