"""Bad checkpoints and training settings: weights that do not fit their model, a malformed ``augment``
section, tampered counters in a run to resume, a plain pickle. Each gives exit 2 and exactly one stderr
line naming the file and the key at fault -- no traceback, no warning -- and leaves the file as it was.

The cases run through the CLI's own ``main`` in this interpreter; warnings are recorded and counted as
stderr lines (pytest would otherwise swallow what a user sees)."""

import hashlib
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import CONFIGS, ROOT, assert_one_line_error, make_image_folder, run_in_process

TINY = CONFIGS / "cifar10-tiny.yaml"
CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ON_CPU = ["--workers", "0", "--device", "cpu"]
SHORT_RUN = ["--batch-size", "4", *ON_CPU, "--no-progress"]


def run_mcuformer(*args):
    """``run_in_process``, with the warnings the user would see (Python's default filters hide only the
    deprecation kinds) appended to stderr as lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proc = run_in_process(*args)
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if not issubclass(w.category, hidden)]
    proc.stderr = "\n".join([proc.stderr, *shown])
    return proc


def sha256s(*paths: Path) -> dict:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _tampered(state: dict, path: Path, change) -> Path:
    copy = {**state, "model": dict(state["model"]), "config": dict(state["config"]),
            "space": {**state["space"], "super": dict(state["space"]["super"])}}
    change(copy)
    torch.save(copy, path)
    return path


WEIGHTS = {  # name -> (change, words the error line must hold)
    "missing-key": (lambda s: s["model"].pop("blocks.1.norm1.weight"), ["missing blocks.1.norm1.weight"]),
    "extra-key": (lambda s: s["model"].update({"payload.weight": torch.zeros(3)}), ["unexpected payload.weight"]),
    "wrong-shape": (lambda s: s["model"].update({"head.bias": torch.zeros(7)}), ["head.bias has shape [7]"]),
    "int-key": (lambda s: s["model"].update({5: torch.zeros(2)}), ["key 5"]),
    "empty-model": (lambda s: s.update(model={}), ["missing patch_embeds.4.proj.weight (and 57 more)"]),
    "super-embed-dim": (lambda s: s["space"]["super"].update(embed_dim=80), ["has shape", "[80"]),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The user's files: tiny data, the tiny supernet and tampered copies, settings files, a short run."""
    w = tmp_path_factory.mktemp("user")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 2), ("val", 1)):  # the tiny supernet's ten CIFAR-10 classes
        for name in CIFAR10:
            (w / "data" / split / name).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(w / "data" / split / name /
                                                                                         f"{i}.jpg")
    state = torch.load(ROOT / "models" / "cifar10-tiny" / "supernet.pt", weights_only=True)
    for name, (change, _) in WEIGHTS.items():
        _tampered(state, w / f"{name}.pt", change)
    _tampered(state, w / "augment-str.pt", lambda s: s["config"].update(augment="x"))
    with open(w / "plain-pickle.pt", "wb") as f:
        pickle.dump({"format": "mcuformer-supernet-v1"}, f)
    os.mkfifo(w / "pipe.pt")  # never to be opened: a read would wait for a writer for ever
    (w / "augment-str.yaml").write_text("augment: x\n")
    (w / "augment-list.yaml").write_text("augment: [1]\n")
    base = {"space": str(TINY), "train_config": str(CONFIGS / "train-cifar10-cpu.yaml"), "data_path": str(w / "data"),
            "board": "stm32f746", "search": {"population": 2, "generations": 1, "per_class": 1}}
    (w / "pipeline.yaml").write_text(yaml.safe_dump({**base, "supernet": str(w / "missing-key.pt"),
                                                     "output": str(w / "pipeline-run")}))
    # a finished one-epoch run on two classes, to resume
    space = yaml.safe_load(TINY.read_text())
    space.pop("num_classes")
    (w / "space-2.yaml").write_text(yaml.safe_dump(space))
    make_image_folder(w / "data-2", per_class=4, size=16)
    from mcuformer.cli.main import main
    assert main([str(a) for a in ["train", "--space", w / "space-2.yaml", "--data-path", w / "data-2",
                                  "--output", w / "run", "--epochs", "1", *SHORT_RUN]]) == 0
    return w


READERS = {  # the verbs that load a supernet from --checkpoint
    "evaluate": ["evaluate", "--data-path", "{w}/data", *ON_CPU],
    "quantize": ["quantize", "--arch", "smallest", "--output", "{out}/q", "--data-path", "{w}/data",
                 "--calibration-images", "4"],
    "search": ["search", "--output", "{out}/s", "--data-path", "{w}/data", "--population", "2", "--generations", "1",
               "--no-baselines", *ON_CPU],
}
# (id, verb arguments with {w} for the user's folder and {out} for a fresh one, words the error line must hold)
WEIGHT_CASES = [(f"{verb}-{name}", [*args, "--checkpoint", f"{{w}}/{name}.pt"], [f"{name}.pt", *needles])
                for name, (_, needles) in WEIGHTS.items() for verb, args in READERS.items()]
