import dataclasses
import random

import pytest
import torch

from conftest import CONFIGS, OFFICIAL
from mcuformer.errors import SpaceError
from mcuformer.space import SearchSpace
from mcuformer.supernet import SuperViT, ViT
from mcuformer.supernet.elastic import SuperLinear, factorise
from mcuformer.train.trainer import step_archs


def _archs(space, n, seed=0, num_classes=None):
    rng = random.Random(seed)
    return ([space.largest(num_classes), space.smallest(num_classes)]
            + [space.sample(rng, num_classes) for _ in range(n - 2)])


@pytest.mark.parametrize("cfg,n", [("cifar10.yaml", 20), ("cifar10-tiny.yaml", 20)])
def test_extracted_subnet_equals_supernet(cfg, n):
    torch.manual_seed(0)
    space = SearchSpace.load(CONFIGS / cfg)
    net = SuperViT(space).eval()
    x = torch.randn(3, 3, space.img_size, space.img_size)
    for arch in _archs(space, n):
        net.set_active_subnet(arch)
        expected = net(x)
        sub = net.get_active_subnet(arch).eval()
        assert isinstance(sub, ViT)
        torch.testing.assert_close(sub(x), expected, atol=1e-5, rtol=0)
        assert sum(p.numel() for p in sub.parameters()) == arch.num_params()


def test_extracted_subnet_equals_supernet_official_t_240px():
    torch.manual_seed(0)
    space = SearchSpace.load(OFFICIAL)
    net = SuperViT(space, num_classes=1000).eval()
    x = torch.randn(1, 3, 240, 240)
    for arch in _archs(space, 4, num_classes=1000):
        net.set_active_subnet(arch)
        expected = net(x)
        torch.testing.assert_close(net.get_active_subnet().eval()(x), expected, atol=1e-5, rtol=0)


def test_subnet_holds_copies_not_views():
    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    net = SuperViT(space).eval()
    arch = space.smallest()
    sub = net.get_active_subnet(arch).eval()
    x = torch.randn(2, 3, 32, 32)
    before = sub(x)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    torch.testing.assert_close(sub(x), before, atol=0, rtol=0)


def test_weight_entanglement_smaller_subnet_reads_leading_slices():
    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    net = SuperViT(space)
    arch = space.smallest()
    sub = net.get_active_subnet(arch)
    e = arch.embed_dim
    assert torch.equal(sub.norm.weight, net.norm.weight[:e])
    assert torch.equal(sub.head.weight, net.head.weight[:, :e])


def test_patch_size_switch_uses_its_own_stem_and_token_count():
    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    net = SuperViT(space).eval()
    x = torch.randn(1, 3, 32, 32)
    for p, tokens in ((4, 64), (8, 16)):
        arch = dataclasses.replace(space.largest(), patch_size=p)
        net.set_active_subnet(arch)
        assert net.patch_embeds[str(p)](x).shape[1] == tokens == arch.num_tokens


def test_arch_outside_space_or_wrong_classes_is_refused():
    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    net = SuperViT(space)
    with pytest.raises(SpaceError, match="embed_dim"):
        net.set_active_subnet(dataclasses.replace(space.largest(), embed_dim=128))
    with pytest.raises(SpaceError, match="num_heads"):
        net.set_active_subnet(dataclasses.replace(space.largest(), num_heads=(8,) * 3))


def test_truncated_svd_error_is_the_discarded_spectrum():
    torch.manual_seed(0)
    w = torch.randn(48, 32, dtype=torch.float64) @ torch.diag(torch.logspace(0, -2, 32, dtype=torch.float64))
    s = torch.linalg.svdvals(w)
    for r in (4, 16, 32):
        up, down = factorise(w, r)
        err = torch.linalg.norm(w - up @ down)
        torch.testing.assert_close(err, s[r:].square().sum().sqrt(), atol=1e-9, rtol=1e-7)


def test_low_rank_layer_nested_ranks_are_best_approximations():
    torch.manual_seed(0)
    layer = SuperLinear(32, 48, rank_max=24)
    dense = torch.randn(48, 32)
    layer.load_dense(dense)
    s = torch.linalg.svdvals(dense.double())
    for r in (6, 12, 24):
        layer.configure(32, 48, r)
        w, down, _ = layer.active_weights()
        err = torch.linalg.norm(dense.double() - w.double() @ down.double())
        torch.testing.assert_close(err, s[r:].square().sum().sqrt(), atol=1e-4, rtol=1e-4)


def test_sandwich_rule_trains_largest_smallest_and_a_random_subnet():
    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    archs = step_archs(space, 10, "sandwich", seed=0, global_step=7)
    assert archs[0] == space.largest() and archs[1] == space.smallest() and len(archs) == 3
    assert step_archs(space, 10, "uniform", 0, 7) == step_archs(space, 10, "uniform", 0, 7)
