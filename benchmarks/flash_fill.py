"""Does a subnet that fills the board's flash beat the search's pick once both are fine-tuned?

The search ranks subnets by their inherited (supernet) weights, and on the zoo supernet that ranking is flat
from about 500 KB of int8 flash up, so the 1 MB boards get ~0.5 MB models. Inherited weights may undersell
large subnets if those gain more from training on their own. This benchmark measures it: among seeded random
subnets whose flash lies in [fill x budget, budget] (and that fit the board's arena), it takes the one with the
best held-out log-likelihood (the search's fitness), fine-tunes it and the board's zoo pick with the same
settings and epochs, and reports both int8 top-1s on the full 10k test split.

    python benchmarks/flash_fill.py [--board stm32f746] [--fill 0.8] [--finetune-epochs 3]
    # 2 cores: 1-2 min to pick, then both fine-tunes (F746: 2.5 min per epoch for the zoo pick, 3.6 for an 830 KB
    # one; H743: 6 min per epoch for a 1.7 MB one)

Resumable: the pick is kept in --work, and each fine-tune continues its checkpoint. The zoo pick's fine-tune is
copied from model_zoo.py's run of the board (--zoo-work) when that trained the same subnet of the same supernet on
the same data with the same settings and epochs (fine-tuning is seeded: the copy is what training it again
would give).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import CheckpointError, ConfigError, run_script  # noqa: E402
from mcuformer.memory import estimate  # noqa: E402
from mcuformer.pipeline import QUANTIZE_DEFAULTS, SEARCH_DEFAULTS, copy_folder  # noqa: E402
from mcuformer.search.evolution import Feasibility, draw_unique  # noqa: E402
from mcuformer.space import Arch  # noqa: E402
from mcuformer.train.teacher import teacher_fingerprint  # noqa: E402
from mcuformer.utils.io import file_sha256, read_structured, write_json, write_yaml  # noqa: E402
from model_zoo import relative  # noqa: E402

# settings that leave a fine-tune's weights as they are: a kept run may differ in them and still be continued
WEIGHT_NEUTRAL = ("workers", "checkpoint_every_s", "eval_batch_size")


class FillsFlash(Feasibility):
    """The board's budget, and at least ``fill`` of its flash used."""

    def __init__(self, budget, fill: float):
        super().__init__(budget)
        self.floor = fill * budget.flash_bytes

    def measure(self, arch):
        sram, flash, fits = super().measure(arch)
        return sram, flash, fits and flash >= self.floor


def pick_filling(ckpt: Path, board: str, fill: float, candidates: int, seed: int, max_draws: int,
                 data_path=None) -> dict:
    """The best held-out log-likelihood among ``candidates`` distinct random subnets that fit the board
    and use at least ``fill`` of its flash."""
    from mcuformer.search.fitness import (FitnessCache, default_heldout_split, heldout_dataset, load_supernet,
                                          preload, resolve_search_data)
    from mcuformer.search.runner import make_budget
    from mcuformer.train.distributed import cleanup, init_distributed

    budget = make_budget(board)
    feasible = FillsFlash(budget, fill)
    info = init_distributed("auto")
    try:
        net = load_supernet(ckpt, info)
        rng, draws = random.Random(seed), 0

        def draw():
            nonlocal draws
            draws += 1
            return net.space.sample(rng, net.num_classes)

        archs = draw_unique(draw, candidates, set(), feasible, max_draws)
        if not archs:
            raise ConfigError(f"no subnet in {draws} draws fits {board} with at least {100 * fill:g} % of its flash")
        data = resolve_search_data(net, data_path)
        heldout, _ = heldout_dataset(net, data, default_heldout_split(net, data), SEARCH_DEFAULTS["per_class"], 0)
        cache = FitnessCache(net.model, preload(heldout, info, 500, 1), info, "auto", "loglik")
        scores = cache.evaluate(archs)
        top1 = cache.heldout_top1(archs)
    finally:
        cleanup(info)
    best = max(range(len(archs)), key=lambda i: scores[i])
    arch = archs[best]
    sram, flash, _ = feasible.measure(arch)
    return {"arch": arch.to_dict(), "summary": arch.short(), "params": arch.num_params(),
            "sram_bytes": sram, "flash_bytes": flash, "flash_used": flash / budget.flash_bytes,
            "heldout_loglik": scores[best], "heldout_top1": top1[best], "candidates": len(archs), "draws": draws,
            "candidate_flash_kb": [round(feasible.measure(a)[1] / 1024, 1) for a in archs],
            "candidate_loglik": [round(s, 4) for s in scores]}


