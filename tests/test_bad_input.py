"""Bad input to every verb: exit code != 0, exactly one stderr line naming the problem, no traceback,
and nothing in the user's folder changed (every file hashed before and after).

The cases run through the CLI's own ``main`` in this interpreter (torch is imported once, not once per
case); a sample of them, at least one per verb, runs again through ``python -m mcuformer``. The
workspace (a checkpoint, quantised folders, exported engines, crafted files) is made once per module.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import CONFIGS, ROOT, assert_one_line_error, make_image_folder, run_cli, run_in_process

MODELS = ROOT / "models" / "cifar10-tiny"
TINY = CONFIGS / "cifar10-tiny.yaml"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but holds almost no data (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _tar_gz(path: Path, members: dict) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, int):  # that many zero bytes, streamed
                info.size = data
                tar.addfile(info, io.BytesIO(bytes(data)))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _tamper(src: Path, dst: Path, manifest=None, params=None) -> Path:
    shutil.copytree(src, dst)
    if manifest:
        m = json.loads((dst / "manifest.json").read_text())
        manifest(m)
        (dst / "manifest.json").write_text(json.dumps(m))
    if params:
        with np.load(dst / "params.npz") as z:
            p = {k: z[k] for k in z.files}
        params(p)
        np.savez(dst / "params.npz", **p)
    return dst


def _set_const(op, key, value):
    def f(m):
        m["consts"][op][key] = value
    return f


def _huge_member(npz: Path) -> None:
    """Patch the central directory so the first member claims ~4 GB uncompressed (a zip bomb's header)."""
    data = bytearray(npz.read_bytes())
    at = data.index(b"PK\x01\x02")
    data[at + 24:at + 28] = (0xFFFFFF00).to_bytes(4, "little")
    npz.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The user's folder: inputs, earlier outputs, crafted files."""
    from mcuformer.codegen.export import export_model

    w = tmp_path_factory.mktemp("user")
    os.mkfifo(w / "pipe")
    (w / "folder").mkdir()
    (w / "a-file").write_text("mine\n")
    (w / "bad.yaml").write_text("embed_dim: [32, 48\n  depth: [2]\n")
    (w / "notes.md").write_text("# notes\nsee: the README: for more\n")  # parsed as YAML: says so, not "MD"
    (w / "existing.json").write_text('{"mine": true}\n')
    (w / "existing.png").write_bytes(b"not really a png, but mine")
    data = make_image_folder(w / "data", per_class=3, size=8)
    # training settings
    for name, cfg in {"nan-epochs": {"epochs": float("nan")}, "crop": {"augment": {"crop": "diagonal"}},
                      "drop-path": {"drop_path": 2.0}, "lr-inf": {"lr": float("inf")},
                      "mixup-neg": {"augment": {"mixup": -1}}, "workers-str": {"workers": "four"}}.items():
        (w / f"train-{name}.yaml").write_text(yaml.safe_dump(cfg))
    # checkpoints: the tiny model, a pickle that would run code, NaN weights, a truncated file
    shutil.copy(MODELS / "supernet.pt", w / "supernet.pt")
    state = torch.load(MODELS / "supernet.pt", weights_only=True)
    torch.save({**state, "x": _Evil()}, w / "evil.pt")
    bad = dict(state, model=dict(state["model"]))
    k = next(n for n, t in bad["model"].items() if t.is_floating_point())
    bad["model"][k] = torch.full_like(bad["model"][k], float("nan"))
    torch.save(bad, w / "nan.pt")
    (w / "cut.pt").write_bytes((MODELS / "supernet.pt").read_bytes()[:4000])
    (w / "empty.pt").write_bytes(b"")
    (w / "hi.txt").write_text("hi\n")  # torch's unpickler: KeyError('105')
    (w / "noise.pt").write_bytes(bytes(range(216, 256)) * 50)  # no pickle opcode torch reads
    (w / "evil.yaml").write_text("!!python/object/apply:os.system ['touch PWNED']\n")
    (w / "nan-arch.yaml").write_text(yaml.safe_dump({"img_size": 32, "patch_size": 4, "rank_ratio": float("nan"),
                                                     "embed_dim": 32, "depth": 1, "num_heads": [1],
                                                     "mlp_ratio": [2.0], "num_classes": 2}))
    (w / "split-bad.json").write_text(json.dumps({"format": "mcuformer-subsplit-v1", "num_train": 6,
                                                  "classes": ["cat", "dog"], "heldout": [0, 99]}))
    # a finished search's state
    (w / "search").mkdir()
    (w / "search" / "state.json").write_text("{}\n")
    # quantised folders: the real one and tampered copies
    q = MODELS / "int8-stm32f746"
    shutil.copytree(q, w / "q")
    _tamper(q, w / "q-shape", params=lambda p: p.update({"head.weight": p["head.weight"][:, :-1].copy()}))
    _tamper(q, w / "q-dtype", params=lambda p: p.update({"pos_embed": p["pos_embed"].astype(np.int32)}))
    _tamper(q, w / "q-missing", params=lambda p: p.pop("blocks.1.mlp.gelu_lut"))
    _tamper(q, w / "q-extra", params=lambda p: p.update({"payload": np.zeros(4, np.int8)}))
    _tamper(q, w / "q-shift", params=lambda p: p.update({"head.shift": np.full_like(p["head.shift"], 40)}))
    _tamper(q, w / "q-float", manifest=_set_const("blocks.0.attn.qk", "multiplier", 1.5e9 + 0.5))
    _tamper(q, w / "q-ccode", manifest=_set_const("stem.pos_add", "m1", '1); system("rm -rf ~"); (1'))
    _tamper(q, w / "q-zp", manifest=lambda m: m["act"]["logits"].__setitem__(1, 300))
    _tamper(q, w / "q-nan", manifest=lambda m: m["act"]["image"].__setitem__(0, "NaN"))
    _tamper(q, w / "q-huge-scale", manifest=lambda m: m["act"]["image"].__setitem__(0, 1e308))
    _tamper(q, w / "q-checkpoint-number", manifest=lambda m: m["info"].__setitem__("checkpoint", 5))
    _tamper(q, w / "q-noconst", manifest=lambda m: m["consts"].pop("norm"))
    _tamper(q, w / "q-arch", manifest=lambda m: m["arch"].__setitem__("embed_dim", 65))
    _tamper(q, w / "q-format", manifest=lambda m: m.__setitem__("format", "other"))
    shutil.copytree(q, w / "q-json")
    (w / "q-json" / "manifest.json").write_text("{ not json")
    shutil.copytree(q, w / "q-pipe")
    (w / "q-pipe" / "params.npz").unlink()
    os.mkfifo(w / "q-pipe" / "params.npz")
    shutil.copytree(q, w / "q-bomb")
    _huge_member(w / "q-bomb" / "params.npz")
    shutil.copytree(q, w / "q-pickle")
    np.save(w / "q-pickle" / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with np.load(q / "params.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["head.bias"] = np.array([{"a": 1}] * arrays["head.bias"].size, dtype=object)
    np.savez(w / "q-pickle" / "params.npz", **arrays)
    (w / "q-pickle" / "x.npy").unlink()
    # exported engines: a good one, one with a tampered model, one with another export.json
    export_model(q, w / "engine")
    export_model(q, w / "engine-shape")
    shutil.rmtree(w / "engine-shape" / "quantized")
    shutil.copytree(w / "q-shape", w / "engine-shape" / "quantized")
    export_model(q, w / "engine-ccode")
    shutil.rmtree(w / "engine-ccode" / "quantized")
    shutil.copytree(w / "q-ccode", w / "engine-ccode" / "quantized")
    export_model(q, w / "engine-info")
    info = json.loads((w / "engine-info" / "export.json").read_text())
    info["arch"]["embed_dim"] = 48
    (w / "engine-info" / "export.json").write_text(json.dumps(info))
    shutil.copytree(w / "engine", w / "engine-nojson")
    (w / "engine-nojson" / "export.json").write_text("[1, 2")
    (w / "user-export").mkdir()
    (w / "user-export" / "Makefile").write_text("all:\n\techo my own Makefile\n")
    (w / "user-export" / "quantized").mkdir()
    (w / "user-export" / "quantized" / "notes.txt").write_text("keep me\n")
    # files nested deeper than a parser's recursion: a settings file, an arch, a quantised model's manifest
    (w / "deep.yaml").write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    (w / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(q, w / "q-deep")
    shutil.copy(w / "deep.json", w / "q-deep" / "manifest.json")
    # a gzip file that holds no tar
    with gzip.open(w / "not-tar.tar.gz", "wb") as f:
        f.write(b"plain text, not a tar archive\n" * 40)
    # archives: a member past the size cap, an image that declares 20000 x 10000 pixels
    _tar_gz(w / "big-member.tar.gz", {"train/cat/0.png": (64 << 20) + 1})
    _tar_gz(w / "bomb.tar.gz", {"train/cat/0.png": _png_header_only(20000, 10000),
                                "train/dog/0.png": _png_header_only(16, 16)})
    # pipeline configs
    (w / "pipe-train.yaml").write_text((CONFIGS / "train-cifar10-cpu.yaml").read_text())
    base = {"space": str(TINY), "train_config": "pipe-train.yaml", "output": "pipe-run", "data_path": str(data)}
    for name, extra in {"pop-nan": {"search": {"population": float("nan")}},
                        "method": {"quantize": {"method": "magic"}},
                        "images": {"verify": {"images": -1}},
                        "emulator": {"verify": {"emulator": "maybe"}},
                        "per-class": {"search": {"per_class": 0}},
                        "calib": {"quantize": {"calibration_images": 2.5}},
                        "train-nan": {"train_config": "train-nan-epochs.yaml"},
                        "no-data": {"data_path": "no-such-data"},
                        "out-file": {"output": "a-file"},
                        "out-under-file": {"output": "a-file/run"},
                        "board-int": {"board": 5},
                        "space-pipe": {"space": "pipe"}}.items():
        (w / f"pipeline-{name}.yaml").write_text(yaml.safe_dump({**base, **extra}))
    return w


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _digest(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_fifo():
                out[rel] = "fifo"
            elif p.is_symlink() or p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


LONG = "n" * 300
# (id, verb arguments with {w} for the workspace, words the error line must hold)
CASES = [
    # space
    ("space-missing", ["space", "--space", "{w}/nope.yaml"], ["not found"]),
    ("space-pipe", ["space", "--space", "{w}/pipe"], ["named pipe"]),
    ("space-folder", ["space", "--space", "{w}/folder"], ["folder"]),
    ("space-output-without-arch", ["space", "--space", TINY, "--output", "{w}/archs"], ["--output", "give --arch"]),
    ("space-malformed", ["space", "--space", "{w}/bad.yaml"], ["malformed yaml", "line"]),
    ("space-not-yaml", ["space", "--space", "{w}/notes.md"], ["malformed yaml in", "notes.md", "line 2"]),
    ("space-deep", ["space", "--space", "{w}/deep.yaml"], ["deep.yaml", "nested too deeply"]),
    ("space-classes-zero", ["space", "--space", TINY, "--num-classes", "0"], ["--num-classes", "positive"]),
    ("space-classes-nan", ["space", "--space", TINY, "--num-classes", "nan"], ["--num-classes", "integer"]),
    ("space-output-file", ["space", "--space", TINY, "--arch", "largest", "--output", "{w}/a-file"], ["not a folder"]),
    ("space-overwrite", ["space", "--space", TINY, "--arch", "largest", "--output", "{w}/archs"], ["--force"]),
    ("space-bad-random", ["space", "--space", TINY, "--arch", "random:x", "--output", "{w}/new"], ["random:N"]),
    ("space-random-zero", ["space", "--space", TINY, "--arch", "random:0", "--output", "{w}/new"], ["random:0"]),
    ("space-random-huge", ["space", "--space", TINY, "--arch", "random:100000000", "--output", "{w}/new"],
     ["random:100000000"]),
    ("space-check-pipe", ["space", "--space", TINY, "--check", "{w}/pipe"], ["named pipe"]),
    # sub-split
    ("subsplit-zero", ["sub-split", "--per-class", "0", "--output", "{w}/s.json"], ["--per-class", "positive"]),
    ("subsplit-negative", ["sub-split", "--per-class", "-3", "--output", "{w}/s.json"], ["--per-class"]),
    ("subsplit-nan", ["sub-split", "--per-class", "nan", "--output", "{w}/s.json"], ["--per-class"]),
    ("subsplit-seed", ["sub-split", "--per-class", "1", "--seed", "-1", "--output", "{w}/s.json"], ["--seed"]),
    ("subsplit-overwrite", ["sub-split", "--per-class", "1", "--output", "{w}/existing.json"], ["--force"]),
    ("subsplit-output-folder", ["sub-split", "--per-class", "1", "--output", "{w}/folder"], ["is a folder"]),
    ("subsplit-long-name", ["sub-split", "--per-class", "1", "--output", "{w}/" + LONG], ["longer than 255"]),
    ("subsplit-parent-file", ["sub-split", "--per-class", "1", "--output", "{w}/a-file/s.json"], ["is a file"]),
    ("subsplit-data-missing", ["sub-split", "--per-class", "1", "--data-path", "{w}/nope", "--output", "{w}/s.json"],
     ["does not exist"]),
    ("subsplit-data-pipe", ["sub-split", "--per-class", "1", "--data-path", "{w}/pipe", "--output", "{w}/s.json"],
     ["neither a folder nor a file"]),
    ("subsplit-too-many", ["sub-split", "--per-class", "5", "--data-path", "{w}/data", "--output", "{w}/s.json"],
     ["cannot hold out 5"]),
    ("subsplit-member-cap", ["sub-split", "--per-class", "1", "--data-path", "{w}/big-member.tar.gz",
                             "--output", "{w}/s.json"], ["64 mb"]),
    ("subsplit-bomb", ["sub-split", "--per-class", "1", "--data-path", "{w}/bomb.tar.gz", "--output", "{w}/s.json"],
     ["too large to decode"]),
    ("subsplit-not-tar", ["sub-split", "--per-class", "1", "--data-path", "{w}/not-tar.tar.gz", "--output",
                          "{w}/s.json"], ["not-tar.tar.gz", "not a tar"]),
    # train
    ("train-epochs-zero", ["train", "--space", TINY, "--output", "{w}/run", "--epochs", "0"],
     ["epochs must be positive"]),
    ("train-epochs-nan", ["train", "--space", TINY, "--output", "{w}/run", "--epochs", "nan"], ["--epochs"]),
    ("train-lr-nan", ["train", "--space", TINY, "--output", "{w}/run", "--lr", "nan"], ["--lr", "finite"]),
    ("train-lr-inf", ["train", "--space", TINY, "--output", "{w}/run", "--lr", "inf"], ["--lr", "finite"]),
    ("train-lr-negative", ["train", "--space", TINY, "--output", "{w}/run", "--lr", "-1"], ["lr must be positive"]),
    ("train-lr-zero", ["train", "--space", TINY, "--output", "{w}/run", "--lr", "0"], ["lr must be positive"]),
    ("train-batch-negative", ["train", "--space", TINY, "--output", "{w}/run", "--batch-size", "-4"],
     ["batch_size must be positive"]),
    ("train-workers", ["train", "--space", TINY, "--output", "{w}/run", "--workers", "-2"], ["workers"]),
    ("train-mixup", ["train", "--space", TINY, "--output", "{w}/run", "--mixup", "-1"], ["augment.mixup"]),
    ("train-label-smoothing", ["train", "--space", TINY, "--output", "{w}/run", "--label-smoothing", "1"],
     ["augment.label_smoothing must be below 1"]),
    ("train-config-pipe", ["train", "--space", TINY, "--output", "{w}/run", "--config", "{w}/pipe"], ["named pipe"]),
    ("train-config-nan", ["train", "--space", TINY, "--output", "{w}/run", "--config", "{w}/train-nan-epochs.yaml"],
     ["epochs must be a finite number"]),
    ("train-config-crop", ["train", "--space", TINY, "--output", "{w}/run", "--config", "{w}/train-crop.yaml"],
     ["augment.crop", "diagonal"]),
    ("train-config-drop-path", ["train", "--space", TINY, "--output", "{w}/run", "--config",
                                "{w}/train-drop-path.yaml"], ["drop_path must be at most 1"]),
    ("train-config-lr-inf", ["train", "--space", TINY, "--output", "{w}/run", "--config", "{w}/train-lr-inf.yaml"],
     ["lr must be a finite number"]),
    ("train-config-mixup", ["train", "--space", TINY, "--output", "{w}/run", "--config",
                            "{w}/train-mixup-neg.yaml"], ["augment.mixup"]),
    ("train-config-workers", ["train", "--space", TINY, "--output", "{w}/run", "--config",
                              "{w}/train-workers-str.yaml"], ["workers must be an integer"]),
    ("train-output-file", ["train", "--space", TINY, "--output", "{w}/a-file"], ["not a folder"]),
    ("train-output-long", ["train", "--space", TINY, "--output", "{w}/" + LONG], ["longer than 255"]),
    ("train-device", ["train", "--space", TINY, "--output", "{w}/run", "--device", "gpu"], ["device must be"]),
    ("train-space-pipe", ["train", "--space", "{w}/pipe", "--output", "{w}/run"], ["named pipe"]),
    ("train-distill-alpha-unused", ["train", "--space", TINY, "--output", "{w}/run", "--distill-alpha", "0.5"],
     ["--distill-alpha", "--distill inplace", "distill none"]),
    ("train-sandwich-random-unused", ["train", "--space", TINY, "--output", "{w}/run", "--sandwich-random", "3"],
     ["--sandwich-random", "--sampling sandwich", "sampling uniform"]),
    # teacher
    ("teacher-epochs-zero", ["teacher", "--output", "{w}/t", "--epochs", "0"], ["--epochs", "positive"]),
    ("teacher-lr-nan", ["teacher", "--output", "{w}/t", "--lr", "nan"], ["--lr"]),
    ("teacher-widths-zero", ["teacher", "--output", "{w}/t", "--widths", "0", "16", "16"], ["--widths"]),
    ("teacher-widths-huge", ["teacher", "--output", "{w}/t", "--widths", "5000", "16", "16"],
     ["--widths", "at most 4096"]),
    ("teacher-device", ["teacher", "--output", "{w}/t", "--device", "gpu"], ["--device"]),
    ("teacher-output-file", ["teacher", "--output", "{w}/a-file"], ["not a folder"]),
    ("teacher-output-not-empty", ["teacher", "--output", "{w}/data"], ["not empty", "--force"]),
    ("teacher-resume-force", ["teacher", "--output", "{w}/t", "--resume", "--force"], ["--resume", "pass one"]),
    ("teacher-exclude-missing", ["teacher", "--output", "{w}/t", "--exclude-split", "{w}/nope.json"],
     ["--exclude-split", "not found"]),
    ("teacher-exclude-pipe", ["teacher", "--output", "{w}/t", "--exclude-split", "{w}/pipe"], ["named pipe"]),
    ("teacher-data-missing", ["teacher", "--output", "{w}/t", "--data-path", "{w}/nope"], ["does not exist"]),
    ("teacher-batch-too-big", ["teacher", "--output", "{w}/t", "--data-path", "{w}/data", "--no-progress"],
     ["batch size 256", "training images"]),
    # finetune
    ("finetune-teacher-pickle", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                 "--output", "{w}/ft", "--teacher", "{w}/evil.pt"], ["pickled"]),
    ("finetune-epochs-zero", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                              "--output", "{w}/ft", "--epochs", "0"], ["epochs must be positive"]),
    ("finetune-lr-nan", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/ft",
                         "--lr", "nan"], ["--lr", "finite"]),
    ("finetune-lr-zero", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/ft",
                          "--lr", "0"], ["lr must be positive"]),
    ("finetune-distill-alpha-no-teacher", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                          "--output", "{w}/ft", "--teacher", "none", "--distill-alpha", "0.5"],
     ["--distill-alpha", "--teacher none"]),
    ("finetune-sandwich-random", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                  "--output", "{w}/ft", "--sandwich-random", "2"], ["--sandwich-random", "one subnet"]),
    ("finetune-pipe", ["finetune", "--checkpoint", "{w}/pipe", "--arch", "smallest", "--output", "{w}/ft"],
     ["named pipe"]),
    ("finetune-pickle", ["finetune", "--checkpoint", "{w}/evil.pt", "--arch", "smallest", "--output", "{w}/ft"],
     ["pickled"]),
    ("finetune-output-file", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                              "--output", "{w}/a-file"], ["not a folder"]),
    ("finetune-device", ["finetune", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/ft",
                         "--device", "gpu"], ["device must be"]),
    # evaluate
    ("evaluate-missing", ["evaluate", "--checkpoint", "{w}/nope.pt"], ["not found"]),
    ("evaluate-pipe", ["evaluate", "--checkpoint", "{w}/pipe"], ["named pipe"]),
    ("evaluate-pickle", ["evaluate", "--checkpoint", "{w}/evil.pt"], ["pickled"]),
    ("evaluate-nan-weights", ["evaluate", "--checkpoint", "{w}/nan.pt"], ["nan or infinite"]),
    ("evaluate-truncated", ["evaluate", "--checkpoint", "{w}/cut.pt"],
     ["cannot load checkpoint", "not a readable pytorch archive"]),
    ("evaluate-empty", ["evaluate", "--checkpoint", "{w}/empty.pt"], ["empty.pt", "ends early"]),
    ("evaluate-text", ["evaluate", "--checkpoint", "{w}/hi.txt"], ["hi.txt", "not a torch.save file"]),
    ("evaluate-noise", ["evaluate", "--checkpoint", "{w}/noise.pt"], ["noise.pt", "not a torch.save file"]),
    ("evaluate-batch-zero", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--batch-size", "0"], ["--batch-size"]),
    ("evaluate-limit-negative", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--limit", "-1"], ["--limit"]),
    ("evaluate-workers-nan", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--workers", "nan"], ["--workers"]),
    ("evaluate-json-exists", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--json", "{w}/existing.json"],
     ["--force"]),
    ("evaluate-json-folder", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--json", "{w}/folder"], ["is a folder"]),
    ("evaluate-arch-pipe", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--arch", "{w}/pipe"], ["named pipe"]),
    ("evaluate-subsplit-indices", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--data-path", "{w}/data",
                                   "--split", "heldout", "--subsplit", "{w}/split-bad.json"], ["heldout", "indices"]),
    ("evaluate-subsplit-ignored", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--subsplit", "{w}/split-bad.json"],
     ["--subsplit", "--split heldout", "got --split val"]),
    ("evaluate-device", ["evaluate", "--checkpoint", "{w}/supernet.pt", "--device", "gpu"], ["--device"]),
    ("evaluate-quantized-shape", ["evaluate", "--quantized", "{w}/q-shape"], ["head.weight", "shape"]),
    ("evaluate-quantized-arch", ["evaluate", "--quantized", "{w}/q", "--arch", "largest"], ["--arch", "its own arch"]),
    # memory
    ("memory-sram-nan", ["memory", "--space", TINY, "--sram-kb", "nan"], ["--sram-kb", "finite"]),
    ("memory-sram-inf", ["memory", "--space", TINY, "--sram-kb", "inf"], ["--sram-kb", "finite"]),
    ("memory-flash-negative", ["memory", "--space", TINY, "--flash-kb", "-1"], ["--flash-kb"]),
    ("memory-reserve-nan", ["memory", "--space", TINY, "--reserve-kb", "nan"], ["--reserve-kb"]),
    ("memory-classes-zero", ["memory", "--space", TINY, "--num-classes", "0"], ["--num-classes"]),
    ("memory-rank", ["memory", "--space", TINY, "--rank-ratio", "2"], ["--rank-ratio", "at most 1"]),
    ("memory-arch-deep", ["memory", "--arch", "{w}/deep.json"], ["deep.json", "nested too deeply"]),
    ("memory-patch", ["memory", "--space", TINY, "--patch-size", "0"], ["--patch-size"]),
    ("memory-arch-pipe", ["memory", "--arch", "{w}/pipe"], ["named pipe"]),
    ("memory-plot-exists", ["memory", "--space", TINY, "--plot", "{w}/existing.png"], ["--force"]),
    ("memory-plot-parent-file", ["memory", "--space", TINY, "--plot", "{w}/a-file/p.png"], ["is a file"]),
    ("memory-board", ["memory", "--space", TINY, "--board", "esp32"], ["unknown board"]),
    ("memory-arch-python-tag", ["memory", "--arch", "{w}/evil.yaml"], ["malformed yaml"]),
    ("memory-arch-nan", ["memory", "--arch", "{w}/nan-arch.yaml"], ["rank_ratio"]),
    ("memory-arch-which", ["memory", "--arch", "{w}/nan-arch.yaml", "--which", "smallest"], ["--which", "--arch"]),
    ("memory-arch-classes", ["memory", "--arch", "{w}/nan-arch.yaml", "--num-classes", "5"],
     ["--num-classes", "--arch"]),
    # search
    ("search-heldout-negative", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2",
                                 "--heldout-limit", "-1"], ["--heldout-limit"]),
    ("search-population-zero", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2",
                                "--population", "0"], ["--population"]),
    ("search-population-huge", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2",
                                "--population", "100000000"], ["population", "draws"]),
    ("search-population-nan", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2",
                               "--population", "nan"], ["--population"]),
    ("search-m-prob", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--m-prob", "1.5"],
     ["--m-prob", "at most 1"]),
    ("search-s-prob-nan", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--s-prob", "nan"],
     ["--s-prob"]),
    ("search-sram-nan", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--sram-kb", "nan"],
     ["--sram-kb"]),
    ("search-sram-zero", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--sram-kb", "0"],
     ["--sram-kb"]),
    ("search-top-k", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--top-k", "0"],
     ["--top-k"]),
    ("search-device", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/s2", "--device", "tpu"],
     ["--device"]),
    ("search-checkpoint-pipe", ["search", "--checkpoint", "{w}/pipe", "--output", "{w}/s2"], ["named pipe"]),
    ("search-existing", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/search"], ["--resume"]),
    ("search-output-file", ["search", "--checkpoint", "{w}/supernet.pt", "--output", "{w}/a-file"], ["not a folder"]),
    # evolve-space
    ("evolve-rank-nan", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--rank-grid", "nan"], ["--rank-grid"]),
    ("evolve-start-and-starts", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--start", "0.5:4",
                                 "--starts", "2"], ["--start", "--starts", "one of them"]),
    ("evolve-rank-zero", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--rank-grid", "0"], ["--rank-grid"]),
    ("evolve-patch-zero", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--patch-grid", "0"],
     ["--patch-grid"]),
    ("evolve-weight", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--weight", "-1"], ["--weight"]),
    ("evolve-start-text", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--start", "0.5:x"],
     ["bad start point"]),
    ("evolve-start-rank", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--start", "2:4"],
     ["bad start point"]),
    ("evolve-rounds", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--rounds", "0"], ["--rounds"]),
    ("evolve-epochs-nan", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--epochs", "nan"], ["--epochs"]),
    ("evolve-config-pipe", ["evolve-space", "--space", TINY, "--output", "{w}/e", "--config", "{w}/pipe"],
     ["named pipe"]),
    ("evolve-output-file", ["evolve-space", "--space", TINY, "--output", "{w}/a-file"], ["not a folder"]),
    # quantize
    ("quantize-overwrite", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/q"],
     ["--force"]),
    ("quantize-output-file", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                              "--output", "{w}/a-file"], ["not a folder"]),
    ("quantize-percentile-zero", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                  "--output", "{w}/q2", "--percentile", "0"], ["--percentile"]),
    ("quantize-percentile-high", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                  "--output", "{w}/q2", "--percentile", "101"], ["--percentile", "at most 100"]),
    ("quantize-percentile-low", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                 "--output", "{w}/q2", "--percentile", "40"], ["--percentile 40", "above 50"]),
    ("quantize-percentile-nan", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                 "--output", "{w}/q2", "--percentile", "nan"], ["--percentile"]),
    ("quantize-percentile-minmax", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                                    "--output", "{w}/q2", "--method", "minmax", "--percentile", "99"],
     ["--percentile", "minmax"]),
    ("quantize-images-nan", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest",
                             "--output", "{w}/q2", "--calibration-images", "nan"], ["--calibration-images"]),
    ("quantize-seed", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/q2",
                       "--seed", "-1"], ["--seed"]),
    ("quantize-pickle", ["quantize", "--checkpoint", "{w}/evil.pt", "--arch", "smallest", "--output", "{w}/q2"],
     ["pickled"]),
    ("quantize-arch-pipe", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "{w}/pipe",
                            "--output", "{w}/q2"], ["named pipe"]),
    ("quantize-method", ["quantize", "--checkpoint", "{w}/supernet.pt", "--arch", "smallest", "--output", "{w}/q2",
                         "--method", "magic"], ["--method"]),
    # export
    ("export-missing", ["export", "--quantized", "{w}/nope", "--output", "{w}/c"],
     ["not a quantised model", "no such folder"]),
    ("export-quantized-file", ["export", "--quantized", "{w}/a-file", "--output", "{w}/c"],
     ["not a quantised model", "a file, not a folder"]),
    ("export-shape", ["export", "--quantized", "{w}/q-shape", "--output", "{w}/c"], ["head.weight", "shape"]),
    ("export-dtype", ["export", "--quantized", "{w}/q-dtype", "--output", "{w}/c"], ["pos_embed", "int32"]),
    ("export-missing-array", ["export", "--quantized", "{w}/q-missing", "--output", "{w}/c"], ["gelu_lut"]),
    ("export-extra-array", ["export", "--quantized", "{w}/q-extra", "--output", "{w}/c"], ["payload"]),
    ("export-shift", ["export", "--quantized", "{w}/q-shift", "--output", "{w}/c"], ["head.shift"]),
    ("export-float-const", ["export", "--quantized", "{w}/q-float", "--output", "{w}/c"],
     ["blocks.0.attn.qk", "integer"]),
    ("export-c-code", ["export", "--quantized", "{w}/q-ccode", "--output", "{w}/c"], ["stem.pos_add", "integer"]),
    ("export-zero-point", ["export", "--quantized", "{w}/q-zp", "--output", "{w}/c"], ["logits", "300"]),
    ("export-nan-scale", ["export", "--quantized", "{w}/q-nan", "--output", "{w}/c"], ["image", "scale"]),
    ("export-huge-scale", ["export", "--quantized", "{w}/q-huge-scale", "--output", "{w}/c"],
     ["image", "scale 1e+308"]),
    ("export-checkpoint-number", ["export", "--quantized", "{w}/q-checkpoint-number", "--output", "{w}/c"],
     ["info 'checkpoint'", "not 5"]),
    ("evaluate-checkpoint-number", ["evaluate", "--quantized", "{w}/q-checkpoint-number"],
     ["info 'checkpoint'", "not 5"]),
    ("export-no-const", ["export", "--quantized", "{w}/q-noconst", "--output", "{w}/c"], ["'norm'"]),
    ("export-arch", ["export", "--quantized", "{w}/q-arch", "--output", "{w}/c"], ["shape"]),
    ("export-format", ["export", "--quantized", "{w}/q-format", "--output", "{w}/c"], ["format"]),
    ("export-deep-manifest", ["export", "--quantized", "{w}/q-deep", "--output", "{w}/c"], ["q-deep", "nested"]),
    ("export-json", ["export", "--quantized", "{w}/q-json", "--output", "{w}/c"], ["not a quantised model"]),
    ("export-npz-pipe", ["export", "--quantized", "{w}/q-pipe", "--output", "{w}/c"], ["named pipe"]),
    ("export-npz-bomb", ["export", "--quantized", "{w}/q-bomb", "--output", "{w}/c"], ["cap"]),
    ("export-npz-pickle", ["export", "--quantized", "{w}/q-pickle", "--output", "{w}/c"], ["not a quantised model"]),
    ("export-overwrite", ["export", "--quantized", "{w}/q", "--output", "{w}/user-export"], ["--force"]),
    ("export-output-file", ["export", "--quantized", "{w}/q", "--output", "{w}/a-file"], ["not a folder"]),
    ("export-board", ["export", "--quantized", "{w}/q", "--output", "{w}/c", "--board", "esp32"], ["unknown board"]),
    ("export-techniques", ["export", "--quantized", "{w}/q", "--output", "{w}/c", "--techniques", "magic"],
     ["magic"]),
    # verify
    ("verify-missing", ["verify", "{w}/nope"], ["not an exported engine"]),
    ("verify-file", ["verify", "{w}/a-file"], ["not an exported engine"]),
    ("verify-shape", ["verify", "{w}/engine-shape"], ["head.weight", "shape"]),
    ("verify-c-code", ["verify", "{w}/engine-ccode"], ["stem.pos_add", "integer"]),
    ("verify-export-json", ["verify", "{w}/engine-info"], ["export.json", "does not match"]),
    ("verify-export-json-malformed", ["verify", "{w}/engine-nojson"], ["not an exported engine"]),
    ("verify-images-zero", ["verify", "{w}/engine", "--images", "0"], ["--images"]),
    ("verify-images-nan", ["verify", "{w}/engine", "--images", "nan"], ["--images"]),
    ("verify-images-huge", ["verify", "{w}/engine", "--images", "100000000"], ["--images", "10,000"]),
    ("verify-images-emulator", ["verify", "{w}/engine", "--target", "cortex-m7", "--images", "9999"],
     ["--images 9999", "emulated core holds at most", "--target host"]),
    ("verify-seed", ["verify", "{w}/engine", "--seed", "-1"], ["--seed"]),
    ("verify-json-exists", ["verify", "{w}/engine", "--json", "{w}/existing.json"], ["--force"]),
    ("verify-data-path", ["verify", "{w}/engine", "--data-path", "{w}/nope"], ["nope"]),
    ("verify-target", ["verify", "{w}/engine", "--target", "esp32"], ["--target"]),
    # a flag that the rest of the command line makes do nothing is refused, not ignored
    ("verify-portable-host", ["verify", "{w}/engine", "--portable"], ["--portable", "--target cortex-m"]),
    ("verify-no-sanitize-emulator", ["verify", "{w}/engine", "--target", "cortex-m7", "--no-sanitize"],
     ["--no-sanitize", "host"]),
    # pipeline
    ("pipeline-missing", ["pipeline", "--config", "{w}/nope.yaml"], ["not found"]),
    ("pipeline-out-under-file", ["pipeline", "--config", "{w}/pipeline-out-under-file.yaml"],
     ["cannot create", "a-file/run", "not a directory"]),
    ("pipeline-pipe", ["pipeline", "--config", "{w}/pipe"], ["named pipe"]),
    ("pipeline-epochs", ["pipeline", "--config", "{w}/pipeline-method.yaml", "--epochs", "0"], ["--epochs"]),
    ("pipeline-population-nan", ["pipeline", "--config", "{w}/pipeline-pop-nan.yaml"], ["search.population"]),
    ("pipeline-method", ["pipeline", "--config", "{w}/pipeline-method.yaml"], ["quantize.method", "magic"]),
    ("pipeline-images", ["pipeline", "--config", "{w}/pipeline-images.yaml"], ["verify.images"]),
    ("pipeline-emulator", ["pipeline", "--config", "{w}/pipeline-emulator.yaml"], ["verify.emulator"]),
    ("pipeline-per-class", ["pipeline", "--config", "{w}/pipeline-per-class.yaml"], ["search.per_class"]),
    ("pipeline-calibration", ["pipeline", "--config", "{w}/pipeline-calib.yaml"], ["calibration_images", "integer"]),
    ("pipeline-train-nan", ["pipeline", "--config", "{w}/pipeline-train-nan.yaml"], ["epochs must be a finite"]),
    ("pipeline-no-data", ["pipeline", "--config", "{w}/pipeline-no-data.yaml"], ["data path does not exist"]),
    ("pipeline-output-file", ["pipeline", "--config", "{w}/pipeline-out-file.yaml"], ["is a file"]),
    ("pipeline-board-int", ["pipeline", "--config", "{w}/pipeline-board-int.yaml"], ["board"]),
    ("pipeline-space-pipe", ["pipeline", "--config", "{w}/pipeline-space-pipe.yaml"], ["named pipe"]),
]


