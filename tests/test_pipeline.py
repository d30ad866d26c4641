"""The whole pipeline on a tiny image folder: train one epoch, search, quantise, export, verify
(host + emulator); an unchanged rerun redoes nothing, a changed input reruns the stages that depend on
it and only those; config errors are one line."""

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
    if "emulator" in summary["engine"]:  # the STM32F427 is a Cortex-M4: emulated on mps2-an386
        m4 = summary["engine"]["emulator"]
        assert m4["target"] == "cortex-m4"
        assert m4["bit_exact"] and m4["ram_bytes"] <= 192 * 1024 and m4["instructions_per_inference"] > 0
    assert "int8 top-1" in proc.stdout and "bit-exact" in proc.stdout
    # the search's held-out split (3 per class) was kept out of training: no overlap warning
    search = json.loads((tmp_path / "run/search/result.json").read_text())
    assert search["heldout"].endswith("heldout-split.json") and search["heldout_seen_in_training"] == 0
    assert "warning" not in proc.stderr
    # the calibration defaults reach the quantised model (the config names only the image count)
    calibration = json.loads((tmp_path / "run/int8/manifest.json").read_text())["info"]["calibration"]
    assert calibration == {"images": 8, "seed": 0, "method": "percentile", "percentile": 99.99}
    for f in ("supernet/curves.png", "search/pareto.png", "memory.png", "engine/mcuformer_model.c",
              "int8/accuracy.json"):
        assert (tmp_path / "run" / f).exists(), f
    # a second run redoes nothing: every output keeps its time, no stage says it reruns
    stamps = _stamps(tmp_path / "run")
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert _stamps(tmp_path / "run") == stamps
    assert _ran(tmp_path) == [] and "rerun" not in proc.stdout
    # an engine that another version of the code generator wrote: export and verify rerun, nothing before them
    ledger = json.loads((tmp_path / "run/stages.json").read_text())
    from mcuformer.stages import code_digest, digest_settings
    assert {k: v["inputs"].get("code") for k, v in ledger["stages"].items()} == {
        "held-out split": None, "train": None, "evaluate": code_digest("supernet", "train", "data"),
        "search": code_digest("search", "memory", "supernet", "data"), "quantize": code_digest("quantize", "data"),
        "export": code_digest("codegen", "memory"), "verify": code_digest("verify", "quantize")}
    old_export = ledger["stages"]["export"]["inputs"]
    old_export["code"] = "an older code generator"
    ledger["stages"]["verify"]["inputs"]["export"] = digest_settings(old_export)  # as that run recorded it
    (tmp_path / "run/stages.json").write_text(json.dumps(ledger))
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert _ran(tmp_path) == ["export", "verify"] and "rerun export: code changed" in proc.stdout
    assert "rerun verify: export changed" in proc.stdout
    after = _stamps(tmp_path / "run")
    assert [f for f in FILES if after[f] != stamps[f]] == ["engine/export.json", "verify.json"]
    stamps = after
    # new search settings: the search and the stages after it rerun, training and evaluation do not
    _edit(cfg, lambda c: c["search"].update(generations=1))
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert _ran(tmp_path) == ["search", "quantize", "export", "verify"]
    assert "rerun search: search settings changed" in proc.stdout
    assert "rerun quantize: search" in proc.stdout  # and "searched arch" when the search found another
    after = _stamps(tmp_path / "run")
    for f in FILES[:3]:
        assert after[f] == stamps[f], f
    for f in FILES[3:]:
        assert after[f] != stamps[f], f
    # a new supernet checkpoint (same training inputs): everything that reads it reruns
    from mcuformer.train import load_checkpoint, save_checkpoint
    state = load_checkpoint(tmp_path / "run/supernet/checkpoint.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] * 1.5 + 0.01
    save_checkpoint(tmp_path / "run/supernet/checkpoint.pt", state)
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert _ran(tmp_path) == ["evaluate", "search", "quantize", "export", "verify"]
    assert "rerun evaluate: checkpoint changed" in proc.stdout and "rerun train" not in proc.stdout
    assert "rerun search: checkpoint changed" in proc.stdout
    _zoo_supernet_run(tmp_path)


def _zoo_supernet_run(tmp_path):
    """The default mode: start from a trained supernet in the models/ form (no training), search it for
    another board on the split it was trained without; a changed supernet reruns what reads it."""
    from mcuformer.train.warm_start import write_relocatable
    write_relocatable(tmp_path / "run/supernet/checkpoint.pt", tmp_path / "zoo")
    assert (tmp_path / "zoo/heldout-split.json").exists()
    cfg = tmp_path / "zoo.yaml"
    base = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())
    cfg.write_text(yaml.safe_dump({**base, "supernet": "zoo/supernet.pt", "output": "zoo-run", "board": "stm32l432kc"}))
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    summary = json.loads((tmp_path / "zoo-run/summary.json").read_text())
    assert summary["stages_run"] == ["evaluate", "search", "quantize", "export", "verify"]  # no training
    times = summary["stage_seconds"]  # each stage that ran timed, within the run's wall time
    assert list(times) == summary["stages_run"] and min(times.values()) > 0
    assert sum(times.values()) <= summary["seconds"] and f"wall time {summary['seconds']:.0f} s" in proc.stdout
    assert "1/8 supernet" in proc.stdout and "4/8 fine-tune: skipped" in proc.stdout
    assert not (tmp_path / "zoo-run/supernet").exists() and not (tmp_path / "zoo-run/heldout-split.json").exists()
    search = json.loads((tmp_path / "zoo-run/search/result.json").read_text())
    assert search["heldout"].endswith("zoo/heldout-split.json") and search["heldout_seen_in_training"] == 0
    assert summary["budget"]["name"] == "stm32l432kc" and summary["engine"]["host"]["bit_exact"]
    if "emulator" in summary["engine"]:
        assert summary["engine"]["emulator"]["target"] == "cortex-m4" and summary["engine"]["emulator"]["bit_exact"]
    # --epochs belongs to --train
    assert_one_line_error(run_cli("pipeline", "--config", cfg, "--epochs", "2"), "--epochs", "--train")
    # a new zoo supernet: evaluation, search and everything after rerun, each saying why
    from mcuformer.train import load_checkpoint, save_checkpoint
    state = load_checkpoint(tmp_path / "zoo/supernet.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name] * 1.5 + 0.01
    save_checkpoint(tmp_path / "zoo/supernet.pt", state)
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    assert json.loads((tmp_path / "zoo-run/summary.json").read_text())["stages_run"] == [
        "evaluate", "search", "quantize", "export", "verify"]
    assert "rerun evaluate: checkpoint changed" in proc.stdout and "rerun search: checkpoint changed" in proc.stdout
    # fine-tuning switched on: the searched subnet trains on its own; the search is kept, what follows reruns
    _edit(cfg, lambda c: c.update(finetune={"epochs": 1}))
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    summary = json.loads((tmp_path / "zoo-run/summary.json").read_text())
    assert summary["stages_run"] == ["finetune", "quantize", "export", "verify"]
    assert summary["deployed_checkpoint"].endswith("finetune/checkpoint.pt") and "(fine-tuned)" in proc.stdout
    assert "rerun quantize: checkpoint, fine-tune changed" in proc.stdout
    # a zoo model built from this supernet for this board, better than the run's: the summary points at it
    from mcuformer.memory.boards import get_board
    from mcuformer.utils.io import file_sha256
    (tmp_path / "zoo/int8-stm32l432kc").mkdir()
    (tmp_path / "zoo/int8-stm32l432kc/zoo.json").write_text(json.dumps({
        "board": get_board("stm32l432kc").to_dict(), "supernet_sha256": file_sha256(tmp_path / "zoo/supernet.pt"),
        "int8_top1": 100.0, "measured_flash_bytes": 1024, "measured_ram_bytes": 1024, "bit_exact_host": True}))
    proc = run_cli("pipeline", "--config", cfg, "--no-progress", check=True)
    summary = json.loads((tmp_path / "zoo-run/summary.json").read_text())
    assert summary["stages_run"] == [] and summary["zoo_model"]["int8_top1"] == 100.0
    assert "better ready model for stm32l432kc from this supernet:" in proc.stdout


# a run's outputs, stage by stage: held-out split, training, evaluation, search, quantize, export, verify
FILES = ("heldout-split.json", "supernet/log.jsonl", "evaluate.json", "search/result.json", "int8/manifest.json",
         "engine/export.json", "verify.json")


def _stamps(run):
    return {f: (run / f).stat().st_mtime_ns for f in FILES}


def _ran(tmp_path):
    return json.loads((tmp_path / "run/summary.json").read_text())["stages_run"]


def _edit(path, change):
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg))


