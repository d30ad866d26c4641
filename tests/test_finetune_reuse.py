"""benchmarks/model_zoo.py builds one run per board; when two boards' searches pick the same subnet of the
same supernet, the second board copies the first one's fine-tuned weights instead of training them again
(fine-tuning does not depend on the board). A donor that differs in anything the weights depend on, or
whose record does not hold, is not used."""

import torch
import yaml

from conftest import make_image_folder

from mcuformer.pipeline import PipelineConfig, finetune_stage
from mcuformer.stages import StageLedger
from mcuformer.train.checkpoint import FORMAT

ARCH = {"embed_dim": 96, "depth": 4, "num_heads": [4, 6, 6, 3], "stem_width": 48}


def _checkpoint(path, epoch, value=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "space": {}, "model": {"w": torch.full((2,), value)}, "num_classes": 10,
                "epoch": epoch}, path)


def _run(tmp_path, board, monkeypatch, trained, *, epochs=2, arch=ARCH, donors=(), teacher=False, teachers=None,
         distill_alpha=None, alphas=None):
    """The fine-tune stage of one board's run, with the training itself faked: it records the call (and the
    teacher it was given, in ``teachers``; its distill_alpha, in ``alphas``)."""
    def fake_finetune(ckpt, arch_file, out, cfg, **kw):
        trained.append(board)
        if teachers is not None:
            teachers.append(kw["teacher"])
        if alphas is not None:
            alphas.append(cfg.distill_alpha)
        _checkpoint(out / "checkpoint.pt", cfg.epochs, value=len(trained))
        return {"interrupted": False}

    monkeypatch.setattr("mcuformer.api.finetune_subnet", fake_finetune)
    run = tmp_path / "work" / board
    arch_file = run / "search" / "best_arch.yaml"
    ledger = StageLedger(run)
    ledger.plan("search", {"board": board}, done=True, owned=[arch_file.parent])
    arch_file.parent.mkdir(parents=True, exist_ok=True)  # the budget in it is the board's: the files differ
    arch_file.write_text(yaml.safe_dump({"arch": arch, "budget": {"board": board}}))
    ledger.finish("search")
    cfg = PipelineConfig(space=[], train_config=None, output=run, supernet=tmp_path / "supernet.pt",
                         data_path=tmp_path / "data", board=board,
                         finetune={"epochs": epochs, "teacher": teacher,
                                   **({"distill_alpha": distill_alpha} if distill_alpha is not None else {})})
    out = finetune_stage(cfg, tmp_path / "supernet.pt", {"arch": arch, "arch_file": str(arch_file)},
                         progress=False, ledger=ledger, donors=donors)
    return out, StageLedger(run).records["finetune"]