@pytest.fixture(scope="module")
def archs_folder(ws):
    run_cli("space", "--space", TINY, "--arch", "largest", "--output", ws / "archs", check=True)
    return ws / "archs"


def _check_case(ws, run, args, needles):
    before = _digest(ws)
    proc = run(*[str(a).replace("{w}", str(ws)) for a in args])
    line = assert_one_line_error(proc, *needles)
    assert line.startswith(f"mcuformer {args[0]}: error: "), line
    assert "weights_only=False" not in line
    assert _digest(ws) == before
    assert not (ROOT / "PWNED").exists() and not (ws / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.parametrize("args,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(ws, archs_folder, args, needles):
    _check_case(ws, run_in_process, args, needles)


# the same through `python -m mcuformer` (exit status, stderr and start-up as a user gets them), one or
# two per verb: each costs an interpreter and a torch import
SUBPROCESS = ["space-pipe", "subsplit-bomb", "train-config-nan", "finetune-pipe", "evaluate-pickle",
              "memory-sram-nan", "search-heldout-negative", "evolve-start-rank", "quantize-overwrite", "export-c-code",
              "export-overwrite", "verify-shape", "pipeline-pipe"]


@pytest.mark.parametrize("case", SUBPROCESS)
def test_bad_input_from_the_command_line(ws, archs_folder, case):
    [(args, needles)] = [c[1:] for c in CASES if c[0] == case]
    _check_case(ws, lambda *a: run_cli(*a, timeout=120), args, needles)


def test_suite_covers_every_verb():
    from mcuformer.cli.main import VERBS
    import importlib
    verbs = {importlib.import_module(m).NAME for m in VERBS}
    assert verbs == {c[1][0] for c in CASES} and len(CASES) >= 80


def test_an_output_where_nothing_can_be_written_is_refused_before_any_work(ws, tmp_path, monkeypatch):
    """A folder without write permission (as a user other than root meets it), for a new run folder, a
    file, and an existing folder written into: one line at once, not after the training or search."""
    locked, kept = tmp_path / "locked", tmp_path / "kept"  # kept: an existing folder in a writable one
    locked.mkdir()
    kept.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: (False if Path(p) in (locked, kept)
                                                                else real_access(p, mode, *a, **k)))
    for args, folder in ((["teacher", "--output", locked / "run"], locked),
                         (["train", "--space", TINY, "--output", locked / "run"], locked),
                         (["search", "--checkpoint", "{w}/supernet.pt", "--output", locked / "s"], locked),
                         (["evaluate", "--checkpoint", "{w}/supernet.pt", "--json", locked / "top1.json"], locked),
                         (["sub-split", "--per-class", "1", "--output", locked / "split.json"], locked),
                         (["export", "--quantized", "{w}/q", "--output", kept, "--force"], kept)):
        _check_case(ws, run_in_process, args, ["not writable", f"{folder} "])
    assert not any(locked.iterdir()) and not any(kept.iterdir())


def test_an_image_file_that_is_a_decompression_bomb_is_refused(tmp_path):
    from mcuformer.data.folder import load_image
    from mcuformer.errors import DataError
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20000, 10000))
    with pytest.raises(DataError, match="too large to decode"):
        load_image(str(tmp_path / "bomb.png"))


