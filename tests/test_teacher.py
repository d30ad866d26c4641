"""The CNN teacher: trained by `mcuformer teacher`, resumable, read only when it checks out, and distilled from by
`mcuformer finetune --teacher`, seeing the student's images under its own normalisation."""

import json

import pytest
import torch

from conftest import ROOT, assert_one_line_error, run_cli
from mcuformer.data.transforms import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD
from mcuformer.errors import CheckpointError, ConfigError
from mcuformer.train import load_checkpoint
from mcuformer.train import trainer as trainer_module
from mcuformer.train.teacher import (NormalisedTeacher, TeacherCNN, TeacherConfig, TeacherEnsemble, read_teacher,
                                     teacher_fingerprint, train_teacher)
from mcuformer.space import SearchSpace
from mcuformer.utils.io import file_sha256

ZOO_TINY = ROOT / "models/cifar10-tiny/supernet.pt"
WIDTHS = (8, 16, 16)


def test_the_teacher_sees_the_student_images_under_its_own_normalisation():
    torch.manual_seed(0)
    net = TeacherCNN(10, WIDTHS).eval()
    raw = torch.rand(3, 3, 32, 32)
    as_teacher = (raw - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    as_student = (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    wrapped = NormalisedTeacher(net, (CIFAR_MEAN, CIFAR_STD), (IMAGENET_MEAN, IMAGENET_STD), 32).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapped(as_student), net(as_teacher), rtol=1e-5, atol=1e-5)
        # a student of another size: the images are resized to the teacher's
        assert wrapped(torch.zeros(2, 3, 48, 48)).shape == (2, 10)


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory, cifar_archive):
    out = tmp_path_factory.mktemp("teacher")
    cfg = TeacherConfig(epochs=1, batch_size=64, limit_train=256)
    result = train_teacher(out, data_path=cifar_archive, cfg=cfg, widths=WIDTHS, progress=False)
    return out, cfg, result


def test_train_a_teacher_then_resume_the_finished_run(teacher_run, cifar_archive):
    out, cfg, result = teacher_run
    assert result["test_images"] == 10000 and result["train_images"] == 256 and result["widths"] == list(WIDTHS)
    state = read_teacher(out / "teacher.pt")
    assert state["test_top1"] == result["test_top1"] and 0 <= result["test_top1"] <= 100
    assert {t.dtype for t in state["model"].values() if t.is_floating_point()} == {torch.float16}
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1]
    full = read_teacher(out / "checkpoint.pt")
    assert full["epoch"] == 1 and "optimizer" in full
    # a finished run resumed trains nothing more and measures the same net again
    again = train_teacher(out, data_path=cifar_archive, cfg=cfg, widths=WIDTHS, resume=True, progress=False)
    assert again["test_top1"] == result["test_top1"]
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    with pytest.raises(ConfigError, match="other settings"):
        train_teacher(out, data_path=cifar_archive, cfg=TeacherConfig(epochs=2, batch_size=64, limit_train=256),
                      widths=WIDTHS, resume=True, progress=False)


def test_finetune_distils_from_the_cnn_teacher(teacher_run, tmp_path, cifar_archive):
    out, _, _ = teacher_run
    teacher_file = out / "teacher.pt"
    space = SearchSpace.from_dict(load_checkpoint(ZOO_TINY)["space"])
    teacher = trainer_module._load_teacher(teacher_file, space, 10, torch.device("cpu"), announce=False,
                                           classes=read_teacher(teacher_file)["classes"],
                                           norm=(IMAGENET_MEAN, IMAGENET_STD))
    assert isinstance(teacher, NormalisedTeacher) and not any(p.requires_grad for p in teacher.parameters())
    proc = run_cli("finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft",
                   "--data-path", cifar_archive, "--teacher", teacher_file, "--epochs", 1, "--steps-per-epoch", 2,
                   "--batch-size", 16, "--limit-eval", 32, "--workers", 0, "--device", "cpu", "--no-progress",
                   check=True)
    assert f"teacher: CNN [8, 16, 16] of {teacher_file}" in proc.stdout + proc.stderr
    assert load_checkpoint(tmp_path / "ft")["teacher_sha256"] == file_sha256(teacher_file)


