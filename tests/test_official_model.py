"""The official low-rank form (``low_rank: official``) and official MCUFormer checkpoints.

The reference forward below is written from the official code's semantics (three factors per layer,
q/k/v rows interleaved in the stored qkv weight, the qkv bias sliced in stored order, ranks from the
supernet width for attention and from the sampled width for the MLP, class token excluded from the
average pool) and shares no code with mcuformer's supernet.
"""

import dataclasses
import math
import random

import pytest
import torch
import torch.nn.functional as F

from conftest import OFFICIAL
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.supernet.pretrained import load_dense_pretrained
from mcuformer.supernet.vit import LN_EPS, LowRankLinear

SUPER = dict(embed=64, heads=2, depth=3, mlp=4.0, rank=0.9, img=32, patch=8, classes=10, head_dim=64)


def official_state(seed=0, qkv_bias=True, rel_pos=False, max_rel=14):
    """A random checkpoint in the official MCUFormer supernet layout."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    e, h, hd, c = SUPER["embed"], SUPER["heads"], SUPER["head_dim"], SUPER["classes"]
    inner, hidden = h * hd, int(e * SUPER["mlp"])
    r_attn, r_mlp = int(e * SUPER["rank"]), int(min(e, hidden) * SUPER["rank"])
    grid = math.ceil(SUPER["img"] / SUPER["patch"])
    st = {"patch_embed_super.proj.weight": rnd(e, 3, SUPER["patch"], SUPER["patch"]),
          "patch_embed_super.proj.bias": rnd(e), "pos_embed": rnd(1, grid * grid + 1, e), "cls_token": rnd(1, 1, e),
          "norm.weight": 1 + rnd(e), "norm.bias": rnd(e), "head.weight": rnd(c, e), "head.bias": rnd(c)}
    for i in range(SUPER["depth"]):
        b = f"blocks.{i}."
        for ln in ("attn_layer_norm", "ffn_layer_norm"):
            st[b + ln + ".weight"], st[b + ln + ".bias"] = 1 + rnd(e), rnd(e)
        chains = {"attn.qkv": (e, r_attn, 3 * inner), "attn.proj": (inner, r_attn, e),
                  "fc1": (e, r_mlp, hidden), "fc2": (hidden, r_mlp, e)}
        for name, (fin, r, fout) in chains.items():
            st[f"{b}{name}1.weight"], st[f"{b}{name}2.weight"] = rnd(r, fin), rnd(r, r) + torch.eye(r)
            st[f"{b}{name}3.weight"], st[f"{b}{name}3.bias"] = rnd(fout, r), rnd(fout)
        if not qkv_bias:
            st[b + "attn.qkv3.bias"].zero_()
        if rel_pos:
            for kv in ("k", "v"):
                for hv in ("h", "v"):
                    st[f"{b}attn.rel_pos_embed_{kv}.embeddings_table_{hv}"] = rnd(2 * max_rel + 2, hd)
    return st


def rel_table(st, prefix, n, hd, max_rel):
    """(n, n, hd): the official 2-D relative position embedding, class token on index 0."""
    side = int((n - 1) ** 0.5)
    idx = torch.arange(n - 1)
    dv = (idx[None, :] // side - idx[:, None] // side).clamp(-max_rel, max_rel) + max_rel + 1
    dh = (idx[None, :] % side - idx[:, None] % side).clamp(-max_rel, max_rel) + max_rel + 1
    dv, dh = F.pad(dv, (1, 0, 1, 0)), F.pad(dh, (1, 0, 1, 0))
    return st[prefix + ".embeddings_table_v"][:, :hd][dv] + st[prefix + ".embeddings_table_h"][:, :hd][dh]


def reference_forward(st, arch: Arch, x, rel_pos=False, max_rel=14):
    e, hd, p = arch.embed_dim, arch.head_dim, arch.patch_size
    pad = (math.ceil(arch.img_size / p) * p - arch.img_size) // 2
    t = F.conv2d(x, st["patch_embed_super.proj.weight"][:e], st["patch_embed_super.proj.bias"][:e], stride=p,
                 padding=pad).flatten(2).transpose(1, 2)
    t = torch.cat([st["cls_token"][..., :e].expand(x.shape[0], -1, -1), t], 1) + st["pos_embed"][..., :e]
    ln = lambda z, k: F.layer_norm(z, (e,), st[k + ".weight"][:e], st[k + ".bias"][:e], LN_EPS)  # noqa: E731

    def chain(z, name, fin, r, fout, qkv=False):
        z = z @ st[name + "1.weight"][:r, :fin].T
        z = z @ st[name + "2.weight"][:r, :r].T
        w3 = st[name + "3.weight"][:, :r]
        if qkv:  # stored rows q0 k0 v0 q1 ...: the subnet regroups its leading rows as [q | k | v]
            w3 = torch.cat([w3[g:fout:3] for g in range(3)])
        return z @ w3[:fout].T + st[name + "3.bias"][:fout]

    b, n = t.shape[:2]
    for i in range(arch.depth):
        pre, h, hidden = f"blocks.{i}.", arch.num_heads[i], arch.mlp_dim(i)
        r_attn, r_mlp = int(arch.attn_rank_width * arch.rank_ratio), int(min(e, hidden) * arch.rank_ratio)
        qkv = chain(ln(t, pre + "attn_layer_norm"), pre + "attn.qkv", e, r_attn, 3 * h * hd, qkv=True)
        q, k, v = qkv.reshape(b, n, 3, h, hd).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) * hd ** -0.5
        if rel_pos:
            rk = rel_table(st, pre + "attn.rel_pos_embed_k", n, hd, max_rel)
            scores = scores + torch.einsum("bhid,ijd->bhij", q, rk) * hd ** -0.5
        attn = scores.softmax(-1)
        o = attn @ v
        if rel_pos:
            o = o + torch.einsum("bhij,ijd->bhid", attn, rel_table(st, pre + "attn.rel_pos_embed_v", n, hd, max_rel))
        o = o.transpose(1, 2).reshape(b, n, h * hd)
        t = t + chain(o, pre + "attn.proj", h * hd, r_attn, e)
        y = chain(ln(t, pre + "ffn_layer_norm"), pre + "fc1", e, r_mlp, hidden)
        t = t + chain(F.gelu(y), pre + "fc2", hidden, r_mlp, e)
    t = ln(t, "norm")[:, 1:].mean(1)
    return t @ st["head.weight"][:, :e].T + st["head.bias"]


def official_space(**kw):
    d = {"name": "official-tiny", "img_size": SUPER["img"], "num_classes": SUPER["classes"],
         "embed_dim": [48, 64], "depth": [2, 3], "num_heads": [1, 2], "mlp_ratio": [3.5, 4.0],
         "rank_ratio": [SUPER["rank"]], "patch_size": [SUPER["patch"]], "low_rank": "official",
         "super": {"embed_dim": SUPER["embed"]}}
    d.update(kw)
    return SearchSpace.from_dict(d)


def _archs(space, n, full_heads=False):
    rng = random.Random(1)
    out = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n - 2)]
    if full_heads:
        out = [dataclasses.replace(a, num_heads=(max(space.num_heads),) * a.depth) for a in out]
    return out


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_official_checkpoint_loads_and_subnets_match_the_official_forward(tmp_path, qkv_bias):
    st = official_state(qkv_bias=qkv_bias)
    path = tmp_path / "mcuformer.pth"
    torch.save({"model": st}, path)
    net = SuperViT(official_space()).eval()
    report = load_dense_pretrained(net, path)
    assert report["layout"] == "mcuformer-official" and "three-factor layers as they are" in report["loaded"]
    x = torch.randn(2, 3, 32, 32)
    # the official qkv bias is sliced in stored order, so with a bias only full-head subnets can match
    for arch in _archs(net.space, 6, full_heads=qkv_bias):
        net.set_active_subnet(arch)
        with torch.no_grad():
            ref, ours = reference_forward(st, arch, x), net(x)
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
            # the exported subnet: the middle factor folded, two factors or one dense matrix
            sub = net.get_active_subnet(arch).eval()
            torch.testing.assert_close(sub(x), ref, atol=1e-5, rtol=0)
        assert sum(p.numel() for p in sub.parameters()) == arch.num_params(folded=True)
        for i, blk in enumerate(sub.blocks):
            for name, layer in (("qkv", blk.attn.qkv), ("proj", blk.attn.proj), ("fc1", blk.mlp.fc1),
                                ("fc2", blk.mlp.fc2)):
                fin, fout, rank = arch.linear_shapes(i)[name]
                assert (layer.rank if isinstance(layer, LowRankLinear) else None) == rank
                assert rank is None or rank < min(fin, fout)


def test_official_checkpoint_into_a_two_factor_space_is_refactorised(tmp_path):
    st = official_state()
    path = tmp_path / "mcuformer.pth"
    torch.save({"model": st}, path)
    space = dataclasses.replace(official_space(), low_rank_form="two-factor", rank_ratio=[1.0])
    net = SuperViT(space).eval()
    report = load_dense_pretrained(net, path)
    assert any("refactorised" in s for s in report["loaded"])
    arch = dataclasses.replace(space.largest(), attn_rank_width=SUPER["embed"])
    ref_arch = dataclasses.replace(arch, low_rank_form="official", rank_ratio=SUPER["rank"])
    net.set_active_subnet(space.largest())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # dense space (ratio 1): the product of the three factors, exactly
        torch.testing.assert_close(net(x), reference_forward(st, ref_arch, x), atol=1e-5, rtol=0)


def test_largest_official_T_subnet_at_ratio_0_9_has_the_official_parameter_count():
    space = dataclasses.replace(SearchSpace.load(OFFICIAL), low_rank_form="official", patch_size=[20])
    arch = space.largest(1000)
    assert (arch.embed_dim, arch.depth, arch.rank_ratio, arch.attn_rank_width) == (216, 14, 0.9, 256)
    # the official count (get_sampled_params_numel): 13.64 M; mcuformer's two-factor form has 10.37 M
    assert arch.num_params() == 13_639_264
    assert dataclasses.replace(space, low_rank_form="two-factor").largest(1000).num_params() == 10_370_432
    # exported: attention folds to dense (rank 230 >= 216), the MLP to two factors of rank 194
    assert arch.linear_shapes(0) == {"qkv": (216, 768, None), "proj": (256, 216, None),
                                     "fc1": (216, 864, 194), "fc2": (864, 216, 194)}
    assert arch.num_params(folded=True) == 9_512_512


def test_official_form_trains_all_three_factors():
    torch.manual_seed(0)
    net = SuperViT(official_space())
    net.set_active_subnet(net.space.smallest())
    loss = F.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    fc1 = net.blocks[0].mlp.fc1
    r = fc1.active_rank
    assert r == int(48 * 0.9) and fc1.mid.shape == (int(64 * 0.9),) * 2
    assert fc1.mid.grad[:r, :r].abs().sum() > 0 and fc1.mid.grad[r:].abs().sum() == 0
    assert net.blocks[0].attn.qkv.active_rank == int(64 * 0.9)  # attention: from the supernet width


def test_official_space_round_trips_and_refuses_dense_ratios(tmp_path):
    space = official_space()
    assert space.to_dict()["low_rank"] == "official"
    path = space.save(tmp_path / "s.yaml")
    again = SearchSpace.load(path)
    assert again.low_rank_form == "official" and again.largest() == space.largest()
    arch = space.largest()
    assert Arch.from_dict(arch.to_dict()) == arch and arch.to_dict()["attn_rank_width"] == 64
    assert "low_rank_form" not in dataclasses.replace(space, low_rank_form="two-factor").largest().to_dict()
    from mcuformer.errors import SpaceError
    with pytest.raises(SpaceError, match="strictly between 0 and 1"):
        official_space(rank_ratio=[0.5, 1.0])


def test_memory_model_sees_the_folded_two_factors():
    from mcuformer.memory import unique_params
    from mcuformer.memory.schedule import build_ops
    space = dataclasses.replace(SearchSpace.load(OFFICIAL), low_rank_form="official", patch_size=[20])
    rng = random.Random(0)
    for arch in [space.largest(1000), space.smallest(1000)] + [space.sample(rng, 1000) for _ in range(3)]:
        params = unique_params(build_ops(arch)).values()
        weights = sum(p.shape[0] * p.shape[1] for p in params if p.kind == "weight")
        embeddings = sum(p.shape[0] * (p.shape[1] if len(p.shape) > 1 else 1) for p in params if p.kind == "embedding")
        norms = sum(p.shape[0] for p in params if p.kind == "norm")
        biases = sum(p.shape[0] for p in params if p.kind == "bias")  # an int32 bias per factor
        extra = sum(r for i in range(arch.depth) for _, _, r in arch.linear_shapes(i).values() if r)
        assert weights + embeddings + norms + biases - extra == arch.num_params(folded=True)
        names = {p.name for p in params}
        assert "blocks.0.mlp.fc1.down" in str(names) and "blocks.0.attn.qkv.down" not in str(names)


@pytest.mark.parametrize("clip", [14, 2])
def test_official_checkpoint_with_relative_position_matches_the_official_forward(tmp_path, clip):
    st = official_state(seed=1, qkv_bias=False, rel_pos=True, max_rel=clip)
    path = tmp_path / "mcuformer-rel.pth"
    torch.save({"model": st}, path)
    net = SuperViT(official_space(rel_pos=clip)).eval()
    report = load_dense_pretrained(net, path)
    assert f"relative position tables of {SUPER['depth']} blocks" in report["loaded"]
    x = torch.randn(2, 3, 32, 32)
    for arch in _archs(net.space, 5):
        assert arch.rel_pos == clip
        net.set_active_subnet(arch)
        with torch.no_grad():
            ref = reference_forward(st, arch, x, rel_pos=True, max_rel=clip)
            assert (ref - reference_forward(st, arch, x)).abs().max() > 1e-3  # the tables matter
            torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=0)
            torch.testing.assert_close(net.get_active_subnet(arch).eval()(x), ref, atol=1e-5, rtol=0)
        assert sum(p.numel() for p in net.get_active_subnet(arch).parameters()) == arch.num_params(folded=True)


def test_relative_position_tables_are_reported_when_the_space_has_none(tmp_path):
    path = tmp_path / "mcuformer-rel.pth"
    torch.save({"model": official_state(rel_pos=True)}, path)
    report = load_dense_pretrained(SuperViT(official_space()), path)
    assert any("relative position tables of 3 blocks" in s and "rel_pos: 14" in s for s in report["skipped"])


def test_relative_position_is_elastic_over_token_grids_and_trains():
    space = official_space(rel_pos=3, patch_size=[4, 8], cls_token=False)
    torch.manual_seed(0)
    net = SuperViT(space)
    rng = random.Random(0)
    x = torch.randn(2, 3, 32, 32)
    for arch in [space.largest(), space.smallest(), space.sample(rng)]:
        net.set_active_subnet(arch)
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(net.get_active_subnet(arch).eval()(x), net(x), atol=1e-5, rtol=0)
    net.train()
    net.set_active_subnet(space.largest())  # patch 4: an 8 x 8 grid, distances clipped at 3
    F.cross_entropy(net(x), torch.tensor([0, 1])).backward()
    rel = net.blocks[0].attn.rel_pos
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (rel.key_v, rel.key_h, rel.value_v, rel.value_h))


def test_official_T_parameter_count_with_relative_position():
    space = dataclasses.replace(SearchSpace.load(OFFICIAL), low_rank_form="official", patch_size=[20], rel_pos=14)
    # 14 layers x 4 tables x 30 rows x 64: the official 13.75 M at ratio 0.9, patch 20
    assert space.largest(1000).num_params() == 13_639_264 + 14 * 4 * 30 * 64 == 13_746_784


def test_memory_model_counts_relative_position_tables():
    from mcuformer.memory import estimate, memory_report, unique_params
    from mcuformer.memory.schedule import build_ops
    space = dataclasses.replace(SearchSpace.load(OFFICIAL), patch_size=[20])
    for arch in (space.largest(1000), space.smallest(1000)):
        rel = dataclasses.replace(arch, rel_pos=14)
        tables = [p for p in unique_params(build_ops(rel)).values() if ".rel_pos." in p.name]
        # per layer: key and value tables, each 2 x 30 rows x head_dim int8
        assert sum(p.shape[0] * p.shape[1] for p in tables) == arch.depth * 2 * 60 * 64
        assert estimate(rel).flash_bytes - estimate(arch).flash_bytes == arch.depth * 2 * 60 * 64
        assert estimate(rel).peak_sram_bytes >= estimate(arch).peak_sram_bytes
        rep = memory_report(rel, "stm32f746").to_dict()
        assert (rep["peak_sram_bytes"], rep["flash_bytes"]) == tuple(estimate(rel))
        macs = sum(op.macs for op in build_ops(rel)) - sum(op.macs for op in build_ops(arch))
        n, heads = arch.num_tokens, sum(arch.num_heads)
        assert macs == 2 * n * heads * 60 * 64  # q . key tables and weights . value tables, per row and head


def test_quantize_takes_relative_position_and_tracks_the_float_model(tmp_path, image_folder):
    """A rel-pos supernet trained one step: quantize runs, the int8 model holds the tables, and its logits
    track the float subnet's on the folder's images (the C engine: tests/test_engine.py)."""
    import yaml
    from conftest import CONFIGS, run_cli
    import numpy as np
    from mcuformer.quantize import fakequant
    from mcuformer.quantize.model import QuantModel
    from mcuformer.quantize.workflow import _dataset, load_subnet
    space = yaml.safe_load((CONFIGS / "cifar10-tiny.yaml").read_text())
    space.update(num_classes=2, rel_pos=3, patch_size=[8])
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    run_cli("train", "--space", tmp_path / "space.yaml", "--data-path", image_folder, "--output", tmp_path / "run",
            "--epochs", "1", "--batch-size", "4", "--steps-per-epoch", "1", "--workers", "0", "--no-progress",
            check=True)
    run_cli("quantize", "--checkpoint", tmp_path / "run", "--arch", "largest", "--data-path", image_folder,
            "--output", tmp_path / "q", "--calibration-images", "8", check=True)
    q = QuantModel.load(tmp_path / "q")
    assert q.arch.rel_pos == 3 and q.params["blocks.0.attn.rel_pos.key"].shape == (16, q.arch.head_dim)
    model, state = load_subnet(tmp_path / "run", q.arch)
    ds = _dataset(state, q.arch, image_folder, "val")
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    with torch.no_grad():
        f = model(images).numpy().ravel()
    s, z = q.act["logits"]
    d = (fakequant.forward(q, q.quantize_image(images)).astype(np.float64) - z).ravel() * s
    assert f @ d / (np.linalg.norm(f) * np.linalg.norm(d)) > 0.95
