"""Package a trained supernet into models/ (the zoo supernet the main command starts from) and measure it:
the weights-only fp16 checkpoint with its held-out split beside it (no absolute path), its training
curves, and a manifest: the command that trained it, the data, the compute spent (wall time, images
seen, hardware) and the top-1 of both ends of its space on the full 10k test split, with their memory.

    python benchmarks/zoo_supernet.py --run runs/zoo/supernet --output models/cifar10-zoo \\
        --command "mcuformer train --space configs/cifar10-zoo.yaml ..." --hardware "2-core x86-64 CPU"
    # a warm restart of a packaged supernet: --continues <its manifest.json> adds its compute as a first stage
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.api import evaluate_checkpoint  # noqa: E402
from mcuformer.errors import ConfigError, run_script  # noqa: E402
from mcuformer.memory import memory_report  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.train import load_checkpoint, space_of  # noqa: E402
from mcuformer.train.plots import plot_training_curves  # noqa: E402
from mcuformer.train.warm_start import write_relocatable  # noqa: E402
from mcuformer.utils.io import file_sha256, read_structured, write_json  # noqa: E402


def is_manifest(obj) -> bool:
    """Whether obj has what a warm restart reads from the manifest of the supernet it continues."""
    compute = obj.get("compute") if isinstance(obj, dict) else None
    stages = obj.get("stages", []) if isinstance(obj, dict) else None
    return (isinstance(compute, dict) and {"command", "metrics_test_10k"} <= set(obj)
            and all(isinstance(compute.get(k), int) and not isinstance(compute.get(k), bool)
                    for k in ("epochs", "train_seconds"))
            and isinstance(stages, list)
            and all(isinstance(s, dict) and "command" in s and isinstance(s.get("compute"), dict) for s in stages))


def merge_stages(earlier: dict | None, command: str, compute: dict) -> tuple[dict, list | None]:
    """(compute spent in all, the stages) of a run that warm-started from the supernet of the manifest
    ``earlier`` (None: a run from scratch, one stage). ``earlier``'s own stages are kept, the last of them
    with the metrics its manifest measured, and this run is appended. The trainer's images_seen is
    cumulative across warm starts, its epochs and seconds are not: each stage records its own, the total
    sums them."""
    if not earlier:
        return compute, None
    before = earlier["compute"]
    stages = [dict(s) for s in earlier.get("stages") or [{"command": earlier["command"], "compute": before}]]
    stages[-1]["metrics_test_10k"] = earlier["metrics_test_10k"]
    this_stage = dict(compute)
    if isinstance(compute.get("images_seen"), int) and isinstance(before.get("images_seen"), int):
        this_stage["images_seen"] = compute["images_seen"] - before["images_seen"]
    stages.append({"command": command, "compute": this_stage})
    total = {**compute, "epochs": before["epochs"] + compute["epochs"],
             "train_seconds": before["train_seconds"] + compute["train_seconds"]}
    total.pop("planned_epochs", None)
    hardware = []  # each stage's hardware once, in order
    for st in stages:
        if st["compute"].get("hardware") not in hardware:
            hardware.append(st["compute"].get("hardware"))
    total["hardware"] = ", then ".join(map(str, hardware))
    return total, stages


def read_log(path: Path) -> list[dict]:
    """The run's log.jsonl: one JSON object per line (the trainer's epochs), refused by name when damaged."""
    if not path.is_file():
        raise ConfigError(f"{path} not found: --run must be a training run folder (or a device run's output)")
    log = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}, line {number}: not a JSON object (a damaged training log)")
        log.append(entry)
    return log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True,
                    help="the training run folder (checkpoint.pt, log.jsonl; curves.png, else drawn from the log)")
    ap.add_argument("--checkpoint", default=None,
                    help="default: <run>/checkpoint.pt (or a device run's supernet-fp16.pt)")
    ap.add_argument("--output", required=True, help="the models/ folder to write")
    ap.add_argument("--command", required=True, help="the command that trained it (relative paths)")
    ap.add_argument("--hardware", default=f"{platform.machine()} CPU", help="what it trained on")
    ap.add_argument("--board", default="stm32f746", help="the board the memory columns are measured against")
    ap.add_argument("--note", default="")
    ap.add_argument("--continues", default=None, metavar="MANIFEST",
                    help="the manifest of the supernet this run warm-started from (--init-from): its training "
                         "is added to the compute spent and kept as the first stage")
    args = ap.parse_args()
    earlier = read_structured(args.continues) if args.continues else None
    if earlier is not None and not is_manifest(earlier):
        raise ConfigError(f"--continues {args.continues}: not a zoo supernet manifest (command, compute with "
                          "epochs and train_seconds, metrics_test_10k)")
    run, out = Path(args.run), Path(args.output)
    ckpt = Path(args.checkpoint) if args.checkpoint else run / "checkpoint.pt"
    if not args.checkpoint and not ckpt.exists() and (run / "supernet-fp16.pt").exists():
        ckpt = run / "supernet-fp16.pt"  # what scripts/device_train.sh brings back
    state = load_checkpoint(ckpt)
    # a device run trained under that machine's torch, which its run.json records; else this one's (read
    # before anything is written, so that a malformed run.json leaves the output folder as it was)
    device_run = read_structured(run / "run.json") if (run / "run.json").exists() else {}
    trained_torch = device_run.get("torch") if isinstance(device_run, dict) else None
    log = read_log(run / "log.jsonl")  # before anything is written: a damaged log leaves the output as it was
    packed = write_relocatable(ckpt, out)
    if (run / "curves.png").exists():
        shutil.copyfile(run / "curves.png", out / "curves.png")
    else:  # a device run leaves its curves out (scripts/device_train.sh's 8 files): drawn from its log
        plot_training_curves(log, out / "curves.png")
    rows = evaluate_checkpoint(packed, ["largest", "smallest"], workers=1, progress=True)
    metrics = {}
    for r in rows:
        rep = memory_report(Arch.from_dict(r["arch"]), args.board)
        metrics[r["name"]] = {"arch": r["summary"], "params": r["params"], "top1": round(r["top1"], 2),
                              "top5": round(r["top5"], 2), "peak_sram_bytes": rep.peak_sram_bytes,
                              "flash_bytes": rep.flash_bytes}
    space = space_of(state)
    trained = [h for h in log if "train_loss" in h]
    compute = {"hardware": args.hardware, "epochs": len(trained),
               "planned_epochs": state.get("planned_epochs"), "images_seen": state.get("images_seen"),
               "train_seconds": round(sum(h.get("seconds", 0) for h in trained)),
               "torch": trained_torch if isinstance(trained_torch, str) else __import__("torch").__version__}
    compute, stages = merge_stages(earlier, args.command, compute)
    manifest = {
        "name": f"{space.name} supernet",
        "file": "supernet.pt", "sha256": file_sha256(packed), "bytes": packed.stat().st_size,
        "format": "mcuformer-supernet-v1, weights only in fp16 (no optimizer state: it evaluates, searches, "
                  "fine-tunes, quantizes and warm-starts training, but does not --resume)",
        "space": space.to_dict(),
        "heldout_split": "heldout-split.json (the search's held-out images; the supernet never trained on them)",
        "command": args.command,
        "data": "CIFAR-10 JPEG tarball ../shared/data/cifar10-jpg.tar.gz: 50,000 train less the 500 held-out, "
                "10,000 test; JPEG q75 re-encoding, so figures are comparable with, not identical to, published "
                "CIFAR-10 results",
        "compute": compute,
        **({"stages": stages} if stages else {}),
        "metrics_test_10k": metrics,
        "memory_board": args.board,
        "note": args.note,
    }
    write_json(out / "manifest.json", manifest)
    print(json.dumps({k: manifest[k] for k in ("compute", "metrics_test_10k")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