def test_a_board_whose_search_picked_a_fine_tuned_subnet_copies_it(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data")
    _checkpoint(tmp_path / "supernet.pt", 0)
    work, trained = tmp_path / "work", []
    first, _ = _run(tmp_path, "stm32f746", monkeypatch, trained)
    second, record = _run(tmp_path, "stm32f427", monkeypatch, trained, donors=[work / "stm32f746", work / "missing"])
    assert trained == ["stm32f746"]
    assert second.read_bytes() == first.read_bytes() and second != first
    assert record["complete"] and record["reused_from"] == "stm32f746"

    # what the weights depend on differs: trained here
    _, record = _run(tmp_path, "stm32h743", monkeypatch, trained, arch={**ARCH, "depth": 5},
                     donors=[work / "stm32f746"])
    _, record2 = _run(tmp_path, "stm32f411re", monkeypatch, trained, epochs=3, donors=[work / "stm32f746"])
    assert trained == ["stm32f746", "stm32h743", "stm32f411re"]
    assert "reused_from" not in record and "reused_from" not in record2

    # the donor's search reran after its fine-tune (its arch file is not the one its weights were trained on)
    arch_file = work / "stm32f746" / "search" / "best_arch.yaml"
    arch_file.write_text(arch_file.read_text() + "# searched again\n")
    _run(tmp_path, "stm32l432kc", monkeypatch, trained, donors=[work / "stm32f746"])
    assert trained[-1] == "stm32l432kc"


def test_a_donor_with_a_broken_checkpoint_or_record_is_no_donor(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data")
    _checkpoint(tmp_path / "supernet.pt", 0)
    work, trained = tmp_path / "work", []
    _run(tmp_path, "stm32f746", monkeypatch, trained)
    (work / "stm32f746" / "finetune" / "checkpoint.pt").write_bytes(b"truncated")
    _run(tmp_path, "stm32f427", monkeypatch, trained, donors=[work / "stm32f746"])
    (work / "stm32f427" / "stages.json").write_text("{not json")
    _run(tmp_path, "stm32h743", monkeypatch, trained, donors=[work / "stm32f746", work / "stm32f427"])
    assert trained == ["stm32f746", "stm32f427", "stm32h743"]


def test_flash_fill_reuses_the_zoo_runs_fine_tune_only_when_nothing_differs(tmp_path, monkeypatch):
    """benchmarks/flash_fill.py fine-tunes the board's zoo pick with the zoo's recipe; the zoo's own run of it
    (model_zoo.py's folder) is copied instead when it trained the same subnet of the same supernet on the same
    data with the same settings to its end."""
    import sys

    from conftest import ROOT
    from mcuformer.stages import digest_files
    from mcuformer.train import TrainConfig

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("flash_fill", None)
    from flash_fill import zoo_finetune

    supernet, other = tmp_path / "supernet.pt", tmp_path / "other.pt"
    _checkpoint(supernet, 0)
    _checkpoint(other, 0, value=1.0)
    cfg, run = TrainConfig(epochs=20), tmp_path / "zoo" / "stm32f746"
    ckpt, data = run / "finetune" / "checkpoint.pt", tmp_path / "cifar10.tar.gz"

    def fine_tuned(epoch=20, planned=20, config=cfg.to_dict(), arch=ARCH):
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": FORMAT, "space": {}, "model": {"w": torch.zeros(2)}, "num_classes": 10,
                    "epoch": epoch, "planned_epochs": planned, "config": config, "finetuned_arch": arch,
                    "data_path": str(data)}, ckpt)

    assert zoo_finetune(run, supernet, ARCH, cfg, data) is None  # no zoo run
    fine_tuned()
    assert zoo_finetune(run, supernet, ARCH, cfg, data) is None  # no record that its fine-tune finished
    ledger = StageLedger(run)
    ledger.plan("finetune", {"checkpoint": digest_files(supernet)}, done=False, owned=[])
    ledger.finish("finetune")
    assert zoo_finetune(run, supernet, ARCH, cfg, data) == run / "finetune"
    assert zoo_finetune(run, other, ARCH, cfg, data) is None  # fine-tuned from another supernet
    assert zoo_finetune(run, supernet, {**ARCH, "depth": 5}, cfg, data) is None  # another subnet
    assert zoo_finetune(run, supernet, ARCH, cfg, tmp_path / "other.tar.gz") is None  # other data
    assert zoo_finetune(run, supernet, ARCH, TrainConfig(epochs=3), data) is None  # other epochs
    assert zoo_finetune(run, supernet, ARCH, TrainConfig(epochs=20, lr=2e-3), data) is None  # other settings
    fine_tuned(epoch=12)
    assert zoo_finetune(run, supernet, ARCH, cfg, data) is None  # interrupted
    fine_tuned(epoch=20, planned=40)
    assert zoo_finetune(run, supernet, ARCH, TrainConfig(epochs=20), data) is None  # another schedule, stopped early
    ckpt.write_bytes(b"damaged")
    assert zoo_finetune(run, supernet, ARCH, cfg, data) is None
    fine_tuned()
    (run / "stages.json").write_text("{not json")
    assert zoo_finetune(run, supernet, ARCH, cfg, data) is None


