"""The training issue's features: the device-resident input path, the sandwich rule with in-place
distillation, warm restarts from a weights-only supernet, subnet fine-tuning, and the one-call device script
(dry-run on the CPU, as a GPU slot would run it)."""

import json
import os
import random
import signal
import subprocess
import sys

import pytest
import torch

from conftest import CONFIGS, ROOT, assert_one_line_error, cpu_train_config, run_cli
from mcuformer.data import build_eval_transform, open_split
from mcuformer.data.device_batches import DeviceBatches
from mcuformer.data.transforms import CIFAR_MEAN, CIFAR_STD, AugmentConfig
from mcuformer.errors import ConfigError
from mcuformer.quantize.workflow import load_subnet
from mcuformer.space import SearchSpace
from mcuformer.supernet import SuperViT
from mcuformer.train import TrainConfig, load_checkpoint, train_supernet
from mcuformer.train import trainer as trainer_module
from mcuformer.train.trainer import check_sampling_cap, step_archs
from mcuformer.train.warm_start import init_weights_from, write_weights_only

TINY = CONFIGS / "cifar10-tiny.yaml"
ZOO = CONFIGS / "cifar10-zoo.yaml"
ZOO_TINY = ROOT / "models/cifar10-tiny/supernet.pt"
QUICK = dict(epochs=2, batch_size=32, steps_per_epoch=4, limit_train=512, limit_eval=64, workers=0,
             warmup_epochs=0.5, device="cpu")


def _cfg(**kw):
    return cpu_train_config(**{**QUICK, **kw})


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def val_split(cifar_archive):
    return open_split(cifar_archive, "val")


# ---- the device-resident input path ----

def test_device_eval_batches_equal_the_eval_transform(val_split):
    cfg = AugmentConfig(mean=CIFAR_MEAN, std=CIFAR_STD)
    batches = DeviceBatches(val_split, cfg, 32, "cpu", train=False, progress=False)
    idx = [0, 17, 4999, 9999]
    x, y = batches.batch(idx)
    t = build_eval_transform(cfg, 32, val_split.source_size)
    ref = torch.stack([t(val_split.raw(i)) for i in idx])
    assert torch.allclose(x, ref, atol=1e-5) and y.tolist() == [val_split.targets[i] for i in idx]