def test_pipeline_config_errors(tmp_path):
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, search={"popsize": 3})),
                          "unknown key", "popsize")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, board="esp32")), "unknown board")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, supernet="gone.pt")), "gone.pt", "--train")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, flash_kb=-5)), "flash", "positive")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, finetune={"epochs": 1.5})),
                          "finetune.epochs")
    for alpha in (1.5, "half"):
        assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, finetune={"distill_alpha": alpha})),
                              "finetune.distill_alpha")
    for percentile in (50, 100.5, "high"):
        assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, quantize={"percentile": percentile})),
                              "quantize.percentile")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, finetune={"teacher": 3})),
                          "finetune.teacher", "true, false, a teacher file or a list of them")
    assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, finetune={"teacher": "t/teacher.pt"})),
                          "finetune.teacher file not found", str(tmp_path / "t" / "teacher.pt"))
    (tmp_path / "a.pt").write_bytes(b"a teacher")
    for teachers, says in (([], "a list of them"), (["a.pt", 3], "a list of them"),
                           (["a.pt", "t/b.pt"], str(tmp_path / "t" / "b.pt")), (["a.pt", "./a.pt"], "named twice")):
        assert_one_line_error(run_cli("pipeline", "--config", _config(tmp_path, finetune={"teacher": teachers})),
                              "finetune.teacher" if says != "named twice" else "teacher", says)
    cfg = _config(tmp_path)  # a tampered stage record is refused before any stage runs
    (tmp_path / "run").mkdir()
    (tmp_path / "run/stages.json").write_text('{"format": "mcuformer-stages-v1", "stages": {"train": []}}')
    assert_one_line_error(run_cli("pipeline", "--config", cfg), "stages.json", "delete it")
    assert not (tmp_path / "run/supernet").exists()