# ---- writers: --force replaces only what they write --------------------------------------------------

def test_export_force_keeps_the_users_other_files(ws, tmp_path):
    out = tmp_path / "c"
    shutil.copytree(ws / "user-export", out)
    (out / "mine.c").write_text("int mine;\n")
    run_cli("export", "--quantized", ws / "q", "--output", out, "--force", check=True)
    assert (out / "mine.c").read_text() == "int mine;\n"
    assert (out / "quantized" / "notes.txt").read_text() == "keep me\n"
    assert "my own Makefile" not in (out / "Makefile").read_text()
    assert (out / "quantized" / "params.npz").read_bytes() == (ws / "q" / "params.npz").read_bytes()


def test_verify_with_a_relative_folder(ws, tmp_path):
    shutil.copytree(ws / "engine", tmp_path / "eng")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", "mcuformer", "verify", "eng", "--images", "1", "--no-sanitize"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "bit-exact" in proc.stdout


def test_validated_constants_are_plain_integers(ws):
    """What the generator formats: Python ints made by the validator, never the manifest's own values."""
    from mcuformer.quantize.model import QuantModel
    from mcuformer.quantize.validate import validate_quant_model
    q = QuantModel.load(ws / "q")
    q.consts["head"]["zero_point"] = np.int64(q.consts["head"]["zero_point"])
    q.consts["norm"]["shift"] = float(q.consts["norm"]["shift"])
    v = validate_quant_model(q)
    values = [x for c in v.consts.values() for x in c.values()] + [zp for _, zp in v.act.values()]
    assert values and all(type(x) is int for x in values)
    assert all(type(s) is float for s, _ in v.act.values())


