import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import CONFIGS, ROOT, cpu_train_config, run_cli
from mcuformer.space import SearchSpace
from mcuformer.train import load_checkpoint, train_supernet
from mcuformer.train import trainer as trainer_module

TINY = CONFIGS / "cifar10-tiny.yaml"
QUICK = dict(epochs=2, batch_size=32, steps_per_epoch=6, limit_train=1024, limit_eval=100, workers=0,
             warmup_epochs=0.5, device="cpu")


def _cfg(**kw):
    return cpu_train_config(**{**QUICK, **kw})


def _weights(path):
    return load_checkpoint(path)["model"]


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_is_weights_only_and_complete(tmp_path, cifar_archive):
    train_supernet(SearchSpace.load(TINY), tmp_path / "run", _cfg(epochs=1), cifar_archive, progress=False)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["format"] == "mcuformer-supernet-v1" and state["epoch"] == 1 and state["step"] == 0
    assert {"model", "optimizer", "space", "config", "history", "classes"} <= set(state)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 1 and "largest" in log[0]["eval"]


@pytest.mark.parametrize("signal_after,saved_at", [(9, (1, 3)), (6, (0, 6))])
def test_sigterm_resumes_exactly(tmp_path, cifar_archive, monkeypatch, signal_after, saved_at):
    """SIGTERM in the middle of epoch 2, and right after the last step of epoch 1 (before its
    evaluation): the resumed run ends with the uninterrupted run's weights, bit for bit."""
    space = SearchSpace.load(TINY)
    train_supernet(space, tmp_path / "a", _cfg(), cifar_archive, progress=False)

    real_step, calls = trainer_module._train_step, {"n": 0}

    def step_then_signal(*args, **kw):
        loss = real_step(*args, **kw)
        calls["n"] += 1
        if calls["n"] == signal_after:  # a real SIGTERM through the real handler
            signal.raise_signal(signal.SIGTERM)
        return loss

    monkeypatch.setattr(trainer_module, "_train_step", step_then_signal)
    summary = train_supernet(space, tmp_path / "b", _cfg(), cifar_archive, progress=False)
    assert summary["interrupted"]
    state = load_checkpoint(tmp_path / "b")
    assert (state["epoch"], state["step"]) == saved_at
    monkeypatch.setattr(trainer_module, "_train_step", real_step)
    summary = train_supernet(space, tmp_path / "b", _cfg(), cifar_archive, resume=True, progress=False)
    assert not summary["interrupted"] and summary["epochs_done"] == 2
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    a, b = (load_checkpoint(tmp_path / x)["history"] for x in "ab")
    assert [h["train_loss"] for h in a] == [h["train_loss"] for h in b]