def test_teacher_distill_takes_its_baseline_from_a_labels_only_zoo_model_only(tmp_path, monkeypatch):
    """benchmarks/teacher_distill.py --baseline-from a zoo.json: the zoo's own seeded fine-tune is the labels-only
    row when it had no teacher and matches the supernet, subnet and epochs; a distilled or adopted (--finetuned,
    recipe unknown) fine-tune, or another subnet, supernet or epoch count, is one ConfigError. A baseline file git
    holds unchanged is named with its commit."""
    import json
    import subprocess
    import sys

    import pytest

    from conftest import ROOT
    from mcuformer.errors import ConfigError

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("teacher_distill", None)
    from teacher_distill import recorded_baseline

    zoo = {"supernet_sha256": "ab" * 32, "summary": "E96 D4", "arch": ARCH, "fine_tuned_epochs": 20,
           "fine_tune_teacher": "none", "float_top1": 81.94, "int8_top1": 82.02, "test_images": 10000}
    path = tmp_path / "zoo.json"

    def baseline(recorded, epochs=20, target=zoo):
        path.write_text(json.dumps(recorded))
        return recorded_baseline(path, target, epochs)

    row = baseline(zoo)
    assert (row["fine-tune"], row["float_top1"], row["int8_top1"], row["test_images"]) == \
        ("labels only", 81.94, 82.02, 10000)
    for recorded, epochs, target in [({**zoo, "fine_tune_teacher": "models/teacher.pt"}, 20, zoo),
                                     ({k: v for k, v in zoo.items() if k != "fine_tune_teacher"}, 20, zoo),
                                     (zoo, 3, zoo), (zoo, 20, {**zoo, "summary": "E64 D4"}),
                                     (zoo, 20, {**zoo, "supernet_sha256": "cd" * 32})]:
        with pytest.raises(ConfigError, match="no labels-only row"):
            baseline(recorded, epochs, target)
    with pytest.raises(ConfigError, match="not a flash_fill.py"):
        baseline({k: v for k, v in zoo.items() if k != "supernet_sha256"})

    # a zoo.json is rewritten by the zoo's next rebuild: a committed, unchanged baseline is named with its commit
    assert " at " not in baseline(zoo)["recorded_in"]  # no repository here
    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    git("add", "zoo.json")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "labels-only model")
    commit = git("log", "-1", "--format=%h")
    assert recorded_baseline(path, zoo, 20)["recorded_in"] == f"zoo.json at {commit}"
    path.write_text(json.dumps({**zoo, "float_top1": 80.0}))  # changed since: its commit no longer holds it
    assert recorded_baseline(path, zoo, 20)["recorded_in"] == "zoo.json"


def test_teacher_distill_records_the_paths_that_repeat_it(monkeypatch):
    """The result's command names --work, --output and the other paths when they are not the defaults: repeated
    without them, a run with another teacher would write over the first result."""
    import sys

    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.chdir(ROOT)
    sys.modules.pop("teacher_distill", None)
    from teacher_distill import parser, recorded_command

    ap = parser()
    base = ["--teacher", "runs/t40/teacher.pt", "--board", "stm32f746", "--epochs", "20"]
    head = "python benchmarks/teacher_distill.py --teacher runs/t40/teacher.pt --board stm32f746 --epochs 20"
    assert recorded_command(ap.parse_args(base + ["--work", "runs/teacher-distill"]), ap) == head
    args = ap.parse_args(base + ["--baseline-from", "benchmarks/results/b.json", "--work", str(ROOT / "runs/t40-work"),
                                 "--output", "benchmarks/results/o.json"])
    assert recorded_command(args, ap) == (head + " --baseline-from benchmarks/results/b.json --work runs/t40-work"
                                          " --output benchmarks/results/o.json")
    ensemble = ap.parse_args(["--teacher", "runs/t16/teacher.pt", "runs/t40/teacher.pt", "--epochs", "20"])
    assert recorded_command(ensemble, ap) == ("python benchmarks/teacher_distill.py --teacher runs/t16/teacher.pt "
                                              "runs/t40/teacher.pt --board stm32f746 --epochs 20")


