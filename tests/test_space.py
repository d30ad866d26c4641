import random

import pytest

from conftest import CONFIGS, OFFICIAL
from mcuformer.errors import ConfigError, SpaceError
from mcuformer.space import Arch, SearchSpace, patch_grid, patch_padding


def test_official_pair_loads_with_official_values():
    s = SearchSpace.load(OFFICIAL)
    assert s.embed_dim == [168, 192, 216] and s.depth == [12, 13, 14]
    assert s.num_heads == [3, 4] and s.mlp_ratio == [3.5, 4.0]
    assert (s.super_embed_dim, s.super_depth, s.super_num_heads, s.super_mlp_ratio) == (256, 14, 4, 4.0)
    assert s.rank_ratio == [0.9] and s.patch_size == [16] and s.img_size == 240
    assert s.evolution["patch_size"] == [16, 20, 24, 28, 32]
    assert len(s.evolution["rank_ratio"]) == 12 and s.evolution["rank_ratio"][0] == 0.4
    assert s.low_rank


def test_official_t_file_alone_is_a_dense_patch16_space():
    s = SearchSpace.load(OFFICIAL[0])
    assert s.rank_ratio == [1.0] and s.patch_size == [16] and not s.low_rank


def test_single_file_form_equals_official_pair():
    a, b = SearchSpace.load(OFFICIAL).to_dict(), SearchSpace.load(CONFIGS / "mcu-T.yaml").to_dict()
    for d in (a, b):
        d.pop("name"), d.pop("num_classes")
    assert a == b


def test_official_file_missing_the_t_part_is_an_error():
    with pytest.raises(SpaceError, match="EMBED_DIM"):
        SearchSpace.load(OFFICIAL[1])


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("embed_dim: [96, 128\ndepth: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*line"):
        SearchSpace.load(p)


def test_unknown_key_is_an_error(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("embed_dim: [8]\ndepth: [1]\nnum_heads: [1]\nmlp_ratio: [2]\nembded: 3\n")
    with pytest.raises(SpaceError, match="embded"):
        SearchSpace.load(p)


def test_heads_beyond_the_supernet_are_rejected(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("embed_dim: [64]\ndepth: [2]\nnum_heads: [2, 8]\nmlp_ratio: [2]\nsuper: {num_heads: 4}\n")
    with pytest.raises(SpaceError, match="num_heads"):
        SearchSpace.load(p)


@pytest.mark.parametrize("img,patch,grid,pad", [(240, 16, 15, (0, 0)), (240, 20, 12, (0, 0)), (240, 24, 10, (0, 0)),
                                                (240, 28, 9, (6, 6)), (240, 32, 8, (8, 8)), (32, 5, 7, (1, 2))])
def test_token_grid_and_padding_like_the_official_stem(img, patch, grid, pad):
    assert patch_grid(img, patch) == grid and patch_padding(img, patch) == pad


@pytest.mark.parametrize("cfg", ["cifar10.yaml", "cifar10-tiny.yaml", "mcu-T.yaml"])
def test_sample_mutate_crossover_stay_inside_the_space(cfg):
    s = SearchSpace.load(CONFIGS / cfg)
    rng = random.Random(0)
    pop = [s.sample(rng) for _ in range(30)]
    seen_depths = set()
    for _ in range(500):
        a, b = rng.sample(pop, 2)
        child = s.mutate(a, rng, m_prob=0.3, s_prob=0.5) if rng.random() < 0.5 else s.crossover(a, b, rng)
        s.check(child)  # raises if outside
        seen_depths.add(child.depth)
        pop[rng.randrange(len(pop))] = child
    assert seen_depths == set(s.depth)
    assert s.contains(s.largest()) and s.contains(s.smallest())


def test_arch_outside_the_space_names_the_field():
    s = SearchSpace.load(CONFIGS / "cifar10.yaml")
    a = s.largest()
    bad = Arch.from_dict({**a.to_dict(), "embed_dim": 100})
    with pytest.raises(SpaceError, match="embed_dim 100"):
        s.check(bad)
    bad = Arch.from_dict({**a.to_dict(), "num_heads": [2] * (a.depth - 1) + [5]})
    with pytest.raises(SpaceError, match=r"num_heads\[7\]"):
        s.check(bad)


def test_arch_round_trip_yaml_and_json(tmp_path):
    a = SearchSpace.load(CONFIGS / "mcu-T.yaml").sample(random.Random(3))
    assert Arch.load(a.save(tmp_path / "a.yaml")) == a
    assert Arch.load(a.save(tmp_path / "a.json")) == a


@pytest.mark.parametrize("change,match", [({"depth": 3}, "depth is 3"), ({"num_heads": [0, 1]}, "positive"),
                                          ({"rank_ratio": 1.5}, "rank_ratio"), ({"patch_size": 64}, "larger than"),
                                          ({"img_size": 0}, "img_size")])
def test_arch_validation(change, match):
    base = dict(img_size=32, patch_size=4, rank_ratio=0.5, embed_dim=16, depth=2, num_heads=[1, 1],
                mlp_ratio=[2, 2], num_classes=10)
    with pytest.raises(SpaceError, match=match):
        Arch.from_dict({**base, **change})


def test_rank_is_ratio_of_min_dim_and_dense_at_one():
    a = Arch(img_size=240, patch_size=20, rank_ratio=0.9, embed_dim=216, depth=1, num_heads=(4,), mlp_ratio=(4.0,),
             num_classes=1000)
    shapes = a.linear_shapes(0)
    assert shapes["qkv"] == (216, 768, 194) and shapes["proj"] == (256, 216, 194)
    assert shapes["fc1"] == (216, 864, 194) and shapes["fc2"] == (864, 216, 194)
    dense = Arch(**{**a.to_dict(), "rank_ratio": 1.0})
    assert all(r is None for *_, r in dense.linear_shapes(0).values())
    assert a.num_tokens == 145


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    import os
    import stat

    from mcuformer.utils.io import write_text
    p = tmp_path / "f.txt"
    write_text(p, "old")
    write_text(p, "new")
    assert p.read_text() == "new" and [f.name for f in tmp_path.iterdir()] == ["f.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
