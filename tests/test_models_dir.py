"""models/: what ships with the tool. Every artifact loads, names its sources relative to itself (no
absolute path anywhere), the folder stays within 20 MB, and the main command's default config starts
from a supernet that is there."""

import json
import re

import pytest

from conftest import CONFIGS, ROOT

MODELS = ROOT / "models"


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


def _absolute(strings):
    return [s for s in strings if s.startswith(("/", "~")) or (len(s) > 2 and s[1:3] in (":\\", ":/"))
            or "/work/" in s or "/home/" in s or "/tmp/" in s]


def test_models_stay_small_and_hold_no_absolute_paths():
    files = [p for p in MODELS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 1024 * 1024
    for p in files:
        if p.suffix == ".json":
            assert not _absolute(_strings(json.loads(p.read_text()))), p
        elif p.suffix in (".yaml", ".yml", ".md"):
            assert not _absolute(p.read_text().split()), p


def test_every_supernet_loads_with_relative_sources():
    from mcuformer.train import load_checkpoint
    supernets = sorted(MODELS.rglob("supernet.pt"))
    assert supernets
    for p in supernets:
        state = load_checkpoint(p)
        kept = {k: v for k, v in state.items() if k not in ("model", "history")}
        kept["config"] = {k: v for k, v in (state.get("config") or {}).items() if k != "exclude_split"}
        assert not _absolute(_strings(kept)), p
        split = (state.get("config") or {}).get("exclude_split")
        if split:  # named relative to the checkpoint, and resolved to the file beside it on loading
            assert split == str(p.parent / "heldout-split.json") and (p.parent / "heldout-split.json").is_file()


def test_a_supernet_named_by_a_relative_path_finds_its_split_beside_it(monkeypatch):
    # the pipeline once joined the checkpoint's folder onto an already located split, and a relative
    # --supernet gave models/cifar10-zoo/models/cifar10-zoo/heldout-split.json
    from mcuformer.train import load_checkpoint
    from mcuformer.train.checkpoint import recorded_split
    zoo = MODELS / "cifar10-zoo"
    for cwd, rel in ((ROOT, "models/cifar10-zoo/supernet.pt"), (MODELS, "cifar10-zoo/supernet.pt"),
                     (zoo, "supernet.pt")):
        monkeypatch.chdir(cwd)
        split = recorded_split(rel, load_checkpoint(rel))
        assert split.resolve() == (zoo / "heldout-split.json").resolve(), (cwd, rel, split)
        assert split.is_file()


def test_every_int8_model_loads_and_names_its_supernet():
    from mcuformer.quantize.model import QuantModel
    from mcuformer.quantize.validate import validate_quant_model
    from mcuformer.quantize.workflow import recorded_checkpoint
    from mcuformer.space.arch import Arch
    folders = sorted(p.parent for p in MODELS.rglob("params.npz"))
    assert folders
    for d in folders:
        q = validate_quant_model(QuantModel.load(d), str(d))
        assert recorded_checkpoint(q, d).resolve() == (d.parent / "supernet.pt").resolve(), d
        zoo = json.loads((d / "zoo.json").read_text())
        assert zoo["arch"] == q.arch.to_dict()
        # docs/zoo.md gives a model's manifest as `finetune --arch` to fine-tune its subnet again
        assert Arch.load(d / "manifest.json") == q.arch, d
        assert zoo["board"]["name"] == d.name.removeprefix("int8-")
        if d.parent.name == "cifar10-zoo":  # which supernet it was cut from, since supernet.pt is replaced
            assert re.fullmatch(r"[0-9a-f]{64}", zoo.get("supernet_sha256", "")), d


def test_the_main_command_starts_from_a_supernet_that_is_here():
    from mcuformer.pipeline import PipelineConfig
    cfg = PipelineConfig.load(CONFIGS / "pipeline-cifar10.yaml")
    if not cfg.supernet.is_file():
        pytest.fail(f"configs/pipeline-cifar10.yaml names {cfg.supernet}, which is not in models/")
    assert cfg.board == "stm32f746" and cfg.finetune["epochs"] >= 0
    trained = PipelineConfig.load(CONFIGS / "pipeline-cifar10.yaml", train=True)
    assert trained.supernet is None and trained.space and trained.train_config.is_file()


def _zoo_supernet():
    """benchmarks/zoo_supernet.py, the script that writes the zoo manifest."""
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import zoo_supernet
    return zoo_supernet


def test_the_zoo_manifests_stages_add_up_to_its_compute():
    """A warm-restarted supernet's manifest keeps each stage's own compute (the trainer's images_seen is
    cumulative, its epochs and seconds are not); benchmarks/zoo_supernet.py's merge reproduces the total."""
    merge_stages = _zoo_supernet().merge_stages
    manifest = json.loads((MODELS / "cifar10-zoo/manifest.json").read_text())
    stages = manifest.get("stages")
    if not stages:
        pytest.skip("the zoo supernet was trained in one stage")
    first, last = stages[0], stages[-1]
    assert sum(s["compute"]["epochs"] for s in stages) == manifest["compute"]["epochs"]
    assert sum(s["compute"]["images_seen"] for s in stages) == manifest["compute"]["images_seen"]
    if len(stages) == 2:  # the run's compute as the trainer reported it: cumulative images
        run = {**last["compute"], "images_seen": first["compute"]["images_seen"] + last["compute"]["images_seen"]}
        earlier = {"command": first["command"], "compute": first["compute"], "metrics_test_10k": first["metrics_test_10k"]}
        total, merged = merge_stages(earlier, last["command"], run)
        assert total == manifest["compute"] and merged == stages
    assert merge_stages(None, "cmd", {"epochs": 3}) == ({"epochs": 3}, None)


def test_a_third_warm_restart_keeps_every_earlier_stage():
    """Continuing a two-stage supernet appends a third stage: the earlier stages stay as they were (the
    second gains the metrics its manifest measured), each stage keeps its own images, the total adds up."""
    merge_stages = _zoo_supernet().merge_stages
    manifest, runs = None, [({"hardware": "cpu", "epochs": 26, "images_seen": 1000, "train_seconds": 60}, "scratch"),
                            ({"hardware": "cpu", "epochs": 16, "images_seen": 1600, "train_seconds": 40}, "warm 1"),
                            ({"hardware": "gpu", "epochs": 9, "images_seen": 2500, "train_seconds": 7}, "warm 2")]
    for i, (run, command) in enumerate(runs):
        compute, stages = merge_stages(manifest, command, run)
        manifest = {"command": command, "compute": compute, "metrics_test_10k": {"top1": i},
                    **({"stages": stages} if stages else {})}
    assert [s["command"] for s in manifest["stages"]] == ["scratch", "warm 1", "warm 2"]
    assert [s["compute"]["images_seen"] for s in manifest["stages"]] == [1000, 600, 900]
    assert [s.get("metrics_test_10k") for s in manifest["stages"]] == [{"top1": 0}, {"top1": 1}, None]
    assert manifest["compute"] == {"hardware": "cpu, then gpu", "epochs": 51, "images_seen": 2500,
                                   "train_seconds": 107}
    assert _zoo_supernet().is_manifest(manifest)
    assert not _zoo_supernet().is_manifest({**manifest, "stages": [{"command": "x"}]})


def test_a_manifest_without_its_compute_is_not_continued():
    is_manifest = _zoo_supernet().is_manifest
    manifest = json.loads((MODELS / "cifar10-zoo/manifest.json").read_text())
    assert is_manifest(manifest)
    for broken in ({**manifest, "compute": {"epochs": 3}}, {**manifest, "compute": {"epochs": "3", "train_seconds": 1}},
                   {k: v for k, v in manifest.items() if k != "command"}, [manifest], None):
        assert not is_manifest(broken)


def test_every_shipped_teacher_loads_and_its_manifest_names_it():
    from mcuformer.train.teacher import read_teacher
    from mcuformer.utils.io import file_sha256
    for p in sorted(MODELS.rglob("teacher.pt")):
        state = read_teacher(p)
        manifest = json.loads(p.with_suffix(".json").read_text())
        assert manifest["sha256"] == file_sha256(p) and manifest["file"] == p.name
        assert manifest["test_top1"] == state["test_top1"] and manifest["net"]["widths"] == state["widths"]
        split = state["config"]["exclude_split"]  # it never saw the search's held-out images
        assert split and (ROOT / split).resolve() == (p.parent / "heldout-split.json").resolve()