def kept(path: Path, part):
    """``part`` of a file this script wrote earlier: a damaged or foreign file is one error, not a traceback."""
    try:
        value = part(read_structured(path))
    except (KeyError, TypeError, IndexError):
        value = None
    if value is None:
        raise ConfigError(f"{path} is not this benchmark's (damaged?); delete it or use another --work")
    return value


def zoo_finetune(zoo_run: Path, ckpt: Path, arch: dict, cfg, data: Path) -> Path | None:
    """The fine-tune folder of the board's zoo run (model_zoo.py's --work) when it trained ``arch`` from
    ``ckpt`` on ``data`` with exactly ``cfg`` to its end; None at any doubt."""
    from mcuformer.errors import McuformerError
    from mcuformer.stages import StageLedger, digest_files
    from mcuformer.train import load_checkpoint

    folder = zoo_run / "finetune"
    if not (folder / "checkpoint.pt").is_file():
        return None
    try:
        record = StageLedger(zoo_run).records.get("finetune")
        state = load_checkpoint(folder / "checkpoint.pt")
    except McuformerError:
        return None
    same = (record and record["complete"] and record["inputs"].get("checkpoint") == digest_files(ckpt)
            and str(state.get("data_path")) == str(data) and state.get("finetuned_arch") == arch
            and state.get("config") == cfg.to_dict()
            and state.get("epoch") == state.get("planned_epochs") == cfg.epochs)
    return folder if same else None


def kept_settings_differ(saved: dict, wanted: dict) -> list[str]:
    """The training settings in which a kept fine-tune's checkpoint differs from this run's (paths compared
    resolved; the ones that leave the weights as they are left out)."""
    def same(key):
        a, b = saved.get(key), wanted.get(key)
        if key == "exclude_split" and a and b:
            return Path(a).resolve() == Path(b).resolve()
        return a == b
    return sorted(k for k in set(saved) | set(wanted) if k not in WEIGHT_NEUTRAL and not same(k))


def calibration_setting(quantize: dict) -> dict:
    """The calibration a report's int8 top-1 was measured with (the percentile only where it is used)."""
    return {"method": quantize["method"], **({"percentile": quantize["percentile"]}
                                             if quantize["method"] == "percentile" else {})}