def test_device_pad_crop_and_flip_are_exact_crops_of_the_reflect_padded_image(val_split):
    cfg = AugmentConfig(crop="pad-crop", hflip=True, randaugment=False, random_erasing=0.0, mean=(0, 0, 0),
                        std=(1 / 255, 1 / 255, 1 / 255))  # normalisation to raw pixel values
    batches = DeviceBatches(val_split, cfg, 32, "cpu", progress=False)
    idx = list(range(0, 640, 10))
    x, _ = batches.batch(idx, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(batches.images[idx].float(), (4, 4, 4, 4), mode="reflect")
    flips = 0
    for j in range(len(idx)):
        crops = {(oy, ox, f) for oy in range(9) for ox in range(9) for f in (0, 1)
                 if torch.equal((padded[j, :, oy:oy + 32, ox:ox + 32].flip(-1) if f else
                                 padded[j, :, oy:oy + 32, ox:ox + 32]), x[j])}
        assert crops, f"sample {j} is not a (flipped) crop of its padded image"
        flips += min(f for _, _, f in crops)
    assert 10 < flips < 54  # about half flipped
    again, _ = batches.batch(idx, torch.Generator().manual_seed(3))
    other, _ = batches.batch(idx, torch.Generator().manual_seed(4))
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_device_randaugment_and_erasing_vary_within_a_batch(val_split):
    cfg = AugmentConfig(crop="none", hflip=False, randaugment=True, random_erasing=1.0, mean=CIFAR_MEAN,
                        std=CIFAR_STD)
    batches = DeviceBatches(val_split, cfg, 32, "cpu", aug_groups=8, progress=False)
    idx = [5] * 64  # one image, 64 times: every difference is augmentation
    torch.manual_seed(0)
    x, _ = batches.batch(idx, torch.Generator().manual_seed(0))
    assert len({x[i].sum().item() for i in range(64)}) > 32
    zeros = (x == 0).all(dim=1).flatten(1).sum(1)  # erased pixels are 0 after normalisation
    assert (zeros >= 0.02 * 1024 * 0.5).all() and (zeros <= 0.34 * 1024).all()


def test_device_path_resumes_exactly_after_sigterm(tmp_path, cifar_archive, monkeypatch):
    space = SearchSpace.load(TINY)
    kw = dict(data_on_device="on", sampling="sandwich", distill="inplace")
    kw["augment"] = TrainConfig.load(CONFIGS / "train-cifar10-gpu.yaml").augment  # RandAugment, erasing, cutmix
    train_supernet(space, tmp_path / "a", _cfg(**kw), cifar_archive, progress=False)
    real_step, calls = trainer_module._train_step, {"n": 0}

    def step_then_signal(*args, **k):
        loss = real_step(*args, **k)
        calls["n"] += 1
        if calls["n"] == 6:
            signal.raise_signal(signal.SIGTERM)
        return loss

    monkeypatch.setattr(trainer_module, "_train_step", step_then_signal)
    assert train_supernet(space, tmp_path / "b", _cfg(**kw), cifar_archive, progress=False)["interrupted"]
    monkeypatch.setattr(trainer_module, "_train_step", real_step)
    train_supernet(space, tmp_path / "b", _cfg(**kw), cifar_archive, resume=True, progress=False)
    _same(load_checkpoint(tmp_path / "a")["model"], load_checkpoint(tmp_path / "b")["model"])


# ---- sandwich rule with in-place distillation ----

def test_sandwich_puts_the_teacher_first_and_draws_the_random_ones():
    space = SearchSpace.load(TINY)
    archs = step_archs(space, 10, "sandwich", seed=0, global_step=7, sandwich_random=2)
    assert len(archs) == 4 and archs[0] == space.largest(10) and archs[1] == space.smallest(10)
    assert step_archs(space, 10, "sandwich", 0, 7, 2) == archs  # a pure function of (seed, step)
    with pytest.raises(ConfigError, match="sandwich"):
        TrainConfig(distill="inplace", sampling="uniform")
    with pytest.raises(ConfigError, match="distill_alpha"):
        TrainConfig(distill_alpha=float("nan"))


def test_a_parameter_cap_keeps_every_draw_within_it_and_refuses_impossible_caps():
    space = SearchSpace.load(ZOO)
    sizes = sorted(space.sample(random.Random(i), 10).num_params() for i in range(400))
    cap = sizes[len(sizes) // 2]  # the median: about half of the uniform draws pass
    for step in range(60):
        capped = step_archs(space, 10, "uniform", 0, step, max_params=cap)
        assert capped[0].num_params() <= cap
        assert step_archs(space, 10, "uniform", 0, step, max_params=cap) == capped  # still a pure function
        sandwich = step_archs(space, 10, "sandwich", 0, step, 2, max_params=cap)
        assert sandwich[0] == space.largest(10) and all(a.num_params() <= cap for a in sandwich[2:])
    uncapped = [step_archs(space, 10, "uniform", 0, s)[0].num_params() for s in range(60)]
    assert max(uncapped) > cap  # the cap changed what was drawn
    assert 0.3 < check_sampling_cap(space, 10, cap) < 0.7
    assert check_sampling_cap(space, 10, 0) == 1.0
    smallest = space.smallest(10).num_params()
    with pytest.raises(ConfigError, match="below the smallest subnet"):
        check_sampling_cap(space, 10, smallest - 1)
    with pytest.raises(ConfigError, match="keeps 0.0%"):
        check_sampling_cap(space, 10, smallest)
    with pytest.raises(ConfigError, match="sample_max_params"):
        TrainConfig(sample_max_params=-5)


def test_inplace_distillation_changes_what_the_small_subnets_learn(tmp_path, cifar_archive):
    space = SearchSpace.load(TINY)
    plain = train_supernet(space, tmp_path / "a", _cfg(epochs=1, sampling="sandwich"), cifar_archive, progress=False)
    taught = train_supernet(space, tmp_path / "b", _cfg(epochs=1, sampling="sandwich", distill="inplace"),
                            cifar_archive, progress=False)
    a, b = load_checkpoint(tmp_path / "a")["model"], load_checkpoint(tmp_path / "b")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert plain["history"][0]["train_loss"] != taught["history"][0]["train_loss"]


# ---- warm restart and fine-tuning ----

def test_init_from_a_weights_only_fp16_supernet_loads_it_exactly(tmp_path):
    space = SearchSpace.load(TINY)
    model = SuperViT(space, 10)
    report = init_weights_from(model, ZOO_TINY, space)
    saved = torch.load(ZOO_TINY, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k].float()), k
    assert report["epochs_before"] == 12 and report["images_seen"] > 0
    write_weights_only(ZOO_TINY, tmp_path / "half.pt")
    half = torch.load(tmp_path / "half.pt", weights_only=True)
    assert "optimizer" not in half and all(v.dtype == torch.float16 for v in half["model"].values())


def test_train_init_from_prints_its_report_and_counts_images(tmp_path, cifar_archive):
    out = tmp_path / "warm"
    proc = run_cli("train", "--space", TINY, "--config", CONFIGS / "train-cifar10-cpu.yaml", "--data-path",
                   cifar_archive, "--output", out, "--init-from", ZOO_TINY, "--epochs", 1, "--steps-per-epoch", 2,
                   "--batch-size", 16, "--limit-eval", 32, "--workers", 0, "--device", "cpu", "--no-progress",
                   check=True)
    assert "init-from" in proc.stdout + proc.stderr and "12 epochs" in proc.stdout + proc.stderr
    before = load_checkpoint(ZOO_TINY)
    after = load_checkpoint(out)
    assert after["images_seen"] == before["global_step"] * before["config"]["batch_size"] + 32
    assert after["epoch"] == 1  # a fresh schedule
    other = run_cli("train", "--space", CONFIGS / "cifar10.yaml", "--data-path", cifar_archive, "--output",
                    tmp_path / "x", "--init-from", ZOO_TINY, "--epochs", 1, "--device", "cpu")
    assert_one_line_error(other, "another search space")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "checkpoint.pt").write_bytes(ZOO_TINY.read_bytes())
    resumed = run_cli("train", "--space", TINY, "--data-path", cifar_archive, "--output", tmp_path / "w", "--resume",
                      "--device", "cpu")
    assert_one_line_error(resumed, "weights-only")