WEIGHT_CASES += [
    ("train-init-from-missing-key", ["train", "--space", TINY, "--data-path", "{w}/data", "--output", "{out}/r",
                                     "--init-from", "{w}/missing-key.pt", "--epochs", "1", *SHORT_RUN],
     ["checkpoint", "missing-key.pt", "missing blocks.1.norm1.weight"]),
    ("train-init-from-int-key", ["train", "--space", TINY, "--data-path", "{w}/data", "--output", "{out}/r",
                                 "--init-from", "{w}/int-key.pt", "--epochs", "1", *SHORT_RUN],
     ["int-key.pt", "key 5"]),
    ("finetune-wrong-shape", ["finetune", "--checkpoint", "{w}/wrong-shape.pt", "--arch", "smallest", "--data-path",
                              "{w}/data", "--output", "{out}/ft", "--epochs", "1", *SHORT_RUN],
     ["checkpoint", "wrong-shape.pt", "head.bias has shape [7]"]),
    ("finetune-empty-model", ["finetune", "--checkpoint", "{w}/empty-model.pt", "--arch", "smallest", "--data-path",
                              "{w}/data", "--output", "{out}/ft", "--epochs", "1", *SHORT_RUN],
     ["empty-model.pt", "missing patch_embeds.4.proj.weight"]),
    ("pipeline-missing-key", ["pipeline", "--config", "{w}/pipeline.yaml", "--no-progress"],
     ["missing-key.pt", "missing blocks.1.norm1.weight"]),
]
SETTINGS_CASES = [
    ("train-config-augment-str", ["train", "--space", TINY, "--config", "{w}/augment-str.yaml", "--data-path",
                                  "{w}/data", "--output", "{out}/r", "--epochs", "1", *SHORT_RUN], ["augment", "'x'"]),
    ("train-config-augment-list", ["train", "--space", TINY, "--config", "{w}/augment-list.yaml", "--data-path",
                                   "{w}/data", "--output", "{out}/r", "--epochs", "1", *SHORT_RUN],
     ["augment", "[1]"]),
    ("evaluate-checkpoint-augment-str", ["evaluate", "--checkpoint", "{w}/augment-str.pt", "--data-path", "{w}/data",
                                         *ON_CPU], ["augment-str.pt", "augment", "'x'"]),
    ("evaluate-plain-pickle", ["evaluate", "--checkpoint", "{w}/plain-pickle.pt", "--data-path", "{w}/data",
                               *ON_CPU], ["plain-pickle.pt", "pickled"]),
    ("train-init-from-pipe", ["train", "--space", TINY, "--data-path", "{w}/data", "--output", "{out}/r",
                              "--init-from", "{w}/pipe.pt", "--epochs", "1", *SHORT_RUN],
     ["--init-from", "pipe.pt", "named pipe"]),
]


def _check(ws, out, args, needles, *extra_needles):
    inputs = sorted(p for p in ws.iterdir() if p.name != "pipeline-run")
    before = sha256s(*inputs)
    args = [str(a).replace("{w}", str(ws)).replace("{out}", str(out)) for a in args]
    line = assert_one_line_error(run_mcuformer(*args), *needles, *extra_needles)
    assert line.startswith(f"mcuformer {args[0]}: error: "), line
    assert sha256s(*inputs) == before


@pytest.mark.parametrize("args,needles", [c[1:] for c in WEIGHT_CASES], ids=[c[0] for c in WEIGHT_CASES])
def test_weights_that_do_not_fit_name_the_file_and_the_first_key(ws, tmp_path, args, needles):
    _check(ws, tmp_path, args, needles, "does not match")


@pytest.mark.parametrize("args,needles", [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_bad_settings_and_foreign_files_give_one_line(ws, tmp_path, args, needles):
    _check(ws, tmp_path, args, needles)


@pytest.mark.parametrize("key,value", [("epoch", "x"), ("step", "x"), ("images_seen", "many"), ("history", 5),
                                       ("epoch_stats", [1]), ("epoch", -5), ("step", -1)],
                         ids=lambda v: str(v))
def test_resume_refuses_tampered_counters_and_keeps_the_run(ws, tmp_path, key, value):
    run = shutil.copytree(ws / "run", tmp_path / "run")
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**state, key: value}, run / "checkpoint.pt")
    before = sha256s(run)
    proc = run_mcuformer("train", "--space", ws / "space-2.yaml", "--data-path", ws / "data-2", "--output",
                         run, "--resume", "--epochs", "2", *SHORT_RUN)
    line = assert_one_line_error(proc, str(run / "checkpoint.pt"), f"'{key}'", repr(value))
    assert line.startswith("mcuformer train: error: "), line
    assert sha256s(run) == before