def test_an_ensemble_teaches_with_the_mean_of_its_teachers_predictions():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)) for _ in range(3)]
    for k, net in enumerate(nets):  # logits of different scales: probabilities are averaged, not logits
        net[1].weight.data.mul_(10.0 ** k)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(net(x), -1) for net in nets]).mean(0)
        torch.testing.assert_close(torch.softmax(TeacherEnsemble(nets)(x), -1), mean, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(mean, torch.softmax(torch.stack([net(x) for net in nets]).mean(0), -1), atol=1e-3)


def test_finetune_distils_from_an_ensemble_of_teachers(teacher_run, tmp_path, cifar_archive):
    first = teacher_run[0] / "teacher.pt"
    state = read_teacher(first)
    state["model"] = {k: (t * 0.5 if k.startswith("head") else t) for k, t in state["model"].items()}
    second = tmp_path / "second.pt"
    torch.save(state, second)
    both = teacher_fingerprint([first, second])
    assert both == teacher_fingerprint([second, first]) and both not in (file_sha256(first), file_sha256(second))
    assert teacher_fingerprint(first) == file_sha256(first) and teacher_fingerprint(None) == "none"
    args = ["finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft", "--data-path",
            cifar_archive, "--epochs", 1, "--steps-per-epoch", 2, "--batch-size", 16, "--limit-eval", 32,
            "--workers", 0, "--device", "cpu", "--no-progress"]
    proc = run_cli(*args, "--teacher", first, second, check=True)
    said = proc.stdout + proc.stderr
    assert f"teacher: CNN [8, 16, 16] of {first}" in said and f"teacher: CNN [8, 16, 16] of {second}" in said
    assert load_checkpoint(tmp_path / "ft")["teacher_sha256"] == both
    # the second teacher is heard: the seeded run taught by the first alone ends with another loss
    run_cli(*args[:6], tmp_path / "ft1", *args[7:], "--teacher", first, check=True)
    losses = [load_checkpoint(tmp_path / run)["history"][-1]["train_loss"] for run in ("ft", "ft1")]
    assert losses[0] != losses[1]
    # resumed with one of them, the targets would change halfway: refused, the checkpoint kept
    before = (tmp_path / "ft" / "checkpoint.pt").read_bytes()
    assert_one_line_error(run_cli(*args, "--teacher", first, "--resume"), "another teacher")
    assert (tmp_path / "ft" / "checkpoint.pt").read_bytes() == before
    copy = tmp_path / "copy.pt"
    copy.write_bytes(first.read_bytes())
    for teachers, says in (([first, first], "named twice"), ([first, copy], "same teacher checkpoint twice"),
                           (["largest", first], "cannot be part of an ensemble")):
        assert_one_line_error(run_cli(*args[:6], tmp_path / "ft2", *args[7:], "--teacher", *teachers), says)
        assert not (tmp_path / "ft2" / "checkpoint.pt").exists()


def _tampered(teacher_run, tmp_path, change) -> str:
    state = read_teacher(teacher_run[0] / "teacher.pt")
    change(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as e:
        read_teacher(path)
    return str(e.value)


def test_a_tampered_teacher_is_refused(teacher_run, tmp_path):
    def nan(state):
        next(t for t in state["model"].values() if t.is_floating_point())[0] = float("nan")
    assert "NaN" in _tampered(teacher_run, tmp_path, nan)
    assert "do not fit" in _tampered(teacher_run, tmp_path, lambda s: s.update(widths=[8, 16, 32]))
    assert "'std'" in _tampered(teacher_run, tmp_path, lambda s: s.update(std=[0.2, 0.0, 0.2]))
    assert "'classes'" in _tampered(teacher_run, tmp_path, lambda s: s.update(classes=[]))
    assert "not a teacher" in _tampered(teacher_run, tmp_path, lambda s: s.update(format="other"))
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes((teacher_run[0] / "teacher.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot load teacher"):
        read_teacher(truncated)


def test_teacher_cli_bad_input(teacher_run, tmp_path, cifar_archive):
    out = teacher_run[0]
    before = (out / "teacher.pt").read_bytes()
    assert_one_line_error(run_cli("teacher", "--output", out, "--epochs", 1), "not empty", "--force")
    assert_one_line_error(run_cli("teacher", "--output", out, "--resume", "--force"), "pass one")
    assert_one_line_error(run_cli("teacher", "--output", tmp_path / "t", "--exclude-split", tmp_path / "no.json"),
                          "no.json")
    assert_one_line_error(run_cli("teacher", "--output", tmp_path / "t", "--lr", "nan"), "--lr")
    assert (out / "teacher.pt").read_bytes() == before
    # a teacher of other classes cannot teach this data's student
    other = tmp_path / "other.pt"
    state = read_teacher(out / "teacher.pt")
    state["classes"] = [f"c{i}" for i in range(10)]
    torch.save(state, other)
    proc = run_cli("finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft",
                   "--data-path", cifar_archive, "--teacher", other, "--epochs", 1, "--steps-per-epoch", 1,
                   "--workers", 0, "--device", "cpu", "--no-progress")
    assert_one_line_error(proc, "other classes")
    assert not (tmp_path / "ft" / "checkpoint.pt").exists()


def test_a_damaged_checkpoint_is_not_resumed(teacher_run, tmp_path, cifar_archive):
    _, cfg, _ = teacher_run
    full = read_teacher(teacher_run[0] / "checkpoint.pt")
    for name, change in (("epoch", lambda s: s.update(epoch="one")), ("optimizer", lambda s: s.pop("optimizer")),
                         ("seconds", lambda s: s.update(seconds=float("nan")))):
        out = tmp_path / name
        out.mkdir()
        state = dict(full)
        change(state)
        torch.save(state, out / "checkpoint.pt")
        before = (out / "checkpoint.pt").read_bytes()
        with pytest.raises(CheckpointError, match="cannot resume"):
            train_teacher(out, data_path=cifar_archive, cfg=cfg, widths=WIDTHS, resume=True, progress=False)
        assert (out / "checkpoint.pt").read_bytes() == before and not (out / "log.jsonl").exists()