def test_a_failed_quantized_save_keeps_the_old_pair(ws, tmp_path):
    """params.npz and manifest.json are replaced together or not at all (here a folder holds the manifest's place)."""
    from mcuformer.quantize.model import QuantModel
    out = tmp_path / "q"
    shutil.copytree(ws / "q", out)
    (out / "manifest.json").unlink()
    (out / "manifest.json").mkdir()
    before = _digest(out)
    with pytest.raises(IsADirectoryError):
        QuantModel.load(ws / "q-extra").save(out)
    assert _digest(out) == before


def test_files_written_together_keep_the_old_ones_when_a_write_fails(tmp_path):
    from mcuformer.utils.io import atomic_write_all
    (tmp_path / "a").write_text("old a")
    (tmp_path / "b").write_text("old b")

    def full_disk(f):
        f.write("half of b")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space left"):
        atomic_write_all([(tmp_path / "a", lambda f: f.write("new a"), "w"), (tmp_path / "b", full_disk, "w")])
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a": "old a", "b": "old b"}


def test_a_search_state_with_damaged_records_is_refused(tmp_path):
    """A resumed state is checked before the search starts: its history records and that its archs lie in the
    supernet's space (a damaged record used to fail in the plots, after the progress bar)."""
    from mcuformer.errors import ConfigError
    from mcuformer.search.evolution import EvolutionState, Scored
    from mcuformer.search.runner import _check_state_archs
    from mcuformer.space import SearchSpace
    space = SearchSpace.load(TINY)
    n = space.num_classes or 2
    arch = space.smallest(n)
    record = {"generation": 0, "best_fitness": 50.0, "topk_mean_fitness": 50.0, "population_mean_fitness": 50.0}
    good = EvolutionState(1, [arch], [Scored(arch, 50.0, 1, 1)], [record], 0).to_dict({})
    assert EvolutionState.from_dict(good, {}, "state.json").history == [record]
    for history in ("x", ["x"], [{**record, "best_fitness": "high"}], [{**record, "generation": None}]):
        with pytest.raises(ConfigError, match="state.json is damaged"):
            EvolutionState.from_dict({**good, "history": history}, {}, "state.json")
    with pytest.raises(ConfigError, match="fractional generation"):
        EvolutionState.from_dict({**good, "generation": 0.5}, {}, "state.json")
    net = SimpleNamespace(space=space, num_classes=n)
    _check_state_archs(EvolutionState.from_dict(good, {}, "state.json"), net, "state.json")
    outside = dataclasses.replace(arch, embed_dim=40)
    for state in (EvolutionState(1, [outside], [], [record], 0), EvolutionState(1, [arch], [Scored(outside, 1.0, 1, 1)],
                                                                               [record], 0)):
        with pytest.raises(ConfigError, match="state.json is damaged .*embed_dim 40"):
            _check_state_archs(state, net, "state.json")
    with pytest.raises(ConfigError, match="num_classes"):
        _check_state_archs(EvolutionState(1, [space.smallest(n + 1)], [], [record], 0), net, "state.json")


