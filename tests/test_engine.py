"""The C engine against the NumPy integer reference, bit for bit: random archs under every kernel
schedule on the host (ASan + UBSan), on the emulated Cortex-M7 (DSP and portable paths), the trained
CIFAR-10 subnet on real test images, and a model over the board's SRAM failing to link."""

import random
import shutil
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcuformer.codegen.export import export_model
from mcuformer.memory import TECHNIQUES, Techniques, check_arch, get_board
from mcuformer.memory.boards import Board
from mcuformer.quantize.synthetic import random_quant_model
from mcuformer.space import Arch
from mcuformer.verify import VerifyError, verify

from conftest import ROOT, assert_one_line_error, run_cli

HAVE_ARM = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed "
                                                    "(scripts/setup.sh installs them)")
NUM_RANDOM_ARCHS = 52


def random_arch(rng: random.Random) -> Arch:
    """A tiny arch of any shape the engine must handle: padded grids, 1 or 3 channels, cls token or
    not, mean or cls pooling, dense or low rank, odd widths."""
    while True:
        img = rng.choice([8, 9, 12, 16])
        cls = rng.random() < 0.5
        depth = rng.randint(1, 3)
        arch = Arch(img_size=img, patch_size=rng.choice([2, 3, 4, 5]), rank_ratio=rng.choice([0.25, 0.5, 0.75, 1.0]),
                    embed_dim=rng.choice([8, 12, 16, 20, 24, 30]), depth=depth,
                    num_heads=tuple(rng.randint(1, 3) for _ in range(depth)),
                    mlp_ratio=tuple(rng.choice([1.0, 1.5, 2.0, 2.5]) for _ in range(depth)),
                    num_classes=rng.randint(2, 12), head_dim=rng.choice([4, 6, 8]), in_chans=rng.choice([1, 3]),
                    cls_token=cls, pool=rng.choice(["cls", "gap"]) if cls else "gap")
        try:
            check_arch(arch)
        except Exception:
            continue
        if arch.num_tokens <= 40:
            return arch


def random_techniques(rng: random.Random) -> Techniques:
    return Techniques(**{t: rng.random() < 0.6 for t in TECHNIQUES})


def _export(tmp: Path, i: int, board="stm32f746"):
    """Even i: the smallest-arena schedule (every technique used as permitted); odd i: the fastest
    schedule that fits the board (mostly layer-wise on a 320 KB board)."""
    rng = random.Random(1000 + i)
    arch, flags = random_arch(rng), random_techniques(rng)
    q = random_quant_model(arch, seed=i)
    folder = tmp / f"m{i}"
    export_model(q, folder, board, flags, schedule="fastest" if i % 2 else "smallest")
    return folder, arch, flags


def test_random_archs_bit_exact_on_the_host_under_sanitizers(tmp_path, cached_host_cc):
    """>= 50 random archs and technique sets: gcc -O2, then ASan+UBSan; logits equal the reference."""
    def one(i):
        folder, arch, flags = _export(tmp_path, i)
        r = verify(folder, "host", images=2, seed=i, sanitize=True)
        return i, arch, flags, r

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(NUM_RANDOM_ARCHS)))
    bad = [(i, a.short(), f.label(), r.mismatched_images, r.guard_damage) for i, a, f, r in results
           if not (r.bit_exact and r.hflip_bit_exact and r.sanitizers and r.guard_damage == 0)]
    assert not bad, bad
    assert len(list(cached_host_cc.glob("mcu_linear-*.o"))) == 2  # the kernels were compiled once a build kind
    kernels = set()
    for i, arch, flags, _ in results:
        kernels |= {line.split("mcu_")[1].split("(")[0] for line in (tmp_path / f"m{i}/mcuformer_model.c").read_text()
                    .splitlines() if line.strip().startswith("mcu_") and "(" in line}
    # every kernel of the op list was exercised by some arch
    assert kernels >= {"patch_embed", "pos_add", "layernorm", "linear", "linear_qkv_heads", "matmul_qk", "softmax",
                       "matmul_av", "add", "gelu", "ln_kv", "attention", "attention_proj_residual",
                       "proj_residual", "mlp_residual", "ln_fc1_gelu", "fc2_residual", "mean_pool", "take_cls",
                       "ln_pool"}, kernels