def test_an_interrupted_fine_tune_stops_model_zoo_with_a_rerun_hint(tmp_path, monkeypatch, capsys):
    """SIGINT/SIGTERM during a board's fine-tune: the trainer saves and returns, finetune_stage returns None,
    and model_zoo.py stops there (status 130) instead of quantising no checkpoint (it once raised a TypeError
    traceback) or going on to the next board."""
    import sys

    zoo = _model_zoo()
    _checkpoint(tmp_path / "supernet.pt", 0)
    calls = []
    monkeypatch.setattr(zoo, "supernet_stage", lambda cfg, ledger: None)
    monkeypatch.setattr(zoo, "search_stage", lambda cfg, *a, **k: calls.append(cfg.board) or {"arch": ARCH})
    monkeypatch.setattr(zoo, "finetune_stage", lambda *a, **k: None)
    monkeypatch.setattr(zoo, "quantize_stage", lambda *a, **k: calls.append("quantize"))
    monkeypatch.setattr(sys, "argv", ["model_zoo.py", "--checkpoint", str(tmp_path / "supernet.pt"),
                                      "--boards", "stm32f746", "stm32f427", "--finetune-epochs", "2",
                                      "--work", str(tmp_path / "work"), "--output", str(tmp_path / "zoo.json")])
    assert zoo.main() == 130
    assert calls == ["stm32f746"]
    assert "stm32f746: fine-tune interrupted: rerun the same command" in capsys.readouterr().err
    assert not (tmp_path / "zoo.json").exists() and not (tmp_path / "int8-stm32f746").exists()


def _model_zoo():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "model_zoo.py"
    spec = importlib.util.spec_from_file_location("model_zoo_script", script)
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    return zoo


ZOO_ARCH = {"img_size": 32, "patch_size": 1, "rank_ratio": 0.75, "embed_dim": 96, "depth": 4, "num_heads": [4, 6, 6, 3],
            "mlp_ratio": [2.0, 3.0, 1.5, 3.0], "num_classes": 10, "head_dim": 32, "in_chans": 3, "cls_token": False,
            "pool": "gap", "stem": "conv", "stem_layers": 2, "stem_width": 48, "stem_pool": [True, True]}


def test_model_zoo_adopts_a_subnet_fine_tuned_elsewhere(tmp_path):
    """--finetuned (a GPU slot's fine-tune): its arch and weights stand for stages 3-4 in the run's ledger, so
    that the stages after them keep their work while it is the same file and redo it when it changes; a
    checkpoint that is no fine-tune, whose arch is damaged or does not fit the board is refused by name."""
    import pytest

    from mcuformer.errors import McuformerError
    from mcuformer.memory import get_board

    zoo = _model_zoo()
    tuned = tmp_path / "finetune-fp16.pt"
    _checkpoint(tuned, 60)
    state = torch.load(tuned, weights_only=False)
    torch.save({**state, "finetuned_arch": ZOO_ARCH}, tuned)
    run = tmp_path / "work" / "stm32f746"
    cfg = PipelineConfig(space=[], train_config=None, output=run, supernet=tmp_path / "supernet.pt",
                         board="stm32f746")
    f746 = get_board("stm32f746")
    searched = zoo.adopt_finetuned(cfg, tuned, f746, StageLedger(run))
    assert searched["summary"].startswith("E96 D4 c48") and searched["epochs"] == 60
    assert yaml.safe_load((run / "search" / "best_arch.yaml").read_text())["arch"] == ZOO_ARCH
    assert (run / "finetune" / "checkpoint.pt").read_bytes() == tuned.read_bytes()
    ledger = StageLedger(run)
    assert ledger.records["search"]["complete"] and ledger.records["finetune"]["complete"]
    fingerprint = ledger.fingerprint("finetune")

    zoo.adopt_finetuned(cfg, tuned, f746, StageLedger(run))  # the same file: the same record
    assert StageLedger(run).fingerprint("finetune") == fingerprint
    torch.save({**state, "finetuned_arch": ZOO_ARCH, "epoch": 61}, tuned)  # another fine-tune: a new record
    zoo.adopt_finetuned(cfg, tuned, f746, StageLedger(run))
    assert StageLedger(run).fingerprint("finetune") != fingerprint
    assert (run / "finetune" / "checkpoint.pt").read_bytes() == tuned.read_bytes()

    for arch, board, needle in ((None, f746, "not a fine-tuned subnet"),
                                ({**ZOO_ARCH, "depth": "x"}, f746, "depth"),
                                (ZOO_ARCH, get_board("stm32l432kc"), "does not fit stm32l432kc")):
        torch.save({**state, **({"finetuned_arch": arch} if arch else {})}, tuned)
        with pytest.raises(McuformerError, match=needle):
            zoo.adopt_finetuned(cfg, tuned, board, StageLedger(run))