def test_summary_points_at_the_zoo_model_of_the_same_supernet_and_budget(tmp_path):
    """A zoo.json beside the supernet for the run's board is shown only when it names this supernet's
    sha256, the board's SRAM and flash and a host bit-exact check; anything malformed is skipped."""
    from mcuformer.memory.boards import get_board
    from mcuformer.pipeline import format_summary, zoo_model
    from mcuformer.utils.io import file_sha256

    ckpt = tmp_path / "supernet.pt"
    ckpt.write_bytes(b"weights")
    board = get_board("stm32f746")
    entry = {"board": board.to_dict(), "supernet_sha256": file_sha256(ckpt), "int8_top1": 83.54,
             "measured_flash_bytes": 556512, "measured_ram_bytes": 82472, "summary": "E96 D4", "fine_tuned_epochs": 20,
             "bit_exact_host": True, "bit_exact_emulator": True, "measured_on": "cortex-m7"}
    (tmp_path / "int8-stm32f746").mkdir()

    def pointed(**change):
        (tmp_path / "int8-stm32f746/zoo.json").write_text(json.dumps({**entry, **change}))
        return zoo_model(ckpt, board, allow_external_flash=False)

    zoo = pointed()
    assert zoo == {"folder": str(tmp_path / "int8-stm32f746"), "summary": "E96 D4", "int8_top1": 83.54,
                   "flash_bytes": 556512, "ram_bytes": 82472, "fine_tuned_epochs": 20, "emulated_core": "cortex-m7"}
    text = format_summary({"space": "s", "subnets": [], "curves": "c.png", "board": "stm32f746", "zoo_model": zoo})
    assert f"fine-tuned 20 epochs: {tmp_path / 'int8-stm32f746'}" in text
    assert "83.54%  (E96 D4)" in text and "80.5 KB, 543.5 KB; bit-exact on the host and cortex-m7" in text
    assert zoo_model(ckpt, board, allow_external_flash=True) is None
    assert zoo_model(ckpt, get_board("stm32h743"), allow_external_flash=False) is None  # no entry for that board
    assert pointed(supernet_sha256="0" * 64) is None  # built from another supernet
    assert pointed(board={**board.to_dict(), "flash_bytes": 2 << 20}) is None  # sized for another budget
    assert pointed(bit_exact_host=False) is None
    assert pointed(int8_top1="83.54") is None and pointed(measured_ram_bytes=float("nan")) is None
    assert pointed(board="stm32f746") is None
    assert pointed(bit_exact_emulator=False)["emulated_core"] is None
    (tmp_path / "int8-stm32f746/zoo.json").write_text("{not json")
    assert zoo_model(ckpt, board, allow_external_flash=False) is None


def test_summary_keeps_external_flash_apart_from_the_internal_budget():
    """A model whose weights went to QSPI flash is measured against the internal flash only for the part
    linked there: 6,178,392 bytes in all, 6,145,528 of them external (a 240x240 T subnet's link)."""
    from mcuformer.pipeline import measured_flash

    def kb(b):
        return f"{b / 1024:.1f}"
    emu = {"model_flash_bytes": 6178392, "external_flash_bytes": 6145528, "board_flash_bytes": 1 << 20}
    assert measured_flash(emu, kb) == "6033.6 KB = internal 32.1 (of 1024.0 KB) + external 6001.5"
    assert measured_flash({**emu, "external_flash_bytes": 0}, kb) == "6033.6 KB (of 1024.0 KB)"