def test_finetune_a_subnet_with_the_teacher_then_quantize_it_then_let_it_teach(tmp_path, cifar_archive):
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", out, "--data-path",
                   cifar_archive, "--epochs", 1, "--steps-per-epoch", 3, "--batch-size", 16, "--limit-eval", 64,
                   "--workers", 0, "--device", "cpu", "--no-progress", check=True)
    assert "before" in proc.stdout and "after" in proc.stdout
    state = load_checkpoint(out)
    space = SearchSpace.from_dict(state["space"])
    assert state["finetuned_arch"] == space.smallest(10).to_dict()
    hist = state["history"]
    assert hist[0]["epoch"] == 0 and "subnet" in hist[0]["eval"] and hist[-1]["epoch"] == 1
    before = load_checkpoint(ZOO_TINY)["model"]
    assert any(not torch.equal(before[k].float(), state["model"][k]) for k in before)
    q = run_cli("quantize", "--checkpoint", out / "checkpoint.pt", "--arch", "smallest", "--output", tmp_path / "q",
                "--data-path", cifar_archive, "--calibration-images", 16)
    assert q.returncode == 0, q.stderr
    assert (tmp_path / "q").is_dir()

    # self-distillation: the fine-tuned subnet teaches (not the supernet's largest), as it is saved
    teacher = trainer_module._load_teacher(out / "checkpoint.pt", space, 10, torch.device("cpu"), announce=False)
    assert teacher.arch == space.smallest(10)
    reference, _ = load_subnet(out / "checkpoint.pt", "smallest")
    images = torch.randn(4, 3, 32, 32)
    assert torch.equal(teacher(images), reference(images))
    again = run_cli("finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft2",
                    "--data-path", cifar_archive, "--teacher", out / "checkpoint.pt", "--epochs", 1,
                    "--steps-per-epoch", 2, "--batch-size", 16, "--limit-eval", 32, "--workers", 0, "--device",
                    "cpu", "--no-progress", check=True)
    assert f"its fine-tuned subnet of {out / 'checkpoint.pt'}" in again.stdout + again.stderr
    assert load_checkpoint(tmp_path / "ft2")["epoch"] == 1
    # a resume keeps its teacher: another one is refused, the same one continues
    resume = ["finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft2", "--data-path",
              cifar_archive, "--epochs", 2, "--steps-per-epoch", 2, "--batch-size", 16, "--limit-eval", 32,
              "--workers", 0, "--device", "cpu", "--no-progress", "--resume"]
    before = (tmp_path / "ft2" / "checkpoint.pt").read_bytes()
    assert_one_line_error(run_cli(*resume, "--teacher", "none"), "another teacher")
    assert (tmp_path / "ft2" / "checkpoint.pt").read_bytes() == before
    run_cli(*resume, "--teacher", out / "checkpoint.pt", check=True)
    assert load_checkpoint(tmp_path / "ft2")["epoch"] == 2
    for bad, needle in ((tmp_path / "nothing.pt", "not 'largest', 'none' or a checkpoint"),
                        (ROOT / "models/cifar10-zoo/supernet.pt", "another search space")):
        proc = run_cli("finetune", "--checkpoint", ZOO_TINY, "--arch", "smallest", "--output", tmp_path / "ft3",
                       "--data-path", cifar_archive, "--teacher", bad, "--epochs", 1, "--steps-per-epoch", 1,
                       "--workers", 0, "--device", "cpu", "--no-progress")
        assert_one_line_error(proc, needle)
        assert not (tmp_path / "ft3" / "checkpoint.pt").exists()


