"""Bad input gets a one-line error naming the problem, a non-zero exit, and no traceback."""

import pytest
import torch

from conftest import CONFIGS, assert_one_line_error, run_cli

TINY = CONFIGS / "cifar10-tiny.yaml"
FAST = ["--epochs", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def any_classes(tmp_path_factory):
    """The tiny space with its class count left to the data (the fixture folders have 2 classes)."""
    text = "\n".join(ln for ln in TINY.read_text().splitlines() if not ln.startswith("num_classes"))
    path = tmp_path_factory.mktemp("space") / "tiny-any.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, any_classes):
    from conftest import make_image_folder
    root = tmp_path_factory.mktemp("ck")
    data = make_image_folder(root / "data")
    run_cli("train", "--space", any_classes, "--data-path", data, "--output", root / "run", *FAST, check=True)
    return root / "run", data


def test_missing_data_path(tmp_path):
    proc = run_cli("train", "--space", TINY, "--data-path", tmp_path / "nowhere", "--output", tmp_path / "o", *FAST)
    assert_one_line_error(proc, "data path does not exist", "nowhere")


def test_empty_class_folder(image_folder, tmp_path):
    (image_folder / "train" / "emu").mkdir()
    proc = run_cli("train", "--space", TINY, "--data-path", image_folder, "--output", tmp_path / "o", *FAST)
    assert_one_line_error(proc, "emu", "holds no images")


def test_space_and_data_disagree_on_classes(image_folder, tmp_path):
    proc = run_cli("train", "--space", TINY, "--data-path", image_folder, "--output", tmp_path / "o", *FAST)
    assert_one_line_error(proc, "10 classes", "has 2")


def test_corrupt_jpeg_inside_dataloader_workers(image_folder, tmp_path, any_classes):
    bad = image_folder / "train" / "cat" / "004.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    proc = run_cli("train", "--space", any_classes, "--data-path", image_folder, "--output", tmp_path / "o",
                   "--epochs", 1, "--batch-size", 4, "--workers", 2, "--device", "cpu", "--no-progress")
    assert_one_line_error(proc, "corrupt", "004.jpg")


def test_malformed_space_yaml(tmp_path, image_folder):
    bad = tmp_path / "space.yaml"
    bad.write_text("embed_dim: [32, 48\n  depth: [2]\n")
    proc = run_cli("train", "--space", bad, "--data-path", image_folder, "--output", tmp_path / "o", *FAST)
    assert_one_line_error(proc, "malformed yaml", "space.yaml", "line")


def test_malformed_training_config(tmp_path, image_folder):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("epochs: 3\nlearning_rate: 0.1\n")
    proc = run_cli("train", "--space", TINY, "--data-path", image_folder, "--output", tmp_path / "o",
                   "--config", cfg)
    assert_one_line_error(proc, "learning_rate")


def test_impossible_setting(tmp_path, image_folder):
    proc = run_cli("train", "--space", TINY, "--data-path", image_folder, "--output", tmp_path / "o",
                   "--epochs", 0)
    assert_one_line_error(proc, "epochs must be positive")


def test_heads_that_do_not_fit_the_supernet_width(tmp_path, image_folder):
    sp = tmp_path / "space.yaml"
    sp.write_text("img_size: 32\nhead_dim: 16\nembed_dim: [32]\ndepth: [2]\nnum_heads: [2, 6]\nmlp_ratio: [2]\n"
                  "patch_size: [4]\nsuper: {num_heads: 4}\n")
    proc = run_cli("train", "--space", sp, "--data-path", image_folder, "--output", tmp_path / "o", *FAST)
    assert_one_line_error(proc, "num_heads")


def test_arch_outside_the_space(tiny_checkpoint, tmp_path):
    run, data = tiny_checkpoint
    arch = tmp_path / "arch.yaml"
    arch.write_text("img_size: 32\npatch_size: 4\nrank_ratio: 0.5\nembed_dim: 40\ndepth: 2\nnum_heads: [1, 1]\n"
                    "mlp_ratio: [2, 2]\nnum_classes: 2\nhead_dim: 16\ncls_token: false\n")
    proc = run_cli("evaluate", "--checkpoint", run, "--arch", arch, "--data-path", data, "--workers", 0)
    assert_one_line_error(proc, "outside", "embed_dim 40")


def test_arch_heads_beyond_the_space(tiny_checkpoint, tmp_path):
    run, data = tiny_checkpoint
    arch = tmp_path / "arch.yaml"
    arch.write_text("img_size: 32\npatch_size: 4\nrank_ratio: 0.5\nembed_dim: 32\ndepth: 2\nnum_heads: [1, 8]\n"
                    "mlp_ratio: [2, 2]\nnum_classes: 2\nhead_dim: 16\ncls_token: false\n")
    proc = run_cli("evaluate", "--checkpoint", run, "--arch", arch, "--data-path", data, "--workers", 0)
    assert_one_line_error(proc, "num_heads[1] = 8")


def test_checkpoint_from_another_space(tiny_checkpoint):
    run, data = tiny_checkpoint
    before = (run / "checkpoint.pt").read_bytes()
    proc = run_cli("train", "--space", CONFIGS / "cifar10.yaml", "--data-path", data, "--output", run, "--resume",
                   *FAST)
    assert_one_line_error(proc, "another search space")
    assert (run / "checkpoint.pt").read_bytes() == before


def test_corrupt_and_foreign_checkpoints(tmp_path):
    bad = tmp_path / "ck.pt"
    bad.write_bytes(b"PK\x03\x04 garbage")
    assert_one_line_error(run_cli("evaluate", "--checkpoint", bad), "cannot load checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    assert_one_line_error(run_cli("evaluate", "--checkpoint", tmp_path / "other.pt"), "not an mcuformer")
    assert_one_line_error(run_cli("evaluate", "--checkpoint", tmp_path / "missing.pt"), "not found")


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    run, _ = tiny_checkpoint
    cut = tmp_path / "cut.pt"
    cut.write_bytes((run / "checkpoint.pt").read_bytes()[:5000])
    assert_one_line_error(run_cli("evaluate", "--checkpoint", cut), "cannot load checkpoint")


def test_evaluate_writes_json_and_table(tiny_checkpoint, tmp_path):
    run, data = tiny_checkpoint
    proc = run_cli("evaluate", "--checkpoint", run, "--data-path", data, "--workers", 0, "--json", tmp_path / "r.json",
                   check=True)
    assert "largest" in proc.stdout and "smallest" in proc.stdout and (tmp_path / "r.json").exists()


def test_no_verb_prints_help_and_fails():
    proc = run_cli()
    assert proc.returncode != 0 and "<verb>" in proc.stdout