def finetune_and_test(ckpt: Path, arch: dict, work: Path, epochs: int, data_path,
                      zoo_run: Path | None = None, teacher: Path | list[Path] | None = None,
                      distill_alpha: float | None = None) -> dict:
    """The zoo's recipe (model_zoo --finetune-teacher none): fine-tune, quantise, int8 top-1 on the 10k test.
    ``zoo_run``: the board's zoo run folder, whose finished fine-tune of the same subnet is reused (labels-only
    runs). ``teacher``: a teacher checkpoint (e.g. ``mcuformer teacher``'s), or a list of them (an ensemble),
    distilled from instead, its prediction weighted by ``distill_alpha`` in the target (default: the
    fine-tune's, FINETUNE_DEFAULTS). A kept report of another calibration is measured again from its kept
    fine-tune, without training."""
    from mcuformer.api import finetune_subnet
    from mcuformer.train import TrainConfig, load_checkpoint
    from mcuformer.train.checkpoint import data_path_of
    from mcuformer.train.config import FINETUNE_DEFAULTS, finetune_settings

    if distill_alpha is not None and not teacher:
        raise ConfigError("distill_alpha weighs a teacher's predictions; this fine-tune has no teacher")
    alpha = FINETUNE_DEFAULTS["distill_alpha"] if distill_alpha is None else distill_alpha
    report, arch_file = work / "accuracy.json", work / "arch.yaml"
    calibration = calibration_setting(QUANTIZE_DEFAULTS)
    if arch_file.exists() and kept(arch_file, lambda d: d["arch"]) != arch:  # never continue another subnet's run
        raise ConfigError(f"{work} holds the run of another subnet; use another --work")
    if report.exists():
        acc = kept(report, lambda d: d if {"arch", "float_top1", "int8_top1", "count"} <= set(d) else None)
        if acc.get("teacher_sha256", "none") != teacher_fingerprint(teacher):
            raise ConfigError(f"{report} was measured with another teacher; use another --work")
        # reports from before distill_alpha was recorded were all made at the default
        measured_alpha = acc.get("distill_alpha", FINETUNE_DEFAULTS["distill_alpha"])
        if teacher and measured_alpha != alpha:
            raise ConfigError(f"{report} was measured with distill_alpha {measured_alpha}, not {alpha:g}; "
                              "use another --work")
        if acc["arch"] != Arch.from_dict(arch).short():
            raise ConfigError(f"{report} measured {acc['arch']}, not {Arch.from_dict(arch).short()}; "
                              "use another --work")
        # reports from before the calibration was recorded were all calibrated by min/max
        if acc.get("calibration", {"method": "minmax"}) == calibration:
            return acc
        if not (work / "finetune" / "checkpoint.pt").exists():
            raise ConfigError(f"{report} was calibrated otherwise and its fine-tune is gone; use another --work")
        print(f"{work.name}: its int8 top-1 was measured with another calibration; quantising its kept fine-tune "
              "again")
    write_yaml(arch_file, {"arch": arch})
    t0 = time.time()
    out = work / "finetune"
    if report.exists():  # checked above: only the quantisation is redone
        return quantize_and_test(work, data_path, calibration, t0,
                                 {k: v for k, v in acc.items() if k in REPORT_TRAINING_KEYS})
    supernet = load_checkpoint(ckpt)
    cfg = TrainConfig.from_dict(finetune_settings(supernet.get("config"), epochs=epochs, workers=1,
                                                  **({"distill_alpha": alpha} if teacher else {})),
                                where="fine-tune settings")
    data = data_path_of(supernet, data_path)  # what finetune_subnet trains on
    if (out / "checkpoint.pt").exists():  # continued below: only if it is this run's recipe
        differ = kept_settings_differ(load_checkpoint(out / "checkpoint.pt").get("config") or {}, cfg.to_dict())
        if differ:
            raise ConfigError(f"{out} holds a fine-tune with other settings ({', '.join(differ)}); use another "
                              "--work")
    donor = zoo_finetune(zoo_run, ckpt, arch, cfg, data) if zoo_run and not teacher and not out.exists() else None
    if donor is not None:  # seeded: training it again gives these weights (the 3-epoch zoo-pick rows reproduced)
        print(f"{work.name}: the zoo's run {relative(donor)} fine-tuned this subnet from this supernet with these "
              "settings; its checkpoint is copied, not trained again")
        copy_folder(donor, out)
    else:
        summary = finetune_subnet(ckpt, arch_file, out, cfg, data_path=data_path, teacher=teacher or False,
                                  resume=(out / "checkpoint.pt").exists(), progress=True)
        if summary["interrupted"]:
            raise ConfigError(f"fine-tune of {work.name} interrupted; run again to continue it")
    return quantize_and_test(work, data_path, calibration, t0, {
        **({"reused_from": relative(donor)} if donor else {}),
        **({"teacher_sha256": teacher_fingerprint(teacher), "distill_alpha": alpha} if teacher else {})})


# what a report says of the fine-tune behind it, kept when only its quantisation is redone
REPORT_TRAINING_KEYS = ("train_seconds_this_run", "reused_from", "teacher_sha256", "distill_alpha")