# ---- full disk ---------------------------------------------------------------------------------------

def test_full_disk_is_one_line_and_leaves_no_temp_file(ws, tmp_path):
    """RLIMIT_FSIZE makes a write fail with EFBIG as a full disk fails with ENOSPC: an OSError mid-write."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
    out = tmp_path / "c"
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "mcuformer", "export", "--quantized", str(ws / "q"), "--output",
                           str(out)], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
                          preexec_fn=limit)
    assert_one_line_error(proc, "file too large")
    assert not out.exists()  # no temp file, and no half engine: the folders made for it are taken back


def test_space_archs_replace_old_ones_together_or_not_at_all(tmp_path, monkeypatch):
    """A full disk at the fourth of six arch files: the folder keeps all six old ones, none of the new."""
    import errno

    import mcuformer.utils.io as io_module
    out = tmp_path / "archs"
    assert run_in_process("space", "--space", TINY, "--arch", "random:6:1", "--output", out).returncode == 0
    before = _digest(out)
    real, calls = io_module._write_temp, []

    def full_disk_at_the_fourth(path, write, mode):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, mode)
    monkeypatch.setattr(io_module, "_write_temp", full_disk_at_the_fourth)
    proc = run_in_process("space", "--space", TINY, "--arch", "random:6:2", "--output", out, "--force")
    assert_one_line_error(proc, "no space left", "random3.yaml")
    assert _digest(out) == before


def test_a_failed_export_over_an_engine_leaves_it_whole(ws, tmp_path):
    """--force over an earlier engine, and a write fails: never new code beside the old weights. (This export's
    mcuformer_model.h, 2.3 KB, differs from the engine's and fits the limit; its mcuformer_model.c, 9 KB, does not.)"""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
    out = shutil.copytree(ws / "engine", tmp_path / "c")
    before = _digest(out)
    proc = subprocess.run([sys.executable, "-m", "mcuformer", "export", "--quantized", str(ws / "q"), "--output",
                           str(out), "--force", "--board", "stm32l432kc", "--schedule", "smallest"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, preexec_fn=limit)
    assert_one_line_error(proc, "file too large")
    assert _digest(out) == before


def test_an_unwritable_folder_is_one_line(tmp_path):
    """/sys refuses new files even to root in a container; where it does not, the case cannot be made."""
    target = Path("/sys/mcuformer-test.png")
    try:
        target.write_bytes(b"")
    except OSError:
        pass
    else:
        target.unlink()
        pytest.skip("/sys is writable here")
    proc = run_in_process("memory", "--space", TINY, "--plot", target)
    line = assert_one_line_error(proc, str(target))
    assert "denied" in line.lower() or "not permitted" in line.lower() or "read-only" in line.lower(), line


# ---- kills -------------------------------------------------------------------------------------------

KILLED_WRITE = """
import sys, time
from mcuformer.utils.io import atomic_write
def write(f):
    f.write("x" * 100000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
atomic_write(sys.argv[1], write)
"""


def test_no_temp_file_after_a_killed_write_and_a_rerun(tmp_path, image_folder):
    target = tmp_path / "split.json"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    temps = list(tmp_path.glob(".split.json.*.tmp"))
    assert len(temps) == 1 and temps[0].stat().st_size == 100000 and not target.exists()
    run_cli("sub-split", "--data-path", image_folder, "--per-class", "1", "--output", target, check=True)
    assert json.loads(target.read_text())["per_class"] == 1
    assert list(tmp_path.glob(".split.json.*.tmp")) == []


def test_a_running_writers_temp_file_is_kept(tmp_path):
    from mcuformer.utils.io import remove_stale_temps, write_text
    live = tmp_path / f".f.json.{os.getpid()}.abc.tmp"
    live.write_text("in progress")
    dead = tmp_path / ".f.json.999999999.abc.tmp"
    dead.write_text("left by a kill")
    write_text(tmp_path / "f.json", "{}")
    assert live.exists() and not dead.exists()
    assert remove_stale_temps(tmp_path / "f.json") == []


CHECKPOINT_BENCHMARKS = ("budget_curve", "fitness_fidelity", "flash_fill", "model_zoo", "search_compare",
                         "search_latency", "search_seeds")


@pytest.mark.parametrize("args, words", [(["--fill", "1.5"], ("--fill", "1.5")),
                                          (["--board", "stm32f103"], ("no zoo model", "stm32f103"))])
def test_flash_fill_refuses_an_impossible_fill_or_a_board_without_a_zoo_model(args, words, tmp_path):
    before = _results_hashes()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/flash_fill.py"), *args, "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc, "flash_fill.py: error: ", *words)
    assert _results_hashes() == before and not any(tmp_path.iterdir())


@pytest.mark.parametrize("alpha", ["1.5", "0", "nan"])
def test_teacher_distill_refuses_an_impossible_distill_alpha(alpha, tmp_path):
    before = _results_hashes()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/teacher_distill.py"), "--teacher",
                           str(ROOT / "models/cifar10-zoo/teacher.pt"), "--distill-alpha", alpha, "--work",
                           str(tmp_path / "work")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc, "teacher_distill.py: error: ", "--distill-alpha", alpha)
    assert _results_hashes() == before and not (tmp_path / "work").exists()


