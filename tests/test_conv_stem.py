"""The convolutional tokenizer through every stage: the space and Arch carry it, the supernet's
extracted subnets give identical outputs, the memory model (ops, row-by-row schedule, lower bound,
planner, estimate) by hand and over random archs, the integer paths agree bit for bit, and the C
engine equals the reference on the host (ASan + UBSan) and on the emulated Cortex-M7, with the
planned arena as the ELF's arena symbol."""

import dataclasses
import itertools
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mcuformer.codegen.export import export_model
from mcuformer.errors import CheckpointError, SpaceError
from mcuformer.memory import (TECHNIQUES, Techniques, build_ops, check_plan, estimate, memory_report, plan_arena,
                              unique_params)
from mcuformer.memory.ops import ConvStemDims
from mcuformer.memory.schedule import section_cost, section_ops, stem_dims
from mcuformer.quantize import fakequant, intops
from mcuformer.quantize.reference import Reference
from mcuformer.quantize.synthetic import random_conv_arch, random_quant_model
from mcuformer.quantize.torchpath import TorchInt8
from mcuformer.quantize.workflow import load_subnet
from mcuformer.space import Arch, SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from mcuformer.train.warm_start import with_token_grids
from mcuformer.verify import verify

from conftest import CONFIGS, ROOT

HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-nm")
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed "
                                                    "(scripts/setup.sh installs them)")
SPACE = SearchSpace.load(CONFIGS / "cifar10-conv.yaml")
EVERY_SET = [Techniques(*bits) for bits in itertools.product([False, True], repeat=len(TECHNIQUES))]


def conv_arch(**kw) -> Arch:
    base = dict(img_size=16, patch_size=1, rank_ratio=1.0, embed_dim=16, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                num_classes=4, head_dim=8, cls_token=False, stem="conv", stem_layers=2, stem_width=8,
                stem_pool=(True, True))
    return Arch(**{**base, **kw})


# ---------------------------------------------------------------- space and Arch

def test_token_grid_follows_the_pools():
    assert conv_arch().grid == 4 and conv_arch().num_tokens == 16
    assert conv_arch(img_size=9).grid == 3  # 9 -> 5 -> 3: ceil(side / 2) per pool
    assert conv_arch(stem_pool=(False, True)).grid == 8
    assert conv_arch(stem_layers=1, stem_width=0, stem_pool=(False,), cls_token=True).num_tokens == 16 * 16 + 1
    a = conv_arch(stem_pool=(True, False))
    assert a.stem_convs() == [(16, 3, 8, True), (8, 8, 16, False)]
    assert a.num_params() == sum(p.numel() for p in SuperViT(_space_of(a)).get_active_subnet(a).parameters())


def _space_of(a: Arch) -> SearchSpace:
    return SearchSpace(embed_dim=[a.embed_dim], depth=[a.depth], num_heads=list(set(a.num_heads)),
                       mlp_ratio=list(set(a.mlp_ratio)), img_size=a.img_size, num_classes=a.num_classes,
                       head_dim=a.head_dim, cls_token=a.cls_token, pool=a.pool, stem=["conv"],
                       stem_layers=[a.stem_layers], stem_width=[a.stem_width or 4], stem_pool=list(set(a.stem_pool)))


def test_arch_files_round_trip_and_patch_archs_read_as_before(tmp_path):
    a = conv_arch(stem_pool=(False, True))
    for suffix in (".yaml", ".json"):
        assert Arch.load(a.save(tmp_path / f"a{suffix}")) == a
    patch = Arch(img_size=32, patch_size=4, rank_ratio=0.5, embed_dim=16, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                 num_classes=10)
    assert not {"stem", "stem_layers", "stem_width", "stem_pool"} & set(patch.to_dict())
    assert Arch.from_dict(patch.to_dict()).stem == "patch"


