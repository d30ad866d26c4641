"""The quantised model: the token-by-token reference over the memory model's op lists equals the
vectorised integer path bit for bit, its arrays are exactly the memory model's flash parameters,
and it tracks the float model."""

import math

import numpy as np
import pytest
import torch

from mcuformer.memory import Techniques, build_ops, unique_params
from mcuformer.memory.schedule import section_ops, sections
from mcuformer.quantize import fakequant
from mcuformer.quantize.calibrate import calibrate
from mcuformer.quantize.model import QuantModel, build_quant_model
from mcuformer.quantize.reference import Reference, reference_logits
from mcuformer.quantize.synthetic import random_float_model
from mcuformer.quantize.torchpath import TorchInt8
from mcuformer.space import Arch

from conftest import ROOT

ARCHS = {
    # cls token + cls pooling, padded 5x5 patches on 12 px, low rank everywhere, 3 heads
    "cls-lowrank-pad": Arch(img_size=12, patch_size=5, rank_ratio=0.5, embed_dim=24, depth=2, num_heads=(3, 2),
                            mlp_ratio=(2.0, 1.5), num_classes=7, head_dim=8, cls_token=True, pool="cls"),
    # cls token with mean pooling over the patch tokens, dense
    "cls-gap-dense": Arch(img_size=16, patch_size=4, rank_ratio=1.0, embed_dim=16, depth=1, num_heads=(2,),
                          mlp_ratio=(2.0,), num_classes=5, head_dim=8, cls_token=True, pool="gap"),
    # 2-D relative position (clip 2 on a 4x4 grid: distances clipped), cls token, low rank, 3 heads
    "relpos-cls-lowrank": Arch(img_size=12, patch_size=3, rank_ratio=0.5, embed_dim=24, depth=2, num_heads=(3, 2),
                               mlp_ratio=(2.0, 1.5), num_classes=7, head_dim=8, cls_token=True, pool="cls",
                               rel_pos=2),
    # relative position without a cls token (every row a patch), mean pooling, dense
    "relpos-gap-dense": Arch(img_size=16, patch_size=4, rank_ratio=1.0, embed_dim=16, depth=1, num_heads=(2,),
                             mlp_ratio=(2.0,), num_classes=5, head_dim=8, cls_token=False, pool="gap", rel_pos=1),
}
FLAG_SETS = [Techniques.none(), Techniques.all()] + [Techniques.only(*n) for n in [
    ("operator_integration",), ("operator_integration", "token_overwriting"), ("token_overwriting",),
    ("head_by_head",), ("operator_integration", "head_by_head"), ("token_overwriting", "head_by_head")]]


def forced_ops(arch: Arch, flags: Techniques):
    """The op list with every section using exactly ``flags`` (every fused and layer-wise kernel)."""
    ops, x = [], None
    for kind, prefix, dims in sections(arch):
        part = section_ops(kind, dims, flags, prefix, x)
        ops += part
        x = part[-1].outputs[0]
    return ops


def quantised(arch: Arch, seed: int = 0):
    model = random_float_model(arch, seed)
    images = torch.randn(24, arch.in_chans, arch.img_size, arch.img_size, generator=torch.Generator().manual_seed(1))
    return model, build_quant_model(model, calibrate(model, [images[:12], images[12:]])), images


@pytest.fixture(scope="module", params=sorted(ARCHS))
def case(request):
    return quantised(ARCHS[request.param])


def test_reference_equals_vectorised_for_every_kernel_schedule(case):
    model, q, images = case
    img = q.quantize_image(images[:3])
    fast = fakequant.forward(q, img)
    kernels = set()
    for flags in FLAG_SETS:
        ref = Reference(q, ops=forced_ops(q.arch, flags))
        kernels |= {op.kernel for op in ref.ops}
        assert np.array_equal(np.stack([ref.run(im) for im in img]), fast), flags
    assert np.array_equal(reference_logits(q, img), fast)  # the schedule build_ops picks
    assert {"patch_embed", "patch_embed_pos", "pos_add", "layernorm", "linear", "matmul_qk", "softmax", "matmul_av",
            "add", "gelu", "ln_kv", "attention", "attention_proj_residual", "proj_residual", "mlp_residual",
            "ln_fc1_gelu", "fc2_residual", "ln_pool"} <= kernels


