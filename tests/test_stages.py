"""The pipeline's stage record: a stage reruns when an input changes (and says which), is kept when
nothing changed, has its own old outputs removed before a fresh run and nothing else, and a tampered
record is refused in one line."""

import json
import os

import pytest

from mcuformer.errors import ConfigError
from mcuformer.stages import StageLedger, data_identity, digest_files, digest_settings


def test_unchanged_inputs_keep_a_finished_stage_and_a_change_reruns_it(tmp_path):
    out = tmp_path / "search"
    ledger = StageLedger(tmp_path)
    plan = ledger.plan("search", {"checkpoint": "a", "board": "b"}, done=False, owned=[out])
    assert plan.run and not plan.fresh and plan.line is None  # a first run says nothing
    out.mkdir()
    (out / "result.json").write_text("{}")
    ledger.finish("search")

    again = StageLedger(tmp_path)  # read back from stages.json
    assert not again.plan("search", {"board": "b", "checkpoint": "a"}, done=True, owned=[out]).run
    assert again.ran == []
    plan = again.plan("search", {"checkpoint": "new", "board": "b"}, done=True, owned=[out])
    assert plan.run and plan.fresh and plan.line == "rerun search: checkpoint changed"
    assert not out.exists() and again.ran == ["search"]
    assert json.loads((tmp_path / "stages.json").read_text())["stages"]["search"] == {
        "inputs": {"checkpoint": "new", "board": "b"}, "complete": False}


def test_interrupted_resumable_stage_resumes_and_a_missing_output_reruns(tmp_path):
    ckpt = tmp_path / "supernet" / "checkpoint.pt"
    ledger = StageLedger(tmp_path)
    ledger.plan("train", {"space": "s"}, done=False, owned=[ckpt.parent], resumable=True)
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"half")  # killed before finish()
    plan = ledger.plan("train", {"space": "s"}, done=False, owned=[ckpt.parent], resumable=True, state="epoch 1 of 2")
    assert plan.run and not plan.fresh and plan.line == "resume train: epoch 1 of 2" and ckpt.exists()

    report = tmp_path / "verify.json"
    ledger.plan("verify", {"export": "e"}, done=False, owned=[report])
    ledger.finish("verify")
    plan = ledger.plan("verify", {"export": "e"}, done=False, owned=[report])
    assert plan.run and plan.line == "rerun verify: its output is missing or unfinished"


def test_old_outputs_without_a_record_rerun_and_only_owned_paths_go(tmp_path):
    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "manifest.json").write_text("{}")
    (tmp_path / "keep.txt").write_text("the user's")
    plan = StageLedger(tmp_path).plan("quantize", {"search": "x"}, done=True, owned=[tmp_path / "int8"])
    assert plan.run and plan.fresh and "no recorded fingerprint" in plan.line
    assert not (tmp_path / "int8").exists() and (tmp_path / "keep.txt").read_text() == "the user's"
    with pytest.raises(ValueError, match="not inside the run folder"):
        StageLedger(tmp_path / "run")._remove([tmp_path / "keep.txt"])
    assert (tmp_path / "keep.txt").exists()


@pytest.mark.parametrize("text", ["[1, 2]", '{"format": "mcuformer-stages-v1", "stages": {"train": {"inputs": 3}}}',
                                  "{not json"])
def test_tampered_record_is_one_config_error(tmp_path, text):
    (tmp_path / "stages.json").write_text(text)
    with pytest.raises(ConfigError, match="stages.json"):
        StageLedger(tmp_path)


def _follows_content_not_time(path, identity):
    """``identity(path)`` stays when only the file's time changes, and changes with one byte of content."""
    path.write_bytes(b"content")
    before = identity(path)
    os.utime(path, ns=(1, 1))
    assert identity(path) == before
    path.write_bytes(b"contenz")
    assert identity(path) != before


def test_digests_follow_content_not_order_or_time(tmp_path):
    a = tmp_path / "a.bin"
    _follows_content_not_time(a, digest_files)
    assert digest_files(tmp_path / "gone.bin") != digest_files(a)  # a missing file is a state of its own
    same = digest_settings({"x": 1, "y": [2]})
    assert same == digest_settings({"y": [2], "x": 1}) and same != digest_settings({"x": 2, "y": [2]})
    folder = tmp_path / "data"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "1.jpg").write_bytes(b"1")
    ident = data_identity(folder)
    assert data_identity(folder) == ident
    (folder / "train" / "2.jpg").write_bytes(b"22")
    assert data_identity(folder) != ident
    # an archive is its content: a new time alone (a restored share) is the same data
    _follows_content_not_time(tmp_path / "data.tar.gz", data_identity)


def test_code_digest_follows_the_subpackages_source(tmp_path):
    from mcuformer.stages import code_digest
    for sub, name, text in (("codegen", "emit.py", "x = 1\n"), ("codegen/library", "k.c", "int k;\n"),
                            ("verify", "engine.py", "y = 2\n")):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        (tmp_path / sub / name).write_text(text)
    before = code_digest("codegen", root=tmp_path)
    assert code_digest("codegen", root=tmp_path) == before
    (tmp_path / "codegen/__pycache__").mkdir()
    (tmp_path / "codegen/__pycache__/emit.pyc").write_bytes(b"\0")  # compiled files are not the source
    (tmp_path / "verify/engine.py").write_text("y = 3\n")  # another subpackage
    assert code_digest("codegen", root=tmp_path) == before
    (tmp_path / "codegen/library/k.c").write_text("int k = 1;\n")  # a kernel file is code too
    assert code_digest("codegen", root=tmp_path) != before
    with pytest.raises(ValueError, match="no mcuformer subpackage 'nope'"):
        code_digest("nope", root=tmp_path)
    assert code_digest("codegen", "memory") != code_digest("codegen")  # the installed package