def test_finetune_a_finer_token_grid_from_the_zoo_supernet(tmp_path, cifar_archive):
    """The zoo's subnets take two pools (8x8 tokens); one that skips the second (16x16) fine-tunes from the
    supernet moved to that grid, taught by the supernet's largest subnet in its own space, and quantizes."""
    import dataclasses

    space = SearchSpace.load(ZOO)
    arch = dataclasses.replace(space.smallest(10), stem_pool=(True, False))
    assert not space.contains(arch) and arch.num_tokens == 256
    arch.save(tmp_path / "grid16.yaml")
    out = tmp_path / "ft"
    proc = run_cli("finetune", "--checkpoint", ROOT / "models/cifar10-zoo/supernet.pt", "--arch",
                   tmp_path / "grid16.yaml", "--output", out, "--data-path", cifar_archive, "--epochs", 1,
                   "--steps-per-epoch", 2, "--batch-size", 8, "--limit-eval", 16, "--workers", 0, "--device", "cpu",
                   "--no-progress", check=True)
    log = proc.stdout + proc.stderr
    assert f"init-from {out / 'token-grids.pt'}" in log and "space cifar10-zoo-finer-grids" in log
    assert "teacher: E192 D8 c48P-EP" in log  # the supernet's largest, on its own 8x8 grid
    state = load_checkpoint(out)
    assert set(state["space"]["stem_pool"]) == {True, False} and state["finetuned_arch"] == arch.to_dict()
    assert state["history"][-1]["epoch"] == 1
    q = run_cli("quantize", "--checkpoint", out / "checkpoint.pt", "--arch", tmp_path / "grid16.yaml", "--output",
                tmp_path / "q", "--data-path", cifar_archive, "--calibration-images", 16)
    assert q.returncode == 0, q.stderr
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["arch"]["stem_pool"] == [True, False]


# ---- the one-call device script ----