@pytest.mark.parametrize("content", ["{not json", '{"arch": 1}', "[]"])
def test_flash_fill_refuses_a_damaged_pick_and_keeps_it(content, tmp_path):
    pick = tmp_path / "stm32f746-fill0.8-ep3" / "pick.json"
    pick.parent.mkdir()
    pick.write_text(content)
    before = _results_hashes()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/flash_fill.py"), "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc, "flash_fill.py: error: ", "pick.json")
    assert _results_hashes() == before and pick.read_text() == content


@pytest.mark.parametrize("kept, words", [("arch.yaml", ("holds the run of another subnet",)),
                                         ("accuracy.json", ("measured", "E64"))])
def test_flash_fill_never_reuses_another_subnets_run(kept, words, tmp_path):
    from mcuformer.utils.io import file_sha256
    work = tmp_path / "stm32f746-fill0.8-ep3"
    (work / "zoo-pick").mkdir(parents=True)
    zoo = json.loads((ROOT / "models/cifar10-zoo/int8-stm32f746/zoo.json").read_text())
    other = json.loads((ROOT / "models/cifar10-zoo/int8-stm32l432kc/zoo.json").read_text())
    settings = {"supernet_sha256": file_sha256(ROOT / "models/cifar10-zoo/supernet.pt"), "board": "stm32f746",
                "fill": 0.8, "candidates": 48, "seed": 0, "max_draws": 200000}
    (work / "pick.json").write_text(json.dumps({
        "arch": zoo["arch"], "summary": zoo["summary"], "flash_bytes": 1, "flash_used": 0.9, "heldout_top1": 1.0,
        "heldout_loglik": -1.0, "candidates": 1, "settings": settings}))
    if kept == "arch.yaml":  # a fine-tune of the L432KC's subnet sits where the F746's pick would continue
        (work / "zoo-pick/arch.yaml").write_text(json.dumps({"arch": other["arch"]}))
    else:
        (work / "zoo-pick/accuracy.json").write_text(json.dumps({"arch": other["summary"], "float_top1": 1,
                                                                 "int8_top1": 1, "count": 1}))
    files = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/flash_fill.py"), "--work", str(tmp_path),
                           "--output", str(tmp_path / "out.json")], capture_output=True, text=True, timeout=300)
    assert_one_line_error(proc, "flash_fill.py: error: ", *words)
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == files
    assert not (tmp_path / "out.json").exists()


