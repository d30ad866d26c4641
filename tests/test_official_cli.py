"""The official README's command lines, with the script names replaced by mcuformer verbs."""

import json
import shlex

import pytest

from conftest import OFFICIAL, make_image_folder, run_cli

# the README's lines; placeholders become test paths, and the run is shrunk by extra mcuformer flags
SEED_TRAIN = ("--data-path {data} --gp --change_qk --relative_position --mode super --dist-eval "
              "--load-pretrained-model --cfg {cfg} --cfg-new {cfg_new} --epochs 1 --warmup-epochs 5 --lr 1e-4 "
              "--super_epoch 1 --step-num 7 --model deit_tiny_patch16_224 --batch-size 2 --output {out}")
SEED_SUBSPLIT = "--data-path {data}"
SEED_SEARCH = ("--data-path {data} --gp --change_qk --relative_position --dist-eval --input-size 240 "
               "--resume {ckpt} --cfg {cfg} --cfg-new {cfg_new} --memory-constraint 320 --data-set EVO_IMNET "
               "--output_dir {out} /OUTPUT_PATH")
SHRINK_TRAIN = "--steps-per-epoch 1 --limit-eval 2 --eval-batch-size 2 --workers 0 --no-progress"
SHRINK_SEARCH = ("--max-epochs 1 --population-num 2 --select-num 1 --mutation-num 1 --crossover-num 1 "
                 "--heldout-limit 2 --test-limit 2 --top-k 1 --no-baselines --allow-external-flash "
                 "--batch-size 2 --workers 0")


@pytest.fixture(scope="module")
def imagenet_layout(tmp_path_factory):
    """train/<class>/ with 102 images per class (the official subImageNet takes 100) and a small val/."""
    root = tmp_path_factory.mktemp("imagenet")
    make_image_folder(root, per_class=102, splits=("train",))
    make_image_folder(root, per_class=2, splits=("val",))
    return root


def _line(template, extra="", **kw):
    return shlex.split(template.format(**kw)) + shlex.split(extra)


def test_the_three_seed_command_lines_run(imagenet_layout, tmp_path):
    data = imagenet_layout
    cfg, cfg_new = OFFICIAL
    proc = run_cli("sub-split", *_line(SEED_SUBSPLIT, data=data), check=True)
    split = json.loads((data / "subImageNet.json").read_text())
    assert len(split["heldout"]) == 200 and split["per_class"] == 100

    out = tmp_path / "train"
    proc = run_cli("train", *_line(SEED_TRAIN, SHRINK_TRAIN, data=data, cfg=cfg, cfg_new=cfg_new, out=out),
                   check=True)
    assert "note: --load-pretrained-model" in proc.stderr and "--init-from" in proc.stderr
    assert "note: --super_epoch" in proc.stderr and "evolve-space" in proc.stderr
    assert (out / "checkpoint.pt").exists()
    import torch
    assert torch.load(out / "checkpoint.pt", weights_only=True)["space"]["rel_pos"] == 14  # --relative_position

    out_s = tmp_path / "search"
    proc = run_cli("search", *_line(SEED_SEARCH, SHRINK_SEARCH, data=data, ckpt=out / "checkpoint.pt", cfg=cfg,
                                    cfg_new=cfg_new, out=out_s), check=True)
    assert "ignoring stray argument(s) /OUTPUT_PATH" in proc.stderr
    # the seed's supernet trained on all of train, the sub-split included: the search says so
    assert "warning: 200 of the 200 held-out images were in the supernet's training set" in proc.stderr
    assert "held-out: " + str(data / "subImageNet.json") in proc.stdout  # EVO_IMNET -> the sub-split
    assert "320 KB" in proc.stdout  # --memory-constraint 320 -> --sram-kb 320
    assert (out_s / "best_arch.yaml").exists()


@pytest.mark.parametrize("flag, needle", [
    (["--eval"], "mcuformer evaluate"),
    (["--model-ema"], "EMA"),
    (["--mode", "retrain"], "mcuformer train"),
    (["--opt", "sgd"], "AdamW"),
    (["--warmup-lr", "1e-5"], "--config"),
    (["--resume", "/elsewhere/ckpt.pth"], "--init-from"),
])
def test_unsupported_official_train_flag_is_one_line_naming_the_equivalent(tmp_path, capsys, flag, needle):
    cfg, cfg_new = OFFICIAL
    _one_line_error(capsys, ["train", "--cfg", cfg, "--cfg-new", cfg_new, "--output", tmp_path / "o", *flag],
                    flag[0], needle)
    assert not (tmp_path / "o").exists()


def test_unsupported_official_search_flags_are_one_line(tmp_path, capsys):
    common = ["search", "--resume", tmp_path / "c.pt", "--output", tmp_path / "s"]
    _one_line_error(capsys, [*common, "--param-limits", "8"], "--param-limits", "--sram-kb")
    _one_line_error(capsys, [*common, "--memory-constraint", "lots"], "--memory-constraint", "--board")
    _one_line_error(capsys, ["search", "--checkpoint", tmp_path / "c.pt", "--output", tmp_path / "s", "stray"],
                    "unrecognized arguments: stray")


def _one_line_error(capsys, argv, *needles):
    from mcuformer.cli.main import main
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1, err
    for n in needles:
        assert n.lower() in err.lower(), err


def test_official_defaults_map_onto_train_settings():
    from mcuformer.cli.main import build_parser
    from mcuformer.cli.official_flags import apply_official_flags
    from mcuformer.cli.train_cmd import build_config
    cfg, cfg_new = OFFICIAL
    args = build_parser().parse_args(
        ["train", "--cfg", str(cfg), "--cfg-new", str(cfg_new), "--output_dir", "x", "--smoothing", "0.2",
         "--reprob", "0.5", "--clip-grad", "1.5", "--num_workers", "3", "--no-amp", "--aa", "none"])
    apply_official_flags(args, "train")
    assert args.space == [str(cfg), str(cfg_new)] and args.output == "x"
    c = build_config(args)
    assert (c.augment.label_smoothing, c.augment.random_erasing, c.grad_clip, c.workers, c.amp) == \
        (0.2, 0.5, 1.5, 3, "off")
    assert c.augment.randaugment is False


def test_search_overlap_of_heldout_and_training_images(imagenet_layout, tmp_path):
    from mcuformer.data import make_subsplit
    from mcuformer.search.overlap import heldout_overlap, trained_indices
    data = imagenet_layout
    split = make_subsplit(data, 50, seed=3, output=tmp_path / "split.json")
    held = split["heldout"]
    assert heldout_overlap({"seed": 0}, data, data, held)[0] == 100  # trained on all of train
    excluded = {"exclude_split": str(tmp_path / "split.json"), "seed": 0}
    assert heldout_overlap(excluded, data, data, held)[0] == 0
    limited = {"limit_train": 50, "seed": 1}
    seen = trained_indices(limited, data)
    assert len(seen) == 50 and heldout_overlap(limited, data, data, held)[0] == len(set(seen) & set(held))
    assert heldout_overlap(None, data, data, held)[0] is None
    assert heldout_overlap({"seed": 0}, tmp_path, data, held)[0] is None  # trained on another folder