@pytest.mark.parametrize("change,match", [
    (dict(stem="cnn"), "stem must be one of"),
    (dict(stem_layers=3, stem_pool=(True,) * 3), "1 or 2 layers"),
    (dict(stem_width=0), "stem_width"),
    (dict(stem_pool=(True,)), "one entry per stem layer"),
    (dict(patch_size=4), "patch_size must be 1"),
    (dict(stem="patch"), "belong to stem 'conv'"),
])
def test_conv_arch_validation(change, match):
    with pytest.raises(SpaceError, match=match):
        conv_arch(**change)


def test_space_samples_both_stems_and_stays_inside():
    rng = random.Random(0)
    archs = [SPACE.sample(rng) for _ in range(200)]
    seen = {(a.stem, a.stem_layers, a.num_tokens) for a in archs}
    assert seen == {("patch", 0, 256), ("patch", 0, 64), ("conv", 1, 256), ("conv", 2, 64)}
    assert {a.stem_width for a in archs if a.stem_layers == 2} == {24, 32, 48}
    for a, b in zip(archs, archs[1:]):
        for child in (SPACE.mutate(a, rng, 0.5, 0.5), SPACE.crossover(a, b, rng)):
            SPACE.check(child)
    assert SPACE.largest().stem == "conv" and SPACE.largest().stem_width == 48
    assert SPACE.smallest().stem == "patch"
    # 2 patch sizes + 1 one-layer + 3 two-layer conv stems, times the transformer choices
    assert SPACE.size() == SearchSpace.load(CONFIGS / "cifar10.yaml").size() // 2 * 6
    assert SearchSpace.from_dict(SPACE.to_dict()) == SPACE
    with pytest.raises(SpaceError, match="stem_layers 2 is not among"):
        replace_space = SearchSpace.from_dict({**SPACE.to_dict(), "stem_layers": [1]})
        replace_space.check(SPACE.largest())


def test_patch_only_space_files_are_written_as_before():
    assert "stem" not in SearchSpace.load(CONFIGS / "cifar10.yaml").to_dict()


# ---------------------------------------------------------------- supernet

def test_extracted_conv_subnets_equal_the_supernet():
    torch.manual_seed(0)
    net = SuperViT(SPACE).eval()
    x = torch.randn(2, 3, 32, 32)
    rng = random.Random(1)
    archs = [SPACE.largest(), SPACE.smallest()] + [SPACE.sample(rng) for _ in range(8)]
    assert {a.stem for a in archs} == {"patch", "conv"}
    for arch in archs:
        net.set_active_subnet(arch)
        expected = net(x)
        sub = net.get_active_subnet(arch).eval()
        torch.testing.assert_close(sub(x), expected, atol=1e-5, rtol=0)
        assert sum(p.numel() for p in sub.parameters()) == arch.num_params()


def test_conv_stems_share_leading_filters():
    net = SuperViT(SPACE)
    one = dataclasses.replace(SPACE.largest(), stem_layers=1, stem_width=0, stem_pool=(True,), embed_dim=128)
    two = SPACE.largest()  # 48-wide first conv, then 192
    a, b = net.get_active_subnet(one).patch_embed, net.get_active_subnet(two).patch_embed
    assert torch.equal(a.convs[0].weight, net.conv_stem.conv1.weight[:128])
    assert torch.equal(b.convs[0].weight, net.conv_stem.conv1.weight[:48])
    assert torch.equal(b.convs[1].weight, net.conv_stem.conv2.weight[:192, :48])
    assert torch.equal(a.convs[0].weight[:48], b.convs[0].weight)


# ---------------------------------------------------------------- memory model