def test_killed_run_resumes_from_last_checkpoint_and_loses_nothing(tmp_path, cifar_archive):
    args = ["train", "--space", TINY, "--config", CONFIGS / "train-cifar10-cpu.yaml", "--data-path", cifar_archive,
            "--epochs", 3, "--batch-size", 32, "--steps-per-epoch", 30, "--limit-train", 2048, "--limit-eval", 100,
            "--workers", 0, "--device", "cpu", "--no-progress"]
    run_cli(*args, "--output", tmp_path / "a", check=True)
    proc = subprocess.Popen([sys.executable, "-m", "mcuformer", *map(str, args), "--output", str(tmp_path / "b")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "b" / "log.jsonl"
    deadline = time.time() + 300
    while not (log.exists() and log.read_text().strip()) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(tmp_path / "b")
    assert state["epoch"] < 3, "the run finished before it was killed: the test proved nothing"
    run_cli(*args, "--output", tmp_path / "b", "--resume", check=True)
    _assert_same_weights(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_existing_checkpoint_is_never_overwritten_without_resume(tmp_path, cifar_archive):
    train_supernet(SearchSpace.load(TINY), tmp_path / "run", _cfg(epochs=1), cifar_archive, progress=False)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    proc = run_cli("train", "--space", TINY, "--data-path", cifar_archive, "--output", tmp_path / "run")
    assert proc.returncode != 0 and "--resume" in proc.stderr
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_torchrun_two_processes_train_resume_and_evaluate_like_one(tmp_path, cifar_archive):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "mcuformer"]
    common = ["--space", TINY, "--data-path", cifar_archive, "--output", tmp_path / "ddp", "--batch-size", 16,
              "--steps-per-epoch", 4, "--limit-train", 512, "--limit-eval", 100, "--workers", 0, "--device", "cpu",
              "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for extra in (["--epochs", 1], ["--epochs", 2, "--resume"]):
        p = subprocess.run([*torchrun, "train", *map(str, common + extra)], cwd=ROOT, capture_output=True, text=True,
                           timeout=600, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    state = load_checkpoint(tmp_path / "ddp")
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["history"][0]["eval"]["largest"]["count"] == 100  # sharded evaluation saw every image once
    ev = ["evaluate", "--checkpoint", tmp_path / "ddp", "--arch", "largest", "smallest", "--limit", 150,
          "--workers", 0, "--device", "cpu"]
    p2 = subprocess.run([*torchrun, *map(str, ev + ["--json", tmp_path / "two.json"])], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, env=env)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    run_cli(*ev, "--json", tmp_path / "one.json", check=True)
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert [(r["top1"], r["top5"], r["count"]) for r in one] == [(r["top1"], r["top5"], r["count"]) for r in two]


# The end of a torchrun training, reduced: DDP in a function (freed on return), collectives on tensors that Python
# made, still in flight at the last barrier, then cleanup and exit. DDP on the default gloo group kept that group's
# threads alive past destroy_process_group, and they released those tensors while the interpreter was going away:
# SIGABRT in 4-7 of 10 such exits when measured, and in 2 of 18 runs of the test above under load.
DDP_EXIT = """
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from mcuformer.train.distributed import barrier, cleanup, ddp_process_group, init_distributed

def train(info):
    net = DistributedDataParallel(torch.nn.Linear(4, 2), process_group=ddp_process_group(info))
    net(torch.randn(3, 4)).sum().backward()
    for _ in range(20):
        dist.all_reduce(torch.ones(1000), async_op=True)
    barrier(info)

info = init_distributed("cpu")
try:
    train(info)
finally:
    cleanup(info)
"""


def test_torchrun_processes_exit_cleanly_after_ddp(tmp_path):
    script = tmp_path / "ddp_exit.py"
    script.write_text(DDP_EXIT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for run in range(5):
        p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, f"exit {run + 1} of 5 failed:\n" + p.stdout + p.stderr[-3000:]


@pytest.mark.slow
def test_short_real_cifar10_training_rises_well_above_chance(tmp_path, cifar_archive):
    """A few CPU minutes of real training: both ends of the space must leave chance (10 %) far behind."""
    cfg = _cfg(epochs=4, batch_size=64, steps_per_epoch=0, limit_train=15000, limit_eval=2000, workers=1,
               warmup_epochs=0.5)
    summary = train_supernet(SearchSpace.load(TINY), tmp_path / "run", cfg, cifar_archive, progress=False)
    ev = summary["history"][-1]["eval"]
    print(f"top-1 after 4 x 15k images: largest {ev['largest']['top1']:.1f}%, smallest {ev['smallest']['top1']:.1f}%")
    assert ev["largest"]["top1"] > 25.0 and ev["smallest"]["top1"] > 25.0


def test_evaluation_log_likelihood_is_the_mean_log_probability_of_the_true_class():
    from mcuformer.supernet import SuperViT
    from mcuformer.train.distributed import DistInfo
    from mcuformer.train.evaluate import evaluate_archs

    space = SearchSpace.load(CONFIGS / "cifar10-tiny.yaml")
    torch.manual_seed(0)
    net = SuperViT(space).eval()
    batches = [(torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4, 9])),
               (torch.randn(4, 3, 32, 32), torch.tensor([5, 6, 7, 8]))]
    archs = [space.smallest(10), space.largest(10)]
    accs = evaluate_archs(net, archs, batches, DistInfo(), amp="off", progress=False)
    for arch, acc in zip(archs, accs):
        net.set_active_subnet(arch)
        with torch.no_grad():
            logits = torch.cat([net(x) for x, _ in batches])
        labels = torch.cat([y for _, y in batches])
        assert acc.count == 10
        assert acc.loglik == pytest.approx(-torch.nn.functional.cross_entropy(logits, labels).item(), abs=1e-5)
        assert acc.top1 == pytest.approx(100 * (logits.argmax(1) == labels).float().mean().item())
    assert accs[0].loglik != accs[1].loglik


def _tiny_model():
    from mcuformer.supernet import SuperViT

    torch.manual_seed(0)
    return SuperViT(SearchSpace.load(TINY), 10)


def _one_step(model, images, cfg):
    """One real _train_step of the tiny supernet on ``images`` (step 7, on the CPU)."""
    from mcuformer.train.distributed import DistInfo

    optimizer = trainer_module.build_optimizer(model, cfg, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    labels = torch.arange(images.shape[0]) % 10
    trainer_module._train_step(model, model, model, optimizer, scaler, images, labels, SearchSpace.load(TINY), 10,
                               cfg, 7, DistInfo())


def test_a_diverged_loss_says_where_and_whether_the_inputs_were_finite():
    from mcuformer.errors import McuformerError

    images = torch.randn(4, 3, 32, 32)
    images[2, 1, 5, 5] = float("nan")
    with pytest.raises(McuformerError) as e:
        _one_step(_tiny_model(), images, _cfg(sampling="sandwich"))
    msg = str(e.value)
    assert msg.startswith("training diverged: the loss is nan at step 7, subnet E")
    assert "amp off; inputs NOT finite, weights finite" in msg


def test_a_non_finite_gradient_stops_training_before_it_reaches_the_weights():
    """A finite loss whose gradient overflows (as bf16 can): without the check, AdamW would write NaN into
    every weight through the clipped (all-NaN) gradient."""
    from mcuformer.errors import McuformerError

    model = _tiny_model()
    model.head.weight.register_hook(lambda g: g * float("nan"))  # the head takes part in every subnet
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(McuformerError, match=r"the gradient norm is nan \(the loss was \d+\.\d{4}\) at step 7.*"
                                             r"inputs finite, weights finite"):
        _one_step(model, torch.randn(4, 3, 32, 32), _cfg())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_finite_step_updates_the_weights():
    model = _tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _one_step(model, torch.randn(4, 3, 32, 32), _cfg())
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values())
