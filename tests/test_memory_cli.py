"""Boards, the report's fit/binding logic, and ``mcuformer memory`` end to end (including bad input:
one line on stderr, no traceback, a non-zero exit)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mcuformer.errors import ConfigError, SpaceError
from mcuformer.memory import BOARDS, Techniques, build_ops, estimate, get_board, memory_report
from mcuformer.space import SearchSpace

ROOT = Path(__file__).resolve().parents[1]

KB = 1024
CIFAR = SearchSpace.load(ROOT / "configs/cifar10.yaml")
T20 = SearchSpace.load(ROOT / "configs/mcu-T.yaml").with_factors(0.9, 20).largest()


def test_board_profiles():
    assert get_board("stm32f746").arena_budget_bytes == 320 * KB - 16 * KB
    assert get_board("STM32F746").external_flash_bytes == 16 * 1024 * KB
    assert get_board("stm32f427").arena_budget_bytes == 192 * KB  # the largest contiguous SRAM region
    assert get_board("stm32h743").arena_budget_bytes == 512 * KB - 16 * KB
    assert (get_board("stm32h743").flash_bytes, get_board("stm32f427").flash_bytes) == (2048 * KB, 1024 * KB)
    custom = get_board("stm32f427").with_overrides(sram_kb=256, flash_kb=512, reserve_kb=8)
    assert (custom.arena_budget_bytes, custom.flash_bytes) == (248 * KB, 512 * KB)


@pytest.mark.parametrize("kw", [dict(sram_kb=0), dict(sram_kb=-1), dict(flash_kb=0), dict(flash_kb=-3),
                                dict(reserve_kb=320), dict(external_flash_kb=-1)])
def test_bad_budgets(kw):
    with pytest.raises(ConfigError):
        get_board("stm32f746").with_overrides(**kw)


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(ConfigError, match="stm32f427, stm32f746, stm32h743"):
        get_board("esp32")


@pytest.mark.parametrize("overrides,named", [
    (dict(embed_dim=100000), "embed_dim"), (dict(img_size=100000), "img_size"), (dict(num_classes=10**7), "num_classes"),
    # one 128 x 128 patch of 16 channels: a dot product over 262,144 int8 pairs could overflow int32
    (dict(img_size=128, patch_size=128, in_chans=16), "patch_inputs")])
def test_arch_outside_any_sensible_range(overrides, named):
    arch = replace(CIFAR.smallest(), **overrides)
    with pytest.raises(SpaceError, match=named):
        build_ops(arch)
    with pytest.raises(SpaceError):
        estimate(arch)


def test_report_figures_agree():
    rep = memory_report(T20, "stm32f746")
    assert rep.peak_sram_bytes == rep.lower_bound_bytes == estimate(T20).peak_sram_bytes
    assert rep.layerwise_baseline_bytes > rep.ablation["none"] >= rep.peak_sram_bytes
    assert rep.ablation["all"] == rep.peak_sram_bytes
    assert rep.peak_op.name == "stem.patch_embed"  # with every technique the input image is the peak
    assert rep.official_formula_bytes == 324562
    d = rep.to_dict()
    for key in ("peak_sram_bytes", "lower_bound_bytes", "layerwise_baseline_bytes", "flash_bytes", "fits",
                "binding", "peak_op", "ablation", "official_formula_bytes", "profile"):
        assert key in d
    json.dumps(d)
    assert max(row["live_bytes"] for row in d["profile"]) == rep.peak_sram_bytes
    assert sum(row["flash_bytes"] for row in d["profile"]) + rep.flash["code"] == rep.flash_bytes


def test_fit_and_binding():
    arch = CIFAR.smallest()
    rep = memory_report(arch, "stm32f746")
    assert rep.flash_location == "internal" and rep.fits and rep.binding in ("sram", "flash")
    big_flash = memory_report(T20, "stm32f746")  # ~10.6 MB of weights: external QSPI
    assert big_flash.flash_location == "external" and big_flash.fits
    no_external = memory_report(T20, "stm32f746", allow_external_flash=False)
    assert no_external.flash_location == "none" and not no_external.fits and no_external.binding == "flash"
    tight_sram = memory_report(T20, get_board("stm32f746").with_overrides(sram_kb=128))
    assert not tight_sram.fits_sram and tight_sram.binding == "sram"
    assert not memory_report(T20, "stm32h743").fits  # 2 MB flash, no external flash


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mcuformer", "memory", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_cli_json_and_plot(tmp_path):
    arch_file = tmp_path / "arch.yaml"
    T20.save(arch_file)
    png = tmp_path / "profile.png"
    r = run_cli("--arch", str(arch_file), "--board", "stm32f427", "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["peak_sram_bytes"] == estimate(T20).peak_sram_bytes
    assert d["board"]["arena_budget_bytes"] == 192 * KB and d["fits"] is False and d["binding"] == "flash"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table_with_custom_budgets():
    r = run_cli("--space", "configs/cifar10.yaml", "--which", "smallest", "--sram-kb", "64", "--flash-kb", "512",
                "--techniques", "operator_integration,token_overwriting", "--ops")
    assert r.returncode == 0, r.stderr
    for text in ("peak SRAM (planned arena)", "lower bound", "layer-wise baseline", "official formula", "flash",
                 "binding budget", "operator_integration alone", "head.fc"):
        assert text in r.stdout
    rep = memory_report(CIFAR.smallest(), techniques=Techniques.only("operator_integration", "token_overwriting"))
    assert f"{rep.peak_sram_bytes:,} B" in r.stdout


@pytest.mark.parametrize("args", [
    ("--space", "configs/mcu-T.yaml", "--board", "esp32"),
    ("--space", "configs/mcu-T.yaml", "--sram-kb", "0"),
    ("--space", "configs/mcu-T.yaml", "--sram-kb", "-64"),
    ("--space", "configs/mcu-T.yaml", "--flash-kb", "0"),
    ("--space", "configs/mcu-T.yaml", "--flash-kb", "lots"),
    ("--space", "configs/mcu-T.yaml", "--techniques", "magic"),
    ("--arch", "no/such/arch.yaml"),
    (),
])
def test_cli_bad_input_is_one_line(args):
    r = run_cli(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("mcuformer memory: error:")


@pytest.mark.parametrize("field,value", [("embed_dim", 100000), ("img_size", 0), ("num_heads", [0])])
def test_cli_bad_arch_is_one_line(tmp_path, field, value):
    d = CIFAR.smallest().to_dict()
    d[field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    r = run_cli("--arch", str(path))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr


def test_memory_package_does_not_import_torch():
    code = ("import sys, mcuformer.memory as m; from mcuformer.space import SearchSpace; "
            "m.memory_report(SearchSpace.load('configs/cifar10.yaml').largest()); "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.stdout.split() == ["False", "False"], r.stderr


def test_every_board_is_listed():
    assert sorted(BOARDS) == ["stm32f411re", "stm32f427", "stm32f746", "stm32h743", "stm32l432kc"]
