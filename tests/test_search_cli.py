"""`mcuformer search` end to end on the trained tiny supernet: files, one-line errors, kill + resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from mcuformer.search.runner import make_budget
from mcuformer.space import Arch

from conftest import ROOT, assert_one_line_error, run_cli

CKPT = ROOT / "models/cifar10-tiny/supernet.pt"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SMALL = ["--population", "10", "--generations", "5", "--parents", "4", "--mutations", "5", "--crossovers", "5",
         "--per-class", "30", "--top-k", "2", "--sram-kb", "22", "--flash-kb", "96", "--seed", "1",
         "--workers", "0"]

pytestmark = pytest.mark.skipif(not CKPT.exists(), reason="needs models/cifar10-tiny/supernet.pt")


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """32 px images under CIFAR-10's class names: the trained supernet accepts them, and a search
    on 300 held-out images takes seconds (the resume test checks determinism, not accuracy)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 10)):
        for c, name in enumerate(CIFAR_CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = np.clip(20 * c + rng.integers(0, 80, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / name / f"{i:03d}.png")
    return root


def search_args(out, data, *extra):
    return ["search", "--checkpoint", CKPT, "--data-path", data, "--output", out, *SMALL, *extra]


def test_impossible_budget_stops_at_once_naming_the_smallest_figure(tmp_path, cifar_like):
    t = time.time()
    proc = run_cli("search", "--checkpoint", CKPT, "--data-path", cifar_like, "--output", tmp_path / "s",
                   "--sram-kb", "17")
    assert_one_line_error(proc, "SRAM budget 1 KB (arena) is below the smallest subnet's 3.125 KB (3200 B)")
    assert time.time() - t < 30 and not (tmp_path / "s").exists()


def test_killed_search_resumes_to_the_same_result(tmp_path, cifar_like):
    whole = tmp_path / "whole"
    proc = run_cli(*search_args(whole, cifar_like), check=True)
    assert "gen/s" in proc.stderr or "s/gen" in proc.stderr  # the generations' progress bar
    history = (whole / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["generation"] for h in history] == [0, 1, 2, 3, 4]
    best = Arch.load(whole / "best_arch.yaml")
    budget = make_budget("stm32f746", 22, 96)
    assert budget.fits(best)
    result = json.loads((whole / "result.json").read_text())
    assert result["all_subnets_fit"] and all(r["fits"] for r in result["rows"])
    rows = {r["method"]: r for r in result["rows"]}  # the baselines ran in the same command
    assert rows["random search"]["evaluations"] == rows["evolution #1"]["evaluations"] == result["evaluations"]
    assert rows["hand-scaled"]["evaluations"] == 0 and rows["evolution #1"]["test_images"] == 100
    assert (whole / "pareto.png").stat().st_size > 1000 and (whole / "fitness.png").stat().st_size > 1000

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mcuformer", *map(str, search_args(killed, cifar_like))],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    state = killed / "state.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["generation"] >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    assert json.loads(state.read_text())["generation"] < 5
    again = run_cli(*search_args(killed, cifar_like))
    assert_one_line_error(again, "--resume")
    run_cli(*search_args(killed, cifar_like, "--resume"), check=True)
    assert (killed / "history.jsonl").read_text().splitlines() == history
    assert yaml.safe_load((killed / "best_arch.yaml").read_text()) == yaml.safe_load((whole / "best_arch.yaml").read_text())
    changed = run_cli(*search_args(killed, cifar_like, "--resume", "--m-prob", "0.3"))
    assert_one_line_error(changed, "another evolution")


def test_loglik_fitness_ranks_by_log_likelihood_and_still_reports_top1(tmp_path, cifar_like):
    out = tmp_path / "loglik"
    proc = run_cli(*search_args(out, cifar_like, "--fitness", "loglik", "--no-baselines", "--no-progress"), check=True)
    assert "gen/s" not in proc.stderr and "s/gen" not in proc.stderr and "|" not in proc.stderr  # --no-progress
    result = json.loads((out / "result.json").read_text())
    fitness = [s["fitness"] for s in json.loads((out / "state.json").read_text())["evaluated"]]
    assert result["fitness"] == "loglik" and all(f < 0 for f in fitness)  # log-likelihoods, not percentages
    best = result["rows"][0]
    assert best["fitness"] == max(fitness)
    assert 0 <= best["heldout_top1"] <= 100 and yaml.safe_load((out / "best_arch.yaml").read_text())[
        "heldout_top1"] == best["heldout_top1"]
    top1_resume = run_cli(*search_args(out, cifar_like, "--no-baselines", "--resume", "--fitness", "top1"))
    assert_one_line_error(top1_resume, "another fitness")


def test_a_supernet_trained_without_a_split_is_searched_on_that_split_by_default(tmp_path, cifar_like):
    """No --subsplit: the search scores on the images the checkpoint says it was trained without, not on a
    fresh seeded split that the supernet mostly trained on."""
    import torch
    from mcuformer.data import make_subsplit
    from mcuformer.train import load_checkpoint
    folder = tmp_path / "relocated"
    folder.mkdir()
    make_subsplit(cifar_like, 30, seed=5, output=folder / "heldout-split.json")
    state = load_checkpoint(CKPT)
    state["data_path"] = str(cifar_like)
    state["config"] = {**(state.get("config") or {}), "exclude_split": "heldout-split.json", "seed": 0,
                       "limit_train": 0}
    torch.save(state, folder / "supernet.pt")
    out = tmp_path / "s"
    small = [a for i, a in enumerate(SMALL) if "--per-class" not in SMALL[max(i - 1, 0):i + 1]]
    run_cli("search", "--checkpoint", folder / "supernet.pt", "--output", out, *small, "--no-baselines",
            "--generations", "1", "--top-k", "1", check=True)
    result = json.loads((out / "result.json").read_text())
    assert result["heldout"] == str(folder / "heldout-split.json") and result["heldout_images"] == 300
    assert result["heldout_seen_in_training"] == 0
    # an explicit --per-class asks for a seeded split instead (it was silently ignored); with --subsplit, one line
    run_cli("search", "--checkpoint", folder / "supernet.pt", "--output", tmp_path / "seeded", *small,
            "--per-class", "2", "--no-baselines", "--generations", "1", "--top-k", "1", check=True)
    seeded = json.loads((tmp_path / "seeded/result.json").read_text())
    assert seeded["heldout"] == "generated: 2 per class, seed 1" and seeded["heldout_images"] == 20
    both = run_cli("search", "--checkpoint", folder / "supernet.pt", "--output", tmp_path / "u", *SMALL,
                   "--subsplit", folder / "heldout-split.json")
    assert_one_line_error(both, "--per-class", "--subsplit", "one of them")
    assert not (tmp_path / "u").exists()
    (folder / "heldout-split.json").unlink()
    gone = run_cli("search", "--checkpoint", folder / "supernet.pt", "--output", tmp_path / "t", *small)
    assert_one_line_error(gone, "heldout-split.json", "not found", "--subsplit")