def _export_rel_pos(tmp: Path, i: int):
    """A random arch with 2-D relative position (clip 1, 2, 3 or the official 14) and random techniques;
    even i the smallest-arena schedule (fused attention rows), odd i the fastest (layer-wise)."""
    rng = random.Random(7000 + i)
    arch = replace(random_arch(rng), rel_pos=rng.choice([1, 2, 3, 14]))
    flags = random_techniques(rng)
    folder = tmp / f"r{i}"
    export_model(random_quant_model(arch, seed=i), folder, "stm32f746", flags,
                 schedule="fastest" if i % 2 else "smallest")
    return folder, arch


def _kernels(folder: Path) -> set[str]:
    return {line.split("mcu_")[1].split("(")[0] for line in (folder / "mcuformer_model.c").read_text().splitlines()
            if line.strip().startswith("mcu_") and "(" in line}


def test_rel_pos_archs_bit_exact_on_the_host_under_sanitizers(tmp_path, cached_host_cc):
    """Relative position in the C engine: a handful of random archs (benchmarks/relpos_engine.py runs
    30), fused and layer-wise attention, ASan + UBSan; a corrupted value table is caught."""
    def one(i):
        folder, arch = _export_rel_pos(tmp_path, i)
        return folder, arch, verify(folder, "host", images=2, seed=i, sanitize=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(6)))
    bad = [(a.short(), r.mismatched_images) for _, a, r in results
           if not (r.bit_exact and r.sanitizers and r.guard_damage == 0)]
    assert not bad, bad
    kernels = set().union(*(_kernels(f) for f, _, _ in results))
    assert {"matmul_qk", "matmul_av", "attention"} <= kernels and kernels & {"attention_proj_residual"}, kernels
    folder = results[0][0]
    src = folder / "mcuformer_weights.c"
    text = src.read_text()
    start = text.index("{", text.index("blocks_0_attn_rel_pos_value[")) + 1
    end = text.index("}", start)
    src.write_text(text[:start] + ", ".join("0" for _ in text[start:end].split(",")) + text[end:])
    assert not verify(folder, "host", images=2, sanitize=False).bit_exact


@needs_arm
def test_rel_pos_archs_bit_exact_on_cortex_m7(tmp_path):
    """5 random relative-position archs in QEMU (DSP path); one also with the portable kernels."""
    for i in range(5):
        folder, arch = _export_rel_pos(tmp_path, 100 + i)
        r = verify(folder, "cortex-m7", images=2, seed=i)
        assert r.bit_exact and r.guard_damage == 0, (arch.short(), r.mismatched_images)
        if i == 0:
            p = verify(folder, "cortex-m7", images=2, seed=i, portable=True)
            assert p.bit_exact and p.predictions == r.predictions


def test_a_corrupted_weight_is_caught(tmp_path):
    folder, _, _ = _export(tmp_path, 0)
    src = folder / "mcuformer_weights.c"
    text = src.read_text()
    marker = "patch_embed_proj_weight"
    start = text.index("{", text.index(marker + "[")) + 1
    first = text[start:text.index(",", start)].strip()
    src.write_text(text[:start] + f" {(int(first) + 50) % 127}" + text[text.index(",", start):])
    r = verify(folder, "host", images=2, sanitize=False)
    assert not r.bit_exact and r.mismatched_images


def test_a_flip_entry_point_that_does_not_mirror_or_takes_the_input_buffer_is_caught(tmp_path):
    """mcuformer_invoke_hflip with its mirroring taken out (the image read as it is) gives other sums than
    the reference's, and without its guard it runs on the arena's own input buffer: verify fails on each
    although every plain inference is bit-exact."""
    folder, _, _ = _export(tmp_path, 3)
    src = folder / "mcuformer_model.c"
    text = src.read_text()
    mirrored = "(MCUFORMER_IMAGE_SIZE - 1 - x) * MCUFORMER_IMAGE_CHANNELS"
    guard = "if (!image || image == A(MCUFORMER_INPUT_OFFSET)) return -1;"
    assert text.count(mirrored) == 1 and text.count(guard) == 1
    src.write_text(text.replace(mirrored, "x * MCUFORMER_IMAGE_CHANNELS"))
    r = verify(folder, "host", images=2, sanitize=False)
    assert r.hflip_bit_exact is False and r.hflip_refuses_overlap and not r.bit_exact and not r.mismatched_images
    assert "logit sums DIFFER" in r.format()
    src.write_text(text.replace(guard, "if (!image) return -1;"))
    r = verify(folder, "host", images=2, sanitize=False)
    assert r.hflip_bit_exact and r.hflip_refuses_overlap is False and not r.bit_exact
    assert "did NOT refuse" in r.format()


