"""`mcuformer quantize` and `mcuformer evaluate --quantized` end to end, and their one-line errors."""

import json

import pytest

import numpy as np
from PIL import Image

from conftest import ROOT, assert_one_line_error, run_cli

CHECKPOINT = ROOT / "models/cifar10-tiny/supernet.pt"
CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def cifar_like(tmp_path_factory):
    """An ImageFolder with CIFAR-10's classes, 3 random 32 px images each, in train and val."""
    root = tmp_path_factory.mktemp("q") / "data"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in CIFAR:
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def quantised(cifar_like, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "smallest-int8"
    run_cli("quantize", "--checkpoint", CHECKPOINT, "--arch", "smallest", "--data-path", cifar_like, "--output", out,
            "--calibration-images", 20, "--method", "percentile", check=True)
    return out


def test_quantize_writes_a_pickle_free_folder(quantised):
    manifest = json.loads((quantised / "manifest.json").read_text())
    assert manifest["format"] == "mcuformer-int8-v1"
    assert manifest["info"]["calibration"] == {"images": 20, "seed": 0, "method": "percentile", "percentile": 99.99}
    assert (quantised / "params.npz").stat().st_size > 10_000


def test_evaluate_quantized_reports_both_top1(quantised, cifar_like, tmp_path):
    proc = run_cli("evaluate", "--quantized", quantised, "--data-path", cifar_like, "--json", tmp_path / "r.json",
                   check=True)
    assert "float top-1" in proc.stdout and "int8 top-1" in proc.stdout
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["count"] == 30 and 0 <= r["int8_top1"] <= 100 and r["drop"] == r["float_top1"] - r["int8_top1"]
    assert "int8 eval" in proc.stderr  # its progress bar; --no-progress drops it, and only it
    quiet = run_cli("evaluate", "--quantized", quantised, "--data-path", cifar_like, "--no-progress", check=True)
    assert "int8 eval" not in quiet.stderr and "|" not in quiet.stderr and quiet.stdout == proc.stdout


def test_hflip_top1_is_that_of_the_references_flip_sums(quantised, cifar_like):
    """evaluate --quantized --hflip: the top-1 of each image's and its mirror's int8 logits summed, as the
    NumPy reference's run_hflip (the engine's mcuformer_invoke_hflip) gives them."""
    from mcuformer.api import evaluate_quantized
    from mcuformer.quantize.model import QuantModel
    from mcuformer.quantize.reference import Reference, mirror
    from mcuformer.quantize.workflow import _batches, _dataset
    from mcuformer.train import load_checkpoint

    r = evaluate_quantized(quantised, data_path=cifar_like, progress=False, device="cpu", hflip=True)
    q = QuantModel.load(quantised)
    ref = Reference(q)
    hits = changed = 0
    for images, labels in _batches(_dataset(load_checkpoint(CHECKPOINT), q.arch, cifar_like, "val"), 64):
        for image, label in zip(q.quantize_image(images), labels.numpy()):
            assert np.array_equal(mirror(image)[:, 0], image[:, -1]) and np.array_equal(mirror(mirror(image)), image)
            sums = ref.run_hflip(image)
            hits += int(np.argmax(sums) == label)
            changed += int(not np.array_equal(sums, 2 * ref.run(image).astype(np.int64)))
    assert r["count"] == 30 and r["int8_top1_hflip"] == 100.0 * hits / 30
    assert changed > 20  # the mirror images give other logits: the sums are not the plain ones doubled


def test_hflip_without_quantized_is_one_line():
    proc = run_cli("evaluate", "--checkpoint", CHECKPOINT, "--hflip")
    assert_one_line_error(proc, "--hflip needs --quantized")


def test_a_fine_tuned_models_float_top1_is_marked_as_before_fine_tuning(quantised, cifar_like, tmp_path):
    """model_zoo.py --finetune-epochs keeps the supernet as the recorded checkpoint (it prepares the images),
    but the int8 weights came from the fine-tuned subnet: the float top-1 beside them is the one before."""
    import shutil

    from mcuformer.api import evaluate_quantized
    tuned = tmp_path / "tuned"
    shutil.copytree(quantised, tuned)
    manifest = json.loads((tuned / "manifest.json").read_text())
    manifest["info"]["fine_tuned"] = {"epochs": 3, "teacher": "none"}
    (tuned / "manifest.json").write_text(json.dumps(manifest))
    kw = {"data_path": cifar_like, "progress": False, "device": "cpu"}
    assert evaluate_quantized(tuned, **kw).get("float_before_fine_tuning") is True
    assert "float_before_fine_tuning" not in evaluate_quantized(tuned, checkpoint=CHECKPOINT, **kw)
    assert "float_before_fine_tuning" not in evaluate_quantized(quantised, **kw)


def test_arch_that_does_not_match_the_checkpoint(cifar_like, tmp_path):
    arch = tmp_path / "arch.yaml"
    arch.write_text("img_size: 32\npatch_size: 4\nrank_ratio: 1.0\nembed_dim: 40\ndepth: 2\nnum_heads: [1, 1]\n"
                    "mlp_ratio: [2, 2]\nnum_classes: 10\nhead_dim: 16\ncls_token: false\n")
    proc = run_cli("quantize", "--checkpoint", CHECKPOINT, "--arch", arch, "--data-path", cifar_like,
                   "--output", tmp_path / "q")
    assert_one_line_error(proc, "does not match the checkpoint", "embed_dim 40")
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("n", [0, 31])
def test_calibration_set_of_the_wrong_size(cifar_like, tmp_path, n):
    proc = run_cli("quantize", "--checkpoint", CHECKPOINT, "--arch", "smallest", "--data-path", cifar_like,
                   "--output", tmp_path / "q", "--calibration-images", n)
    assert_one_line_error(proc, f"--calibration-images {n}", "30 images")


def test_not_a_quantised_folder(tmp_path):
    proc = run_cli("evaluate", "--quantized", tmp_path)
    assert_one_line_error(proc, "not a quantised model")


def test_evaluate_needs_a_checkpoint_or_a_quantised_model():
    assert_one_line_error(run_cli("evaluate"), "--checkpoint")


def test_rel_pos_subnet_quantises_exports_and_runs_bit_exact(cifar_like, tmp_path):
    """The tiny checkpoint given relative position tables (rel_pos 2, random tables): quantize, export
    and verify on the host run end to end, and the engine's logits equal the integer reference."""
    import torch

    from mcuformer.supernet import SuperViT
    from mcuformer.train import space_of

    state = torch.load(CHECKPOINT, weights_only=True)
    state["space"]["rel_pos"] = 2
    net = SuperViT(space_of(state), int(state["num_classes"]))
    missing, _ = net.load_state_dict(state["model"], strict=False)
    assert missing and all(".rel_pos." in m for m in missing)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".rel_pos." in name:
                p.normal_(0, 0.5)
    state["model"] = net.state_dict()
    torch.save(state, tmp_path / "rel.pt")
    q, c = tmp_path / "q", tmp_path / "c"
    run_cli("quantize", "--checkpoint", tmp_path / "rel.pt", "--arch", "smallest", "--data-path", cifar_like,
            "--output", q, "--calibration-images", 20, check=True)
    manifest = json.loads((q / "manifest.json").read_text())
    assert manifest["arch"]["rel_pos"] == 2
    # no --method: the calibration default, clipping each range at the 99.99th percentile
    assert manifest["info"]["calibration"] == {"images": 20, "seed": 0, "method": "percentile", "percentile": 99.99}
    run_cli("export", "--quantized", q, "--output", c, check=True)
    proc = run_cli("verify", c, "--images", "2", check=True)
    assert "bit-exact" in proc.stdout