def test_conv_stem_memory_by_hand():
    """16 px RGB, conv 8 + pool, conv 16 + pool (4x4 tokens), no cls."""
    d = stem_dims(conv_arch())
    assert isinstance(d, ConvStemDims)
    image, conv0, pool0, conv1, tokens = 16 * 16 * 3, 16 * 16 * 8, 8 * 8 * 8, 8 * 8 * 16, 4 * 4 * 16
    col0, col1 = 28, 72  # the 3x3xC window of a pixel, 4-byte aligned
    layerwise = section_cost("conv_stem", d, Techniques.none())
    assert layerwise.peak == max(image + conv0 + col0, conv0 + pool0, pool0 + conv1 + col1, conv1 + tokens, 2 * tokens)
    # row by row: three rows of each map but the last, beside the image and the tokens
    rings = 3 * 16 * 8 + 3 * 8 * 8 + 3 * 8 * 16
    assert section_cost("conv_stem", d, Techniques.only("row_by_row")).peak == image + rings + col1 + tokens
    assert section_cost("conv_stem", d, Techniques.only("row_by_row", "operator_integration")).num_ops == 1
    assert layerwise.macs == 16 * 16 * 27 * 8 + 8 * 8 * 72 * 16
    assert layerwise.flash == sum(p.size for op in section_ops("conv_stem", d, Techniques.none()) for p in op.params)
    assert {p.name: p.shape for op in section_ops("conv_stem", d, Techniques.none()) for p in op.params
            if p.kind == "weight"} == {"stem.conv0.weight": (8, 27), "stem.conv1.weight": (16, 72)}


def test_row_by_row_is_used_where_it_lowers_the_peak_and_reported():
    big = conv_arch(img_size=32, embed_dim=32, stem_width=32)
    report = memory_report(big)
    assert report.sections["stem"].row_by_row
    assert report.ops[0].kernel == "conv_stem_rows" and report.peak_op.name == "stem.rows"
    ab = report.ablation
    assert ab["alone"]["row_by_row"] < ab["none"] and ab["all_but"]["row_by_row"] > ab["all"]
    assert report.layerwise_baseline_bytes >= ab["none"] > ab["all"] == report.peak_sram_bytes
    # a patch stem does not change with it
    patch = Arch(img_size=32, patch_size=4, rank_ratio=1.0, embed_dim=32, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                 num_classes=4, head_dim=8)
    assert estimate(patch, Techniques.none()) == estimate(patch, Techniques.only("row_by_row"))


def test_random_conv_archs_plan_to_the_lower_bound_and_the_estimate():
    rng = random.Random(5)
    archs = [random_conv_arch(rng) for _ in range(30)] + [SPACE.sample(rng) for _ in range(30)]
    for arch in archs:
        techniques = rng.choice(EVERY_SET)
        plan = plan_arena(build_ops(arch, techniques))
        check_plan(plan)
        assert plan.arena_bytes == plan.lower_bound_bytes == estimate(arch, techniques).peak_sram_bytes
        for t in techniques.enabled():  # a technique switched off never lowers the peak
            assert estimate(arch, techniques.without(t)).peak_sram_bytes >= plan.arena_bytes


# ---------------------------------------------------------------- integer paths

def test_conv_and_pool_integer_ops_by_hand():
    x = np.arange(-8, 10, dtype=np.int8).reshape(3, 3, 2)
    pooled = intops.maxpool3x3s2(x)
    assert pooled.shape == (2, 2, 2)
    assert pooled[0, 0].tolist() == [0, 1] and pooled[1, 1].tolist() == [8, 9]
    # an all-ones 3x3 kernel on one channel counts the window (padding holds the zero point 5)
    ones = np.ones((1, 9), np.int8)
    x = np.full((3, 3, 1), 6, np.int8)  # one above the zero point everywhere
    acc_only = intops.conv3x3(x, ones, np.array([-5 * 9]), np.array([1 << 30]), np.array([1]), 5, -128)
    assert acc_only[..., 0].tolist() == [[-124, -122, -124], [-122, -119, -122], [-124, -122, -124]]


@pytest.fixture(scope="module")
def quantised_archs():
    rng = random.Random(3)
    archs = [random_conv_arch(rng) for _ in range(4)]
    return [(a, random_quant_model(a, seed=i)) for i, a in enumerate(archs)]