@needs_arm
def test_random_archs_bit_exact_on_cortex_m7(tmp_path):
    """5 random archs in QEMU (DSP path); one also with the portable kernels: same logits."""
    for i in range(5):
        folder, arch, _ = _export(tmp_path, 100 + i)
        r = verify(folder, "cortex-m7", images=2, seed=i)
        assert r.bit_exact and r.guard_damage == 0, (arch.short(), r.mismatched_images)
        assert r.static_ram_bytes >= r.arena_bytes and 0 < r.stack_bytes < 8192
        assert r.instructions and min(r.instructions) > r.macs  # at least one instruction per MAC
        # the flip entry point: its sums bit-exact, at the cost of two inferences and the mirroring
        assert r.hflip_bit_exact
        assert 1.9 * min(r.instructions) < r.hflip_instructions < 2.1 * max(r.instructions) + 64 * arch.img_size ** 2
        if i == 0:
            p = verify(folder, "cortex-m7", images=2, seed=i, portable=True)
            assert p.bit_exact and p.predictions == r.predictions


@needs_arm
def test_trained_cifar10_subnet_on_host_and_cortex_m7(tmp_path, cifar_archive):
    """The trained tiny supernet's largest subnet: quantised on real images, exported for the
    STM32F746, logits equal on real test images, memory as planned."""
    from mcuformer.api import quantize_checkpoint

    qdir, folder = tmp_path / "q", tmp_path / "c"
    quantize_checkpoint(ROOT / "models/cifar10-tiny/supernet.pt", "largest", qdir, data_path=cifar_archive,
                        num_images=32)
    info = export_model(qdir, folder, "stm32f746")
    host = verify(folder, "host", images=4, data_path=cifar_archive)
    assert host.bit_exact and host.image_source.startswith("test images") and host.labels is not None
    m7 = verify(folder, "cortex-m7", images=4, data_path=cifar_archive)
    assert m7.bit_exact and m7.guard_damage == 0 and m7.predictions == host.predictions
    # measured RAM = planned arena + runtime statics (guards included) + measured stack, inside the board
    assert m7.static_ram_bytes - info["arena_bytes"] == m7.runtime_static_bytes
    assert m7.runtime_static_bytes + m7.stack_bytes <= get_board("stm32f746").reserve_bytes
    assert m7.ram_bytes <= 320 * 1024


def test_a_shipped_model_exported_elsewhere_verifies_on_its_test_images(tmp_path, cifar_archive, monkeypatch):
    """models/ names a model's supernet relative to the model's folder: the export's copy names the same file
    relative to itself, so verify finds the real test images instead of falling back to random ones."""
    import json
    import os

    from mcuformer.quantize import QuantModel
    shipped = ROOT / "models/cifar10-tiny/int8-stm32f746"
    assert not os.path.isabs(QuantModel.load(shipped).info["checkpoint"])
    export_model(shipped, tmp_path / "c", "stm32f746")
    copied = json.loads((tmp_path / "c/quantized/manifest.json").read_text())["info"]["checkpoint"]
    assert not os.path.isabs(copied)
    assert (tmp_path / "c/quantized" / copied).resolve() == (ROOT / "models/cifar10-tiny/supernet.pt").resolve()
    deep = tmp_path / "a/b/c/d/e/f/g/h"  # a working directory where the copy's name means nothing
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    host = verify(tmp_path / "c", "host", images=2, sanitize=False)
    assert host.bit_exact and host.image_source == "test images of supernet.pt's data" and host.labels is not None


@needs_arm
def test_a_model_over_the_boards_sram_fails_to_link(tmp_path):
    arch = Arch(img_size=16, patch_size=2, rank_ratio=1.0, embed_dim=32, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                num_classes=4, head_dim=8)
    tiny = Board("tiny", "a 4 KB board", sram_bytes=4 * 1024, flash_bytes=1024 * 1024, reserve_bytes=1024)
    folder = tmp_path / "m"
    info = export_model(random_quant_model(arch), folder, tiny)
    assert info["arena_bytes"] > tiny.arena_budget_bytes and not info["fits"]
    with pytest.raises(VerifyError, match="RAM region overflowed"):
        verify(folder, "cortex-m7", images=1)
    proc = run_cli("verify", folder, "--target", "cortex-m7", "--images", "1")
    assert_one_line_error(proc, "does not fit the board", "RAM")


