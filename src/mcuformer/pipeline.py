"""The whole pipeline, one stage after another, each reading the artifact of the one before:
train a supernet -> evaluate its subnets -> memory report against a board.

Stages written by later work (search, quantize, export, verify) join here in the same way. Every stage
is resumable: rerunning the pipeline continues an interrupted training run and redoes only what is
missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcuformer.errors import ConfigError
from mcuformer.utils.io import read_structured, write_json

KEYS = {"space", "train_config", "data_path", "board", "output", "gpu"}


@dataclass
class PipelineConfig:
    space: list[Path]
    train_config: Path
    output: Path
    data_path: Path | None = None
    board: str = "stm32f746"

    @classmethod
    def load(cls, path, gpu: bool = False) -> "PipelineConfig":
        path = Path(path)
        d = read_structured(path)
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping")
        unknown = sorted(set(d) - KEYS)
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(KEYS)}")
        if gpu:
            if not isinstance(d.get("gpu"), dict):
                raise ConfigError(f"{path} has no gpu: section")
            d = {**d, **d["gpu"]}
        for k in ("space", "train_config", "output"):
            if not d.get(k):
                raise ConfigError(f"{path}: missing '{k}'")
        here = path.parent
        spaces = d["space"] if isinstance(d["space"], list) else [d["space"]]
        return cls(space=[here / s for s in spaces], train_config=here / d["train_config"],
                   output=(here / d["output"]).resolve(),
                   data_path=(here / d["data_path"]) if d.get("data_path") else None,
                   board=d.get("board") or "stm32f746")


def run_pipeline(cfg: PipelineConfig, *, epochs: int | None = None, progress: bool = True) -> dict:
    from mcuformer.api import evaluate_checkpoint
    from mcuformer.memory import get_board, memory_report
    from mcuformer.space import Arch, SearchSpace
    from mcuformer.train import TrainConfig, load_checkpoint, train_supernet

    space = SearchSpace.load(cfg.space)
    board = get_board(cfg.board)  # a wrong board name fails before an hour of training
    train_cfg = TrainConfig.load(cfg.train_config)
    if epochs is not None:
        train_cfg.epochs = epochs
    run_dir = cfg.output / "supernet"
    ckpt = run_dir / "checkpoint.pt"

    # 1. supernet training (continues an interrupted run; a finished one is kept)
    _stage("1/3 train the supernet", f"{space.name} on {cfg.data_path or 'the default CIFAR-10 archive'}")
    done = ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= train_cfg.epochs
    if not done:
        summary = train_supernet(space, run_dir, train_cfg, cfg.data_path, resume=True, progress=progress)
        if summary["interrupted"]:
            return {"interrupted": True, "checkpoint": str(ckpt)}

    # 2. accuracy of both ends of the space on the whole validation split
    _stage("2/3 evaluate", "largest and smallest subnets on the full validation split")
    rows = evaluate_checkpoint(ckpt, ["largest", "smallest"], data_path=cfg.data_path, workers=train_cfg.workers,
                               progress=progress)

    # 3. what each would need on the board
    _stage("3/3 memory", f"peak SRAM and flash on {board.name}")
    for r in rows:
        rep = memory_report(Arch.from_dict(r["arch"]), board)
        r["memory"] = {k: v for k, v in rep.to_dict().items()
                       if k in ("peak_sram_bytes", "lower_bound_bytes", "layerwise_baseline_bytes", "flash_bytes",
                                "fits", "binding")}
    result = {"space": space.name, "board": board.name, "checkpoint": str(ckpt),
              "curves": str(run_dir / "curves.png"), "subnets": rows}
    write_json(cfg.output / "summary.json", result)
    return result


def _stage(title: str, detail: str) -> None:
    from tqdm import tqdm
    tqdm.write(f"\n== {title}: {detail}")


def format_summary(result: dict) -> str:
    lines = [f"summary ({result['space']} on {result['board']})",
             f"{'subnet':<9}{'params':>10}{'top-1':>8}{'top-5':>8}{'SRAM KB':>9}{'flash KB':>10}  fits  arch"]
    for r in result["subnets"]:
        m = r.get("memory", {})
        sram = f"{m['peak_sram_bytes'] / 1024:.1f}" if "peak_sram_bytes" in m else "-"
        flash = f"{m['flash_bytes'] / 1024:.1f}" if "flash_bytes" in m else "-"
        fits = {True: "yes", False: "no"}.get(m.get("fits"), "-")
        lines.append(f"{r['name']:<9}{r['params']:>10,}{r['top1']:>7.2f}%{r['top5']:>7.2f}%{sram:>9}{flash:>10}  "
                     f"{fits:<4}  {r['summary']}")
    lines.append(f"checkpoint {result['checkpoint']}; training curves {result['curves']}")
    return "\n".join(lines)