@pytest.mark.slow
def test_device_script_dry_run_fits_a_gpu_slot(tmp_path, cifar_archive):
    """The whole slot on the CPU. Its first training attempt fails, as bf16 did on the first real slot (a
    stand-in python refuses `mcuformer train` without --amp off), so the fp32 retry must save the slot; then
    two subnets are fine-tuned at once from the supernet just trained (two bad FT_ARCHS entries are skipped,
    not fatal), the eight files come back, and benchmarks/zoo_supernet.py packages them, drawing the curves
    the slot left out."""
    out = tmp_path / "out"
    python = tmp_path / "python"
    python.write_text('#!/usr/bin/env bash\n'
                      'if [ "$1 $2 $3" = "-m mcuformer train" ] && [[ " $* " != *" --amp off "* ]]; then\n'
                      '  echo "mcuformer train: error: training diverged (injected)" >&2; exit 2\nfi\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    specs = "largest=largest bad/name=largest smallest=smallest lost=nope.yaml"
    proc = subprocess.run(["bash", "scripts/device_train.sh", "--dry-run", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900,
                          env={**os.environ, "DATA": str(cifar_archive), "PYTHON": str(python), "FT_ARCHS": specs})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "FT_ARCHS entry 'bad/name=largest' is not NAME=ARCH" in proc.stderr
    assert "fine-tune lost: arch nope.yaml not found; skipped" in proc.stderr
    log = (out / "train.log").read_text()
    assert "training diverged (injected)" in log and "device_train: train exited 2" in log
    assert "retrying once in fp32 on the DataLoader path" in log and "device_train: retry exited 0" in log
    files = sorted(p.name for p in out.iterdir())
    assert {"supernet-fp16.pt", "log.jsonl", "run.json", "train.log", "finetune-largest-fp16.pt",
            "finetune-smallest-fp16.pt"} <= set(files) and "curves.png" not in files
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    assert all(p.is_file() for p in out.iterdir())
    state = load_checkpoint(out / "supernet-fp16.pt")
    assert "optimizer" not in state and state["epoch"] == 3
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert len((out / "log.jsonl").read_text().splitlines()) == 3
    record = json.loads((out / "run.json").read_text())
    assert record["train_exit"] == 0 and record["images_seen"] == 3 * 3 * 16 and record["retried_in_fp32"]
    assert record["config"] == "configs/train-cifar10-zoo-gpu.yaml"
    assert json.loads((out / "input_path_throughput.json").read_text())["rows"][1]["path"] == "device-resident"
    # the fine-tunes: 2 epochs each of the tiny space's largest and smallest subnets, from the fp32 retry's
    # supernet, at the same time: each started before the other ended
    clocks = [(record["finetune"][n]["started_at"], record["finetune"][n]["ended_at"])
              for n in ("largest", "smallest")]
    assert max(start for start, _ in clocks) < min(end for _, end in clocks)
    assert "run-fp32/checkpoint.pt --arch largest" in log and "run-fp32/checkpoint.pt --arch smallest" in log
    assert "--checkpoint-every-s 60" in log and "[smallest] done: 2 epochs" in log
    assert "teacher: CNN [64, 256, 256] of models/cifar10-zoo/teacher.pt" in log  # the shipped teacher, by default
    space = None
    for name in ("largest", "smallest"):
        tuned = load_checkpoint(out / f"finetune-{name}-fp16.pt")
        space = SearchSpace.from_dict(tuned["space"])
        assert tuned["finetuned_arch"] == getattr(space, name)(10).to_dict() and tuned["epoch"] == 2
        assert "optimizer" not in tuned and all(v.dtype == torch.float16 for v in tuned["model"].values()
                                                if v.is_floating_point())
        assert any(not torch.equal(state["model"][k], tuned["model"][k]) for k in state["model"])
        ft = record["finetune"][name]
        assert ft["file"] == f"finetune-{name}-fp16.pt" and ft["epochs_done"] == 2 and ft["exit"] == 0
        assert ft["last_eval"]["eval"]["subnet"]["count"] == 64 and ft["boards"] == []
    assert set(record["finetune"]) == {"largest", "smallest"}

    # packaging: the supernet into a models/ folder, its curves drawn from the log
    models = tmp_path / "models"
    proc = subprocess.run([sys.executable, "benchmarks/zoo_supernet.py", "--run", str(out), "--output", str(models),
                           "--command", "bash scripts/device_train.sh (dry run)", "--hardware", "CPU"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (models / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((models / "manifest.json").read_text())
    assert manifest["compute"]["epochs"] == 3 and manifest["space"]["name"] == space.name
    assert set(manifest["metrics_test_10k"]) == {"largest", "smallest"}


@pytest.mark.slow
def test_device_script_can_spend_the_slot_on_fine_tunes_alone(tmp_path, cifar_archive):
    """TRAIN_S=0: no supernet is trained (the zoo's stays as it is); the fine-tunes start from INIT, and
    without a supernet to start from the script stops at once, before it has used the slot."""
    env = {**os.environ, "DATA": str(cifar_archive), "TRAIN_S": "0"}
    script = ["bash", "scripts/device_train.sh", "--dry-run"]
    proc = subprocess.run([*script, str(tmp_path / "none")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "give a supernet file as INIT" in proc.stderr
    assert not any((tmp_path / "none").iterdir())
    out = tmp_path / "out"
    proc = subprocess.run([*script, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**env, "INIT": str(ZOO_TINY)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (out / "train.log").read_text()
    assert "-m mcuformer train" not in log and "no supernet training" in log
    assert f"finetune --checkpoint {ZOO_TINY} --arch largest" in log
    files = {p.name for p in out.iterdir()}
    assert {"finetune-largest-fp16.pt", "finetune-smallest-fp16.pt", "run.json", "train.log"} <= files
    assert "supernet-fp16.pt" not in files and len(files) <= 8
    record = json.loads((out / "run.json").read_text())
    assert record["supernet_trained"] is False and record["init_from"] == str(ZOO_TINY)
    assert {n: r["epochs_done"] for n, r in record["finetune"].items()} == {"largest": 2, "smallest": 2}
    tuned = load_checkpoint(out / "finetune-smallest-fp16.pt")
    zoo = load_checkpoint(ZOO_TINY)
    assert tuned["space"] == zoo["space"]
    assert tuned["finetuned_arch"] == SearchSpace.from_dict(zoo["space"]).smallest(10).to_dict()


def test_every_shipped_training_config_validates():
    """A misspelt key or an impossible value in a shipped recipe would stop a GPU slot at its start: each
    train-*/finetune-* YAML must validate on its own, as `--config` checks it."""
    from mcuformer.utils.io import read_structured
    recipes = sorted(CONFIGS.glob("train-*.yaml")) + sorted(CONFIGS.glob("finetune-*.yaml"))
    assert {"train-cifar10-zoo-gpu.yaml", "finetune-cifar10-zoo-gpu.yaml",
            "finetune-cifar10-zoo-gpu-strong.yaml"} <= {p.name for p in recipes}
    for path in recipes:
        cfg = TrainConfig.from_dict(read_structured(path) or {}, where=str(path))
        assert cfg.batch_size > 0, path
    strong = TrainConfig.from_dict(read_structured(CONFIGS / "finetune-cifar10-zoo-gpu-strong.yaml"))
    assert strong.augment.randaugment and strong.augment.cutmix == 1.0 and strong.data_on_device == "off"
    with pytest.raises(ConfigError, match="mixup_swich_prob"):
        TrainConfig.from_dict({"augment": {"mixup_swich_prob": 0.5}}, where="typo.yaml")


@pytest.mark.parametrize("setting", ["CONFIG", "FT_CONFIG", "SPACE"])
def test_device_script_refuses_a_missing_recipe_before_it_runs_anything(setting, tmp_path, cifar_archive):
    """A typo in a recipe's path once trained the supernet and then failed every fine-tune, exit 0 (FT_CONFIG),
    or failed the training twice (CONFIG): now one line and exit 2 before the slot is spent."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "scripts/device_train.sh", "--dry-run", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60,
                          env={**os.environ, "DATA": str(cifar_archive), setting: str(tmp_path / "nope.yaml")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "nope.yaml not found" in proc.stderr and not any(out.iterdir())