def test_constants_fill_the_internal_flash_before_the_external_one():
    from mcuformer.codegen.export import place_constants
    # 10 B takes 12 (4-byte aligned), 6 B would take 8 of the 4 left, 3 B takes the last 4
    assert place_constants({"a": 10, "b": 6, "c": 3}, 16) == {"b"}
    assert place_constants({"a": 10, "b": 6}, 20) == frozenset()
    assert place_constants({"a": 10, "b": 6}, -5) == {"a", "b"}


@needs_arm
def test_a_model_past_the_internal_flash_splits_its_constants_and_runs_on_cortex_m7(tmp_path):
    """About 150 KB of constants for a board with 128 KB of internal flash and QSPI: the ones that fit
    beside the code stay internal, the rest go to .extflash, and the logits stay bit-exact."""
    arch = Arch(img_size=16, patch_size=4, rank_ratio=1.0, embed_dim=96, depth=2, num_heads=(3, 3),
                mlp_ratio=(2.0, 2.0), num_classes=10, head_dim=32)
    board = get_board("stm32f746").with_overrides(flash_kb=128)
    folder = tmp_path / "m"
    info = export_model(random_quant_model(arch), folder, board)
    assert info["flash_location"] == "external"
    assert 0 < info["external_constants_bytes"] < info["constants_bytes"]
    r = verify(folder, "cortex-m7", images=2)
    assert r.bit_exact and r.guard_damage == 0
    assert info["external_constants_bytes"] <= r.external_flash_bytes < info["external_constants_bytes"] + 4 * 400
    internal_constants = info["constants_bytes"] - info["external_constants_bytes"]
    assert r.flash_bytes > internal_constants and r.flash_bytes <= board.flash_bytes
    assert r.model_flash_bytes >= info["constants_bytes"]


def test_cli_export_and_verify(tmp_path):
    arch = Arch(img_size=8, patch_size=4, rank_ratio=0.5, embed_dim=16, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                num_classes=3, head_dim=8)
    qdir = tmp_path / "q"
    random_quant_model(arch).save(qdir)
    out = run_cli("export", "--quantized", qdir, "--output", tmp_path / "c", check=True)
    assert "kernel calls" in out.stdout
    proc = run_cli("verify", tmp_path / "c", "--images", "2", "--json", tmp_path / "r.json", check=True)
    assert "bit-exact" in proc.stdout and (tmp_path / "r.json").exists()
    assert_one_line_error(run_cli("export", "--quantized", tmp_path / "nope", "--output", tmp_path / "d"),
                          "not a quantised model")
    assert_one_line_error(run_cli("verify", tmp_path / "q"), "not an exported engine")
    assert_one_line_error(run_cli("export", "--quantized", qdir, "--output", tmp_path / "e", "--board", "esp32"),
                          "unknown board")


@needs_arm
def test_a_stack_used_to_its_bottom_fails_verify(tmp_path):
    """Painting cannot measure past the stack's last word: a high-water mark at the whole stack means the
    real use is unknown, so verify fails instead of reporting the stack's size as the model's need."""
    arch = Arch(img_size=8, patch_size=4, rank_ratio=0.5, embed_dim=16, depth=1, num_heads=(2,), mlp_ratio=(2.0,),
                num_classes=3, head_dim=8)
    q = random_quant_model(arch)
    export_model(q, tmp_path / "ok", "stm32f746")
    ok = verify(tmp_path / "ok", "cortex-m7", images=1)
    assert ok.stack_size_bytes == 8192 and 0 < ok.stack_bytes < 8192 and not ok.stack_overflowed
    export_model(q, tmp_path / "small", "stm32f746", stack_bytes=256)
    small = verify(tmp_path / "small", "cortex-m7", images=1)
    assert small.stack_size_bytes == small.stack_bytes == 256 and small.stack_overflowed
    proc = run_cli("verify", tmp_path / "small", "--target", "cortex-m7", "--images", "1")
    assert proc.returncode == 1 and "STACK FULL" in proc.stdout and "verify: FAILED" in proc.stdout