def test_reference_vectorised_and_torch_paths_agree(quantised_archs):
    for arch, q in quantised_archs:
        img = np.random.default_rng(0).integers(-128, 128, (3, arch.img_size, arch.img_size, arch.in_chans),
                                                dtype=np.int8)
        fast = fakequant.forward(q, img)
        assert np.array_equal(TorchInt8(q).forward(img).numpy(), fast)
        for flags in (Techniques.none(), Techniques.all(), Techniques.only("row_by_row"),
                      Techniques.only("operator_integration", "token_overwriting")):
            ref = Reference(q, flags)
            assert np.array_equal(np.stack([ref.run(im) for im in img]), fast), (arch.short(), flags.label())


def test_params_are_the_memory_models_flash_arrays(quantised_archs):
    for arch, q in quantised_archs:
        planned = unique_params(build_ops(arch, Techniques.none()))
        assert set(planned) == set(q.params)
        for name, p in planned.items():
            assert q.params[name].shape == p.shape and str(q.params[name].dtype) == p.dtype, name


def test_int8_conv_stem_tracks_the_float_model():
    from mcuformer.quantize.calibrate import calibrate
    from mcuformer.quantize.model import build_quant_model
    from mcuformer.quantize.synthetic import random_float_model

    arch = conv_arch(cls_token=True, stem_pool=(True, False))
    model = random_float_model(arch, 0)
    images = torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    q = build_quant_model(model, calibrate(model, [images[:16], images[16:]]))
    with torch.no_grad():
        want = model(images).numpy()
    s, z = q.act["logits"]
    got = s * (fakequant.forward(q, q.quantize_image(images)).astype(np.float64) - z)
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
    from mcuformer.quantize.report import cosine_report

    stem = {r["tensor"]: r["cosine"] for r in cosine_report(q, model, images[:8]) if r["tensor"].startswith("stem.")}
    assert set(stem) == {"stem.conv0.out", "stem.patches", "stem.x"} and min(stem.values()) > 0.99, stem


# ---------------------------------------------------------------- C engine

def _export(tmp, i: int, board="stm32f746"):
    rng = random.Random(2000 + i)
    arch = random_conv_arch(rng)
    flags = Techniques(**{t: rng.random() < 0.6 for t in TECHNIQUES})
    folder = tmp / f"c{i}"
    info = export_model(random_quant_model(arch, seed=i), folder, board, flags)
    return folder, arch, flags, info


def test_random_conv_archs_bit_exact_on_the_host_under_sanitizers(tmp_path, cached_host_cc):
    def one(i):
        folder, arch, flags, _ = _export(tmp_path, i)
        return i, arch, flags, verify(folder, "host", images=2, seed=i, sanitize=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(10)))
    bad = [(i, a.short(), f.label(), r.mismatched_images) for i, a, f, r in results
           if not (r.bit_exact and r.sanitizers and r.guard_damage == 0)]
    assert not bad, bad
    calls = {line.split("(")[0].strip() for i, *_ in results
             for line in (tmp_path / f"c{i}/mcuformer_model.c").read_text().splitlines()
             if line.strip().startswith("mcu_conv_stem")}
    assert calls == {"mcu_conv_stem_stage", "mcu_conv_stem_rows", "mcu_conv_stem_pos_add"}


def arena_symbol_bytes(elf) -> int:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^[0-9a-f]+ ([0-9a-f]+) \w mcuformer_arena$", out, re.M)
    assert m, out
    return int(m.group(1), 16)


@needs_arm
def test_random_conv_archs_bit_exact_on_cortex_m7_with_the_planned_arena(tmp_path):
    guard = 64  # the verification builds' MCUFORMER_GUARD_BYTES
    for i in range(2):
        folder, arch, flags, info = _export(tmp_path, 100 + i)
        r = verify(folder, "cortex-m7", images=2, seed=i)
        assert r.bit_exact and r.guard_damage == 0, (arch.short(), flags.label(), r.mismatched_images)
        elf = folder / "build/cortex-m7/verify.elf"
        assert arena_symbol_bytes(elf) == -(-(info["arena_bytes"] + 2 * guard) // 4) * 4
        if i == 0:
            p = verify(folder, "cortex-m7", images=2, seed=i, portable=True)
            assert p.bit_exact and p.predictions == r.predictions


def test_cli_reports_a_conv_arch_and_rejects_a_malformed_one_in_one_line(tmp_path):
    from conftest import assert_one_line_error, run_cli

    good = conv_arch(img_size=32, embed_dim=32, stem_width=32).save(tmp_path / "good.yaml")
    out = run_cli("memory", "--arch", good, check=True).stdout
    assert "row_by_row alone" in out and "c32P-EP" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("stem_pool: [true, true]", "stem_pool: [true]"))
    assert_one_line_error(run_cli("memory", "--arch", bad), "one entry per stem layer")
    bad.write_text(good.read_text().replace("stem: conv", "stem: resnet"))
    assert_one_line_error(run_cli("memory", "--arch", bad), "stem must be one of")