def _results_hashes():
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "benchmarks/results").glob("*")
            if p.is_file()}


@pytest.mark.parametrize("name", CHECKPOINT_BENCHMARKS)
def test_a_benchmark_given_a_missing_checkpoint_says_so_in_one_line(name, tmp_path):
    # run as a user runs it, from another folder (search_compare and search_latency once printed tracebacks;
    # model_zoo's sha256 of the supernet once read the missing file)
    before = _results_hashes()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--checkpoint", "nope.pt"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc, f"{name}.py: error: ", "not found", "nope.pt")
    assert _results_hashes() == before


def test_model_zoo_refuses_a_missing_fine_tune_before_building_anything(tmp_path):
    before = _results_hashes()
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/model_zoo.py"), "--work", str(tmp_path / "work"),
                           "--finetuned", f"stm32f746={tmp_path / 'ft.pt'}", "stm32f427=also-missing.pt"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert_one_line_error(proc, "model_zoo.py: error: ", "not found", "ft.pt", "stm32f746")
    assert _results_hashes() == before and not (tmp_path / "work").exists()


@pytest.mark.parametrize("log", [None, "{damaged", '{"epoch": 1}\n[1]\n'])
def test_zoo_supernet_refuses_a_missing_or_damaged_log_before_writing(log, tmp_path):
    """benchmarks/zoo_supernet.py once wrote the new supernet into models/ and then stopped with a traceback on
    a damaged log.jsonl: now the log is read first, and the folder it packages into is left as it was."""
    import shutil
    run, out = tmp_path / "run", tmp_path / "models"
    run.mkdir()
    out.mkdir()
    shutil.copyfile(ROOT / "models/cifar10-tiny/supernet.pt", run / "supernet-fp16.pt")
    if log is not None:
        (run / "log.jsonl").write_text(log)
    (out / "supernet.pt").write_bytes(b"the shipped one")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/zoo_supernet.py"), "--run", str(run), "--output",
                           str(out), "--command", "x"], capture_output=True, text=True, timeout=300)
    words = ("not found", "log.jsonl") if log is None else ("log.jsonl, line", "damaged")
    assert_one_line_error(proc, "zoo_supernet.py: error: ", *words)
    assert [p.name for p in out.iterdir()] == ["supernet.pt"]
    assert (out / "supernet.pt").read_bytes() == b"the shipped one"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --gpu would train")
def test_pipeline_gpu_without_a_gpu_is_one_line(tmp_path):
    """--gpu picks the GPU-sized recipe: on a machine without one it would train for hours on the CPU."""
    proc = run_cli("pipeline", "--gpu", "--train", "--output", tmp_path / "run")
    assert_one_line_error(proc, "--gpu", "no CUDA GPU")
    assert not (tmp_path / "run").exists()