def test_params_are_exactly_the_memory_models_flash_arrays(case):
    _, q, _ = case
    expected = unique_params(build_ops(q.arch))
    assert set(q.params) == set(expected)
    for name, p in expected.items():
        assert q.params[name].shape == p.shape and q.params[name].dtype == np.dtype(p.dtype), name


def test_int8_logits_track_the_float_model(case):
    model, q, images = case
    with torch.no_grad():
        f = model(images).numpy().ravel()
    s, z = q.act["logits"]
    d = (fakequant.forward(q, q.quantize_image(images)).astype(np.float64) - z).ravel() * s
    # random weights and 24 random images: rounding noise alone moves the weakest case (cls-lowrank-pad)
    # between 0.970 and 0.979 as its ranges are snapped to 8, 10 or 12 bits or not at all
    assert f @ d / (np.linalg.norm(f) * np.linalg.norm(d)) > 0.965


def test_save_load_round_trip(case, tmp_path):
    _, q, images = case
    q.save(tmp_path / "q")
    back = QuantModel.load(tmp_path / "q")
    assert back.arch == q.arch and back.act == q.act and back.consts == q.consts
    assert all(np.array_equal(back.params[k], v) and back.params[k].dtype == v.dtype for k, v in q.params.items())
    img = q.quantize_image(images[:4])
    assert np.array_equal(fakequant.forward(back, img), fakequant.forward(q, img))


def test_snap_outward_keeps_eight_significant_bits_and_only_widens():
    from mcuformer.quantize.calibrate import snap_outward
    for x in [1.0, 1.0000001, -0.17, 3.14159, 255.0, -2.5e-7, 6.1e4, 0.0]:
        s = snap_outward(x)
        assert s == snap_outward(s)                                   # on the grid already
        assert abs(s) >= abs(x) and (s < 0) == (x < 0)               # outward, sign kept
        assert abs(s) <= abs(x) * (1 + 2.0 ** -7)                    # at most 2**(1-bits) wider
        if x:
            _, e = math.frexp(abs(s))
            assert math.ldexp(abs(s), 8 - e).is_integer()            # 8 significant bits
    assert snap_outward(1.0000001) == 1.0078125 and snap_outward(-0.17) == -0.1708984375


def test_last_bit_differences_in_the_activations_give_the_same_int8_model(case):
    """Inputs scaled by 1 + 1e-6 move (nearly) every float range in its last bits, as another CPU's summation
    order does; the snapped ranges, and so every integer of the quantised model, stay the same."""
    model, q, images = case
    again = build_quant_model(model, calibrate(model, [images[:12] * (1 + 1e-6), images[12:] * (1 + 1e-6)]))
    assert again.act == q.act and again.consts == q.consts
    assert all(np.array_equal(again.params[k], v) for k, v in q.params.items())


def test_symmetric_tensors_and_fixed_probability_scale(case):
    _, q, _ = case
    assert q.act["image"][1] == 0
    for name, (scale, zero) in q.act.items():
        if name.endswith((".attn.q", ".attn.k", ".attn.v")):
            assert zero == 0
        if name.endswith(".attn.probs"):
            assert (scale, zero) == (1 / 256, -128)
    assert all(q.params[k].min() >= -127 for k in q.params if k.endswith(".weight") and q.params[k].dtype == np.int8)


def test_torch_path_equals_the_numpy_path(case):
    _, q, images = case
    img = q.quantize_image(images)
    assert np.array_equal(TorchInt8(q).forward(img).numpy(), fakequant.forward(q, img))


def test_tiny_checkpoint_subnets_all_paths_agree():
    """Subnets of the trained tiny supernet (random calibration): NumPy reference, NumPy and torch paths."""
    from mcuformer.quantize.workflow import load_subnet
    for spec in ("largest", "smallest"):
        model, _ = load_subnet(ROOT / "models/cifar10-tiny/supernet.pt", spec)
        images = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        q = build_quant_model(model, calibrate(model, [images]))
        img = q.quantize_image(images[:2])
        fast = fakequant.forward(q, img)
        assert np.array_equal(reference_logits(q, img), fast)
        assert np.array_equal(TorchInt8(q).forward(img).numpy(), fast)