def quantize_and_test(work: Path, data_path, calibration: dict, t0: float, training: dict) -> dict:
    """Quantise ``work``'s fine-tune with ``calibration``, its int8 top-1 on the 10k test, into accuracy.json."""
    from mcuformer.quantize.workflow import evaluate_quantized, quantize_checkpoint
    from mcuformer.train import load_checkpoint

    out, qdir = work / "finetune" / "checkpoint.pt", work / "int8"
    trained = time.time() - t0
    history = load_checkpoint(out)["history"]
    quantize_checkpoint(out, work / "arch.yaml", qdir, data_path=data_path,
                        num_images=QUANTIZE_DEFAULTS["calibration_images"], **calibration)
    acc = evaluate_quantized(qdir, checkpoint=out, data_path=data_path, limit=0, progress=True)
    # training time over all its runs (a resumed or reused fine-tune's too), and this run's
    acc = {**acc, "train_seconds": round(sum(h.get("seconds", 0) for h in history), 1),
           "train_seconds_this_run": round(trained, 1), **training, "calibration": calibration}
    write_json(work / "accuracy.json", acc)
    return acc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--fill", type=float, default=0.8, help="the least share of the board's flash the pick uses")
    ap.add_argument("--candidates", type=int, default=48, help="distinct random subnets scored on the held-out set")
    ap.add_argument("--max-draws", type=int, default=200_000, help="random draws per candidate, at most")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-path", default=None, help="default: the CIFAR-10 archive")
    ap.add_argument("--work", default=str(ROOT / "runs/flash-fill"))
    ap.add_argument("--zoo-work", default=str(ROOT / "runs/zoo-models"),
                    help="model_zoo.py's run folders: the zoo pick's finished fine-tune there is reused, not redone")
    ap.add_argument("--output", default=None, help="default: benchmarks/results/flash_fill_<board>_ep<epochs>.json")
    args = ap.parse_args()
    if not 0 < args.fill <= 1:
        raise ConfigError(f"--fill must be in (0, 1], got {args.fill:g}")
    if args.finetune_epochs < 1 or args.candidates < 1:
        raise ConfigError("--finetune-epochs and --candidates must be at least 1")
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise CheckpointError(f"supernet checkpoint not found: {ckpt}")
    zoo_row = ckpt.parent / f"int8-{args.board}" / "zoo.json"
    if not zoo_row.is_file():
        raise ConfigError(f"no zoo model for {args.board} beside the supernet ({zoo_row} missing)")
    zoo = read_structured(zoo_row)
    work = Path(args.work) / f"{args.board}-fill{args.fill:g}-ep{args.finetune_epochs}"
    work.mkdir(parents=True, exist_ok=True)
    pick_file, data_path = work / "pick.json", Path(args.data_path) if args.data_path else None
    settings = {"supernet_sha256": file_sha256(ckpt), "board": args.board, "fill": args.fill,
                "candidates": args.candidates, "seed": args.seed, "max_draws": args.max_draws}
    if pick_file.exists():
        pick = kept(pick_file, lambda d: d if {"arch", "summary", "flash_bytes", "flash_used", "heldout_top1",
                                                "heldout_loglik", "candidates", "settings"} <= set(d) else None)
        if pick["settings"] != settings:
            raise ConfigError(f"{pick_file} was picked with other settings or another supernet; use another --work")
    else:
        t0 = time.time()
        pick = pick_filling(ckpt, args.board, args.fill, args.candidates, args.seed, args.max_draws, data_path)
        pick.update(seconds=round(time.time() - t0, 1), settings=settings)
        write_json(pick_file, pick)
    print(f"filling pick: {pick['summary']}, {pick['flash_bytes'] / 1024:.1f} KB flash "
          f"({100 * pick['flash_used']:.1f} %), held-out top-1 {pick['heldout_top1']:.2f} %, "
          f"log-likelihood {pick['heldout_loglik']:.4f} (best of {pick['candidates']})")
    rows = []
    filling = f"fills >= {100 * args.fill:g} % of flash"
    for name, arch in (("search's pick (zoo)", zoo["arch"]), (filling, pick["arch"])):
        flash = estimate(Arch.from_dict(arch))[1]  # the memory model's, as the search measures both
        folder = "zoo-pick" if "zoo" in name else "filling"
        acc = finetune_and_test(ckpt, arch, work / folder, args.finetune_epochs, data_path,
                                zoo_run=Path(args.zoo_work) / args.board if folder == "zoo-pick" else None)
        rows.append({"subnet": name, "summary": zoo["summary"] if "zoo" in name else pick["summary"],
                     "flash_bytes": flash, "float_top1": acc["float_top1"], "int8_top1": acc["int8_top1"],
                     "test_images": acc["count"],
                     "train_seconds": acc.get("train_seconds", acc.get("train_seconds_this_run")),
                     **({"reused_from": acc["reused_from"]} if "reused_from" in acc else {}),
                     "train_loss": read_structured(work / folder / "finetune" / "summary.json")["final"]["train_loss"]})
    result = {"board": args.board, "fill": args.fill, "finetune_epochs": args.finetune_epochs, "teacher": "none",
              "supernet_sha256": zoo["supernet_sha256"], "pick": pick, "rows": rows,
              "command": f"python benchmarks/flash_fill.py --board {args.board} --fill {args.fill:g} "
                         f"--finetune-epochs {args.finetune_epochs}"}
    print(f"\n{args.board}, both fine-tuned {args.finetune_epochs} epochs (labels only), int8 on the 10k test:\n")
    print("| subnet | arch | flash (memory model) | float top-1 | int8 top-1 | final training loss | training s |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['subnet']} | {r['summary']} | {r['flash_bytes'] / 1024:.1f} KB | {r['float_top1']:.2f} % | "
              f"{r['int8_top1']:.2f} % | {r['train_loss']:.4f} | {r['train_seconds'] or '-'} |")
    default = ROOT / f"benchmarks/results/flash_fill_{args.board}_ep{args.finetune_epochs}.json"
    write_json(Path(args.output or default), result)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