def test_model_zoo_takes_a_fine_tune_per_board(tmp_path):
    """--finetuned: one CKPT for the one board of --boards, or BOARD=CKPT pairs (a GPU slot's fine-tunes, the
    F427 sharing the F746's), which then stand for --boards in their order; every file is checked before
    anything is built, and an ambiguous or impossible request is refused by name."""
    import pytest

    from mcuformer.errors import McuformerError

    pick = _model_zoo().finetuned_by_board
    f746, l432 = tmp_path / "finetune-stm32f746-fp16.pt", tmp_path / "finetune-stm32l432kc-fp16.pt"
    f746.write_bytes(b"x")
    l432.write_bytes(b"x")
    assert pick(None, ["stm32f746"], 0) == {}
    assert pick([str(f746)], ["stm32f427"], 0) == {"stm32f427": f746}
    pairs = pick([f"stm32l432kc={l432}", f"stm32f746={f746}", f"stm32f427={f746}"], ["stm32h743"], 0)
    assert list(pairs.items()) == [("stm32l432kc", l432), ("stm32f746", f746), ("stm32f427", f746)]
    for values, boards, epochs, needle in (
            ([str(f746)], ["stm32f746", "stm32f427"], 0, "give one board"),
            ([str(f746), str(l432)], ["stm32f746"], 0, "BOARD=CKPT pairs"),
            ([f"stm32f103={f746}"], ["stm32f746"], 0, "unknown board 'stm32f103'"),
            ([f"stm32f746={f746}", f"stm32f746={l432}"], ["stm32f746"], 0, "stm32f746 given twice"),
            (["stm32f746="], ["stm32f746"], 0, "BOARD=CKPT"),
            ([f"stm32f746={tmp_path / 'nope.pt'}"], ["stm32f746"], 0, "not found: .*nope.pt \\(for stm32f746\\)"),
            ([str(f746)], ["stm32f746"], 3, "no --finetune-epochs")):
        with pytest.raises(McuformerError, match=needle):
            pick(values, boards, epochs)


def test_a_teacher_file_is_handed_on_and_a_changed_one_reruns_the_fine_tune(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data")
    _checkpoint(tmp_path / "supernet.pt", 0)
    teacher, trained, teachers = tmp_path / "teacher.pt", [], []
    teacher.write_bytes(b"a teacher")
    for _ in range(2):  # the second run keeps the finished fine-tune
        _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), teachers=teachers)
    assert trained == ["stm32f746"] and teachers == [str(teacher)]
    teacher.write_bytes(b"a retrained teacher")  # same name, other content
    _, record = _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), teachers=teachers)
    assert trained == ["stm32f746"] * 2 and record["complete"]


def test_an_ensemble_of_teachers_is_handed_on_and_reruns_only_when_a_member_changes(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data")
    _checkpoint(tmp_path / "supernet.pt", 0)
    a, b, trained, teachers = tmp_path / "a.pt", tmp_path / "b.pt", [], []
    a.write_bytes(b"one teacher")
    b.write_bytes(b"another teacher")
    _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=[str(a), str(b)], teachers=teachers)
    _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=[str(b), str(a)], teachers=teachers)  # same mean
    assert trained == ["stm32f746"] and teachers == [[str(a), str(b)]]
    b.write_bytes(b"another teacher, retrained")
    _, record = _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=[str(b), str(a)], teachers=teachers)
    assert trained == ["stm32f746"] * 2 and teachers[-1] == [str(b), str(a)] and record["complete"]
    _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(a), teachers=teachers)  # one of them alone
    assert trained == ["stm32f746"] * 3


def test_the_distill_alpha_is_handed_on_and_a_new_one_reruns_the_finetune(tmp_path, monkeypatch):
    from mcuformer.stages import digest_settings

    make_image_folder(tmp_path / "data")
    _checkpoint(tmp_path / "supernet.pt", 0)
    teacher, trained, alphas = tmp_path / "teacher.pt", [], []
    teacher.write_bytes(b"a teacher")
    _, record = _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), alphas=alphas)
    # the default leaves the digest that runs made before the key existed recorded: they are not redone
    assert record["inputs"]["fine-tune settings"] == digest_settings({"epochs": 2, "teacher": "file"})
    _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), distill_alpha=0.5, alphas=alphas)
    assert trained == ["stm32f746"] and alphas == [0.5]
    _, record = _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), distill_alpha=1.0,
                     alphas=alphas)
    assert trained == ["stm32f746"] * 2 and alphas[-1] == 1.0 and record["complete"]
    _run(tmp_path, "stm32f746", monkeypatch, trained, teacher=str(teacher), distill_alpha=1.0, alphas=alphas)
    assert trained == ["stm32f746"] * 2