def test_validate_accepts_rel_pos_tables_and_refuses_a_wrong_one():
    from mcuformer.errors import CheckpointError
    from mcuformer.quantize.validate import validate_quant_model

    _, q, _ = quantised(ARCHS["relpos-gap-dense"])
    validate_quant_model(QuantModel(q.arch, dict(q.params), dict(q.act), dict(q.consts)))
    for name, bad in [("blocks.0.attn.rel_pos.key", None), ("blocks.0.attn.rel_pos.value", np.zeros((9, 8), np.int8)),
                      ("blocks.0.attn.rel_pos.key", q.params["blocks.0.attn.rel_pos.key"].astype(np.int16))]:
        params = dict(q.params)
        if bad is None:
            del params[name]
        else:
            params[name] = bad
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            validate_quant_model(QuantModel(q.arch, params, dict(q.act), dict(q.consts)))


def test_torch_path_equals_the_numpy_path_on_random_archs():
    """int8 top-1 is measured by the torch path on every device: it must give the reference's integers for
    every kind of arch (patch and conv stems, relative position, class token, odd widths)."""
    import random
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_bitexact import random_arch
    from mcuformer.quantize.synthetic import random_conv_arch, random_quant_model
    rng = random.Random(7)
    archs = [random_arch(rng, rel_pos_choices=(0, 2, 3)) for _ in range(4)] + [random_conv_arch(rng) for _ in range(2)]
    assert any(a.rel_pos for a in archs) and any(a.stem == "conv" for a in archs)
    for i, arch in enumerate(archs):
        q = random_quant_model(arch, seed=i)
        img = q.quantize_image(torch.rand(3, arch.in_chans, arch.img_size, arch.img_size))
        assert np.array_equal(TorchInt8(q).forward(img).numpy(), fakequant.forward(q, img)), arch.short()


def test_float32_matmuls_are_used_only_where_exact():
    """The torch path multiplies in float32 only when every partial sum is an integer of at most 2^24; past
    that it falls back to float64. Here an odd sum between 2^24 and 2^25, which no float32 can hold (their
    spacing there is 2), whatever order a BLAS adds in (an even one came out exact on one CPU)."""
    from mcuformer.quantize.torchpath import _fits_float32, _mm_any
    k = 2048
    a = torch.full((1, k), 127, dtype=torch.int64)
    a[0, -1] = 2
    b = a.T.clone()
    b[-1, 0] = 1
    exact = int((a.double() @ b.double()).item())
    assert exact == 2047 * 127 * 127 + 2 and exact % 2 == 1 and 1 << 24 < exact < 1 << 25
    assert int((a.float() @ b.float()).item()) != exact  # what float32 alone would give
    assert not _fits_float32(a.float(), 127.0, k)
    assert int(_mm_any(a, b, True).item()) == exact
    # the bound: partial sums below 2^24 fit, 2^24 does not
    row = torch.tensor([[-128.0]])
    assert _fits_float32(row, 128.0, 1023) and not _fits_float32(row, 128.0, 1024)


def test_torch_path_uses_float32_by_default_and_not_under_reduced_precision():
    """The default (float32 where exact), the all-float64 path and the NumPy oracle give the same integers,
    on a patch-stem and a conv-stem arch; under ``set_float32_matmul_precision("medium")`` (bfloat16 in
    oneDNN) the path keeps to float64."""
    import random
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from engine_bitexact import random_arch
    from mcuformer.quantize.synthetic import random_conv_arch, random_quant_model
    rng = random.Random(11)
    for i, arch in enumerate([random_arch(rng), random_conv_arch(rng)]):
        q = random_quant_model(arch, seed=i)
        img = q.quantize_image(torch.rand(4, arch.in_chans, arch.img_size, arch.img_size))
        want = fakequant.forward(q, img)
        runner = TorchInt8(q)
        assert np.array_equal(runner.forward(img).numpy(), want) and runner.float32
        assert np.array_equal(TorchInt8(q, float32=False).forward(img).numpy(), want)
        before = torch.get_float32_matmul_precision()
        try:
            torch.set_float32_matmul_precision("medium")
            assert np.array_equal(runner.forward(img).numpy(), want) and not runner.float32
        finally:
            torch.set_float32_matmul_precision(before)
