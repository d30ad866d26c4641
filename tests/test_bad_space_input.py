"""Bad values inside a space or arch file (and in the checkpoints and int8 manifests that carry the same
dicts): exit 2 and one stderr line naming the key and the value, never a traceback, a hang, or a value
silently changed into another one."""

import json
from decimal import Decimal

import pytest
import torch
import yaml

from conftest import CONFIGS, OFFICIAL, ROOT, assert_one_line_error, run_in_process

TINY = CONFIGS / "cifar10-tiny.yaml"
MODELS = ROOT / "models" / "cifar10-tiny"
ARCH = MODELS / "int8-stm32f746" / "arch.yaml"


def changed(path, out, **changes):
    """A copy of the YAML file ``path`` at ``out`` with ``changes`` over its top-level keys."""
    out.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **changes}))
    return out


NAN = float("nan")
SPACE_CASES = [
    # cls_token: true/false only
    ("cls-token-text", dict(cls_token="yes please"), ["cls_token", "'yes please'"]),
    ("cls-token-list", dict(cls_token=[1]), ["cls_token", "[1]"]),
    ("cls-token-int", dict(cls_token=7), ["cls_token", "got 7"]),
    ("rel-pos-huge", dict(rel_pos=10**6), ["rel_pos", "0 to img_size", "1000000"]),
    # the supernet's sizes
    ("super-heads-text", dict(super={"num_heads": "x"}), ["supernet num_heads", "'x'"]),
    ("super-embed-text", dict(super={"embed_dim": "x"}), ["supernet embed_dim", "'x'"]),
    ("super-mlp-text", dict(super={"mlp_ratio": "x"}), ["supernet mlp_ratio", "'x'"]),
    ("super-mlp-nan", dict(super={"mlp_ratio": NAN}), ["supernet mlp_ratio", "finite"]),
    ("super-embed-huge", dict(super={"embed_dim": 10**8}), ["supernet embed_dim", "at most 4096"]),
    # the evolution grid: the rules of the space's own rank_ratio / patch_size choices
    ("evolution-number", dict(evolution=5), ["evolution must be a mapping", "got 5"]),
    ("evolution-patch-text", dict(evolution={"patch_size": ["x"]}), ["evolution patch_size", "'x'"]),
    ("evolution-rank-text", dict(evolution={"rank_ratio": ["x"]}), ["evolution rank_ratio", "'x'"]),
    ("evolution-rank-2", dict(evolution={"rank_ratio": [2.0]}), ["evolution rank_ratio", "at most 1", "2.0"]),
    ("evolution-rank-nan", dict(evolution={"rank_ratio": [NAN]}), ["evolution rank_ratio", "finite"]),
    ("evolution-patch-zero", dict(evolution={"patch_size": [0]}), ["evolution patch_size", "positive"]),
    ("evolution-patch-over-image", dict(evolution={"patch_size": [4, 64]}), ["evolution patch sizes", "img_size 32"]),
    # sizes no microcontroller space has (an overflow, a hang, gigabytes later)
    ("depth-1000", dict(depth=[1000]), ["depth choice", "at most 64", "1000"]),
    ("depth-1e8", dict(depth=[10**8]), ["depth choice", "at most 64"]),
    ("head-dim-huge", dict(head_dim=100000), ["head_dim", "at most 512"]),
    ("img-size-huge", dict(img_size=10**8), ["img_size", "at most 1024"]),
    # a choice that would silently become another one
    ("embed-fraction", dict(embed_dim=[32.5]), ["embed_dim choice", "integer", "32.5"]),
    ("embed-bool", dict(embed_dim=[True]), ["embed_dim choice", "integer", "true"]),
    ("mlp-nan", dict(mlp_ratio=[1.5, NAN]), ["mlp_ratio choice", "finite"]),
]


@pytest.mark.parametrize("changes,needles", [c[1:] for c in SPACE_CASES], ids=[c[0] for c in SPACE_CASES])
def test_bad_space_value(tmp_path, changes, needles):
    proc = run_in_process("space", "--space", changed(TINY, tmp_path / "space.yaml", **changes))
    line = assert_one_line_error(proc, *needles)
    assert line.startswith("mcuformer space: error: ") and proc.returncode == 2, line


def test_bad_official_supernet_value(tmp_path):
    bad = tmp_path / "supernet-T.yaml"
    doc = yaml.safe_load(OFFICIAL[0].read_text())
    doc["SUPERNET"]["NUM_HEADS"] = "x"
    bad.write_text(yaml.safe_dump(doc))
    assert_one_line_error(run_in_process("space", "--space", bad, OFFICIAL[1]), "num_heads", "'x'")


@pytest.mark.parametrize("value", ["yes please", [1], 7])
def test_bad_cls_token_in_an_arch_file(tmp_path, value):
    proc = run_in_process("memory", "--arch", changed(ARCH, tmp_path / "arch.yaml", cls_token=value))
    assert_one_line_error(proc, "cls_token", repr(value))


def test_bad_cls_token_in_an_int8_manifest(tmp_path):
    manifest = json.loads((MODELS / "int8-stm32f746" / "manifest.json").read_text())
    manifest["arch"]["cls_token"] = "yes please"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_in_process("memory", "--arch", tmp_path / "manifest.json"), "cls_token", "'yes please'")


def test_bad_cls_token_in_a_checkpoint(tmp_path):
    state = torch.load(MODELS / "supernet.pt", weights_only=True)
    state["space"]["cls_token"] = "yes please"
    torch.save(state, tmp_path / "supernet.pt")
    proc = run_in_process("evaluate", "--checkpoint", tmp_path / "supernet.pt", "--data-path", tmp_path / "none")
    assert_one_line_error(proc, "cls_token", "'yes please'")


def test_a_subnet_count_past_a_floats_range_is_printed(tmp_path):
    # 64 heads x 2000 MLP ratios per layer, 64 layers: about 1e326 subnets, more than a float holds
    space = changed(TINY, tmp_path / "space.yaml", depth=[64], num_heads=list(range(1, 65)),
                    mlp_ratio=[1 + i / 1000 for i in range(2000)])
    proc = run_in_process("space", "--space", space)
    assert proc.returncode == 0, proc.stderr
    [line] = [ln for ln in proc.stdout.splitlines() if "subnets;" in ln]
    count = 128000**64 * 3 * 2 * 2  # x widths x rank ratios x patch sizes
    assert line.split()[0] == f"{Decimal(count):.3g}" and line.split()[0].endswith(f"e+{len(str(count)) - 1}"), line


@pytest.mark.parametrize("changes", [dict(img_size=30), dict(patch_size=[5]), dict(patch_size=[3, 4])])
def test_a_patch_that_does_not_divide_the_image_pads_it(tmp_path, changes):
    """Not an error: like the official PatchembedSuper (the T space's 240 px at patch 28), the image is
    zero-padded to whole patches."""
    assert run_in_process("space", "--space", changed(TINY, tmp_path / "space.yaml", **changes)).returncode == 0
    arch = changed(ARCH, tmp_path / "arch.yaml", patch_size=3)
    assert run_in_process("memory", "--arch", arch).returncode == 0


def test_every_shipped_space_loads():
    from mcuformer.space import Arch, SearchSpace
    for path in sorted(CONFIGS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if path.name.startswith("arch-"):  # a subnet, not a space
            Arch.load(path)
        elif "embed_dim" in doc:
            SearchSpace.load(path)
    SearchSpace.load(OFFICIAL)