# ---------------------------------------------------------------- finer token grids from a trained supernet

ZOO_SUPERNET = ROOT / "models/cifar10-zoo/supernet.pt"


def _zoo_with_pools(pools) -> SearchSpace:
    return SearchSpace.from_dict({**SearchSpace.load(CONFIGS / "cifar10-zoo.yaml").to_dict(), "stem_pool": pools})


def test_token_grids_keep_the_trained_subnets_and_resize_position_embeddings(tmp_path):
    space = _zoo_with_pools([True, False])
    out = with_token_grids(ZOO_SUPERNET, space, tmp_path / "grid.pt")
    old, new = load_checkpoint(ZOO_SUPERNET), load_checkpoint(out)
    assert new["regridded_from"]["grids"] == [8] and new["regridded_from"]["new_grids"] == [16, 32]
    for k, v in old["model"].items():
        assert torch.equal(new["model"][k], v), k  # nothing trained is touched
    before, after = SuperViT(SearchSpace.load(CONFIGS / "cifar10-zoo.yaml")), SuperViT(space)
    load_weights(before, old, "old")
    load_weights(after, new, "new")
    x = torch.randn(2, 3, 32, 32)
    arch = dataclasses.replace(space.largest(10), stem_pool=(True, True))  # the trained 8x8 grid
    before.set_active_subnet(arch)
    after.set_active_subnet(arch)
    with torch.no_grad():
        assert torch.equal(before.eval()(x), after.eval()(x))
    fine = dataclasses.replace(arch, stem_pool=(True, False))
    after.set_active_subnet(fine)
    with torch.no_grad():
        assert after(x).shape == (2, 10) and torch.allclose(after(x), after.get_active_subnet().eval()(x), atol=1e-5)
        # quantize and evaluate read such a subnet from the supernet itself, moved in memory
        assert torch.equal(load_subnet(ZOO_SUPERNET, fine)[0](x), after.get_active_subnet().eval()(x))
    # a position embedding constant over the grid stays that constant on the finer grids
    old["model"]["pos_embeds.conv8"] = torch.arange(192.).reshape(1, 1, 192).expand(1, 64, 192).half().clone()
    save_checkpoint(tmp_path / "flat.pt", old)
    flat = load_checkpoint(with_token_grids(tmp_path / "flat.pt", space, tmp_path / "flat-grid.pt"))["model"]
    for g in (16, 32):
        assert torch.equal(flat[f"pos_embeds.conv{g}"], torch.arange(192.).expand(1, g * g, 192).half()), g


@pytest.mark.parametrize("change, match", [
    ({"embed_dim": [64, 96]}, "another search space: embed_dim"),
    ({"stem_pool": [False]}, "drops the trained"),
    ({"stem": None}, "only a conv-stem supernet"),  # the patch stem: the stem keys left out
])
def test_token_grids_refuse_other_spaces(tmp_path, change, match):
    base = SearchSpace.load(CONFIGS / "cifar10-zoo.yaml").to_dict()
    if change == {"stem": None}:
        base = {k: v for k, v in base.items() if not k.startswith("stem")}
        change = {}
    space = SearchSpace.from_dict({**base, **change})
    with pytest.raises(CheckpointError, match=match):
        with_token_grids(ZOO_SUPERNET, space, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
