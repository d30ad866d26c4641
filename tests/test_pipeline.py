"""The whole pipeline on a tiny image folder: train one epoch, search, quantise, export, verify
(host + emulator); rerunning resumes instead of redoing; config errors are one line."""

import json
import shutil

import yaml

from conftest import CONFIGS, assert_one_line_error, make_image_folder, run_cli


def _config(tmp_path, **extra):
    data = make_image_folder(tmp_path / "data", classes=("cat", "dog"), per_class=12, size=32)
    train = yaml.safe_load((CONFIGS / "train-cifar10-cpu.yaml").read_text())
    train.update(epochs=1, batch_size=12, workers=0)
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    space = yaml.safe_load((CONFIGS / "cifar10-tiny.yaml").read_text())
    space["num_classes"] = 2
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    cfg = {"space": "space.yaml", "train_config": "train.yaml", "data_path": str(data), "board": "stm32f427",
           "output": "run", "search": {"population": 4, "generations": 2, "per_class": 3},
           "quantize": {"calibration_images": 8}, "verify": {"images": 2, "emulator": bool(shutil.which("qemu-system-arm"))},
           **extra}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "pipeline.yaml"


def test_pipeline_end_to_end_and_resume(tmp_path):
    cfg = _config(tmp_path)
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["board"] == "stm32f427"
    assert summary["engine"]["host"]["bit_exact"] and summary["engine"]["host"]["sanitizers"]
    if "cortex_m7" in summary["engine"]:
        m7 = summary["engine"]["cortex_m7"]
        assert m7["bit_exact"] and m7["ram_bytes"] <= 192 * 1024 and m7["instructions_per_inference"] > 0
    assert "int8 top-1" in proc.stdout and "bit-exact" in proc.stdout
    # the search's held-out split (3 per class) was kept out of training: no overlap warning
    search = json.loads((tmp_path / "run/search/result.json").read_text())
    assert search["heldout"].endswith("heldout-split.json") and search["heldout_seen_in_training"] == 0
    assert "warning" not in proc.stderr
    for f in ("supernet/curves.png", "search/pareto.png", "memory.png", "engine/mcuformer_model.c",
              "int8/accuracy.json"):
        assert (tmp_path / "run" / f).exists(), f
    # a second run trains and searches nothing again
    stamp = (tmp_path / "run/search/result.json").stat().st_mtime_ns
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert (tmp_path / "run/search/result.json").stat().st_mtime_ns == stamp


def test_pipeline_config_errors(tmp_path):
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, search={"popsize": 3})),
                          "unknown key", "popsize")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, board="esp32")), "unknown board")