def test_flash_fill_never_continues_or_reuses_a_fine_tune_of_another_distill_alpha(tmp_path, monkeypatch):
    """teacher_distill.py's --distill-alpha goes through flash_fill's finetune_and_test: a kept accuracy report or
    checkpoint of another distill_alpha (a report without one was made at the default, 0.5) is one ConfigError,
    not a result of the wrong recipe; settings that leave the weights alone, or a path written another way, may
    differ."""
    import json
    import sys

    import pytest

    from conftest import ROOT
    from mcuformer.errors import ConfigError
    from mcuformer.space import Arch
    from mcuformer.train import TrainConfig
    from mcuformer.train.config import finetune_settings
    from mcuformer.utils.io import file_sha256

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("flash_fill", None)
    from flash_fill import finetune_and_test, kept_settings_differ

    arch = json.loads((ROOT / "models/cifar10-zoo/int8-stm32f746/zoo.json").read_text())["arch"]
    monkeypatch.chdir(tmp_path)
    supernet, teacher, work = tmp_path / "supernet.pt", tmp_path / "teacher.pt", tmp_path / "work"
    _checkpoint(supernet, 0)
    teacher.write_bytes(b"a teacher")
    make_image_folder(tmp_path / "data")
    work.mkdir()
    (work / "arch.yaml").write_text(yaml.safe_dump({"arch": arch}))
    report = {"arch": Arch.from_dict(arch).short(), "float_top1": 80.0, "int8_top1": 79.5, "count": 10000,
              "teacher_sha256": file_sha256(teacher), "calibration": {"method": "percentile", "percentile": 99.99}}

    def run(alpha, with_teacher=True):
        return finetune_and_test(supernet, arch, work, 2, tmp_path / "data", teacher=teacher if with_teacher else None,
                                 distill_alpha=alpha)

    (work / "accuracy.json").write_text(json.dumps(report))  # made before distill_alpha was recorded: 0.5
    assert run(None)["int8_top1"] == run(0.5)["int8_top1"] == 79.5
    with pytest.raises(ConfigError, match="distill_alpha 0.5, not 1"):
        run(1.0)
    (work / "accuracy.json").write_text(json.dumps({**report, "distill_alpha": 1.0}))
    assert run(1.0)["int8_top1"] == 79.5
    with pytest.raises(ConfigError, match="distill_alpha 1.0, not 0.5"):
        run(None)
    with pytest.raises(ConfigError, match="no teacher"):
        run(1.0, with_teacher=False)

    # no report yet, a checkpoint kept: continued only if it is this run's recipe
    (work / "accuracy.json").unlink()
    wanted = TrainConfig.from_dict(finetune_settings(None, epochs=2, workers=1, distill_alpha=0.5)).to_dict()
    ckpt = work / "finetune" / "checkpoint.pt"
    ckpt.parent.mkdir()
    torch.save({"format": FORMAT, "space": {}, "model": {"w": torch.zeros(2)}, "num_classes": 10, "epoch": 1,
                "config": wanted}, ckpt)
    kept_bytes = ckpt.read_bytes()
    with pytest.raises(ConfigError, match=r"other settings \(distill_alpha\)"):
        run(1.0)
    assert ckpt.read_bytes() == kept_bytes and not (work / "accuracy.json").exists()

    assert kept_settings_differ(wanted, {**wanted, "workers": 4, "checkpoint_every_s": 600}) == []
    split = tmp_path / "split.json"
    assert kept_settings_differ({**wanted, "exclude_split": "split.json"},
                                {**wanted, "exclude_split": str(split)}) == []
    assert kept_settings_differ({**wanted, "exclude_split": "other.json"},
                                {**wanted, "exclude_split": str(split)}) == ["exclude_split"]
    assert kept_settings_differ(wanted, {**wanted, "lr": 1.0, "epochs": 3}) == ["epochs", "lr"]


def test_flash_fill_quantises_a_kept_fine_tune_again_when_the_calibration_changed(tmp_path, monkeypatch):
    """A kept report measured with another calibration (one without the key was min/max) is measured again from
    its kept fine-tune with the current calibration, without training; what it said of the training is kept.
    With its fine-tune gone it is refused."""
    import json
    import sys

    import pytest

    from conftest import ROOT
    from mcuformer.errors import ConfigError
    from mcuformer.space import Arch
    from mcuformer.utils.io import file_sha256

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("flash_fill", None)
    from flash_fill import finetune_and_test

    arch = json.loads((ROOT / "models/cifar10-zoo/int8-stm32f746/zoo.json").read_text())["arch"]
    monkeypatch.chdir(tmp_path)
    teacher, work = tmp_path / "teacher.pt", tmp_path / "work"
    teacher.write_bytes(b"a teacher")
    work.mkdir()
    (work / "arch.yaml").write_text(yaml.safe_dump({"arch": arch}))
    short = Arch.from_dict(arch).short()
    training = {"train_seconds_this_run": 100.0, "teacher_sha256": file_sha256(teacher), "distill_alpha": 1.0}
    (work / "accuracy.json").write_text(json.dumps({"arch": short, "float_top1": 80.0, "int8_top1": 79.5,
                                                    "count": 10000, "train_seconds": 100.0, **training}))
    ckpt = work / "finetune" / "checkpoint.pt"
    ckpt.parent.mkdir()
    torch.save({"format": FORMAT, "space": {}, "model": {"w": torch.zeros(2)}, "num_classes": 10, "epoch": 2,
                "history": [{"seconds": 40.0}, {"seconds": 60.5}]}, ckpt)
    calls = []

    def never_train(*a, **kw):
        raise AssertionError("trained again")
    monkeypatch.setattr("mcuformer.api.finetune_subnet", never_train)
    monkeypatch.setattr("mcuformer.quantize.workflow.quantize_checkpoint", lambda *a, **kw: calls.append(kw))
    monkeypatch.setattr("mcuformer.quantize.workflow.evaluate_quantized", lambda *a, **kw: {
        "arch": short, "float_top1": 80.0, "int8_top1": 79.9, "count": 10000})

    def run():
        return finetune_and_test(tmp_path / "supernet.pt", arch, work, 2, tmp_path / "data", teacher=teacher,
                                 distill_alpha=1.0)

    acc = run()
    assert calls == [{"data_path": tmp_path / "data", "num_images": 256, "method": "percentile", "percentile": 99.99}]
    assert acc == {"arch": short, "float_top1": 80.0, "int8_top1": 79.9, "count": 10000, "train_seconds": 100.5,
                   **training, "calibration": {"method": "percentile", "percentile": 99.99}}
    assert json.loads((work / "accuracy.json").read_text()) == acc
    calls.clear()
    assert run() == acc and calls == []  # now measured with this calibration: reused
    ckpt.unlink()
    (work / "accuracy.json").write_text(json.dumps({**acc, "calibration": {"method": "minmax"}}))
    with pytest.raises(ConfigError, match="calibrated otherwise and its fine-tune is gone"):
        run()
    assert calls == []


def test_teacher_distill_names_another_distill_alpha_in_its_command_folder_and_result(monkeypatch):
    import sys

    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sys.modules.pop("teacher_distill", None)
    from teacher_distill import alpha_suffix, parser, recorded_command

    ap = parser()
    base = ["--teacher", "models/cifar10-zoo/teacher.pt", "--board", "stm32f746", "--epochs", "20"]
    assert recorded_command(ap.parse_args(base + ["--distill-alpha", "1.0"]), ap).endswith(
        "--epochs 20 --distill-alpha 1")
    assert "--distill-alpha" not in recorded_command(ap.parse_args(base), ap)
    assert alpha_suffix(1.0, "_") == "_alpha1" and alpha_suffix(0.75, "-") == "-alpha0.75"
    assert alpha_suffix(0.5, "_") == ""  # the default keeps the names results were written under
