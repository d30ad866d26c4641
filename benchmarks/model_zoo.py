"""The model zoo's searched int8 models: for each board, search the zoo supernet within the board's arena
budget and flash (the pipeline's stages: search -> optional fine-tune -> quantize -> export -> verify),
measure the int8 top-1 on the full test split, verify the C engine bit for bit on the host and on the
emulated core of the board (Cortex-M7 or Cortex-M4), and keep the int8 model (params.npz + manifest.json)
under models/<supernet>/int8-<board>/ with zoo.json: the measured figures, no absolute paths.

    python benchmarks/model_zoo.py [--checkpoint models/cifar10-zoo/supernet.pt] [--boards ...] [--finetune-epochs N]
    # a few minutes per board on 2 cores; writes benchmarks/results/model_zoo.json
    python benchmarks/model_zoo.py --boards stm32f746 --finetuned finetune-fp16.pt
    # deploys a subnet fine-tuned elsewhere instead of searching; a GPU slot's fine-tunes (scripts/device_train.sh),
    # a board each: --finetuned stm32f746=OUT/finetune-stm32f746-fp16.pt stm32f427=OUT/finetune-stm32f746-fp16.pt ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import CheckpointError, ConfigError, McuformerError, run_script  # noqa: E402
from mcuformer.memory import BOARDS  # noqa: E402
from mcuformer.pipeline import (SEARCH_DEFAULTS, PipelineConfig, engine_stage, finetune_stage,  # noqa: E402
                                quantize_stage, search_stage, supernet_stage)
from mcuformer.stages import StageLedger  # noqa: E402
from mcuformer.utils.io import file_sha256, write_json  # noqa: E402


def relative(path) -> str:
    """A path as the manifests hold it: relative to the repository (never absolute)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if ROOT in p.parents else p.name


def adopt_finetuned(cfg: PipelineConfig, finetuned: Path, board, ledger: StageLedger) -> dict:
    """Stages 3-4 for a subnet fine-tuned elsewhere (``mcuformer finetune``'s checkpoint, e.g. the GPU slot's
    finetune-fp16.pt): its arch (``finetuned_arch``) stands for the search's pick and the checkpoint for the
    fine-tune, both recorded in the run's ledger so that the stages after them notice when it changes. The
    subnet must fit the board (the memory model says so before anything is built)."""
    from mcuformer.memory import memory_report
    from mcuformer.space import Arch
    from mcuformer.stages import digest_files, digest_settings
    from mcuformer.train import load_checkpoint
    from mcuformer.utils.io import write_yaml

    state = load_checkpoint(finetuned)
    if not isinstance(state.get("finetuned_arch"), dict):
        raise ConfigError(f"{finetuned}: not a fine-tuned subnet (no finetuned_arch): give `mcuformer finetune`'s "
                          "checkpoint")
    try:
        arch = Arch.from_dict(state["finetuned_arch"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{finetuned}: its finetuned_arch is damaged ({e})") from None
    rep = memory_report(arch, board)
    if not rep.fits:
        raise ConfigError(f"{finetuned}: its subnet {arch.short()} does not fit {board.name} "
                          f"({rep.binding} is over budget)")
    arch_file, tuned = cfg.output / "search" / "best_arch.yaml", cfg.output / "finetune" / "checkpoint.pt"
    inputs = {"fine-tuned checkpoint": digest_files(finetuned), "board": digest_settings(board.to_dict())}
    for stage, target in (("search", arch_file), ("finetune", tuned)):
        plan = ledger.plan(stage, inputs, done=target.exists(), owned=[target.parent])
        if plan.line:
            print(plan.line)
        if plan.run:
            target.parent.mkdir(parents=True, exist_ok=True)
            if stage == "search":
                write_yaml(arch_file, {"arch": arch.to_dict(), "budget": board.to_dict(),
                                       "adopted_from": finetuned.name})
            else:
                shutil.copyfile(finetuned, tuned)
            ledger.finish(stage)
    return {"evaluations": 0, "arch": arch.to_dict(), "summary": arch.short(), "heldout_top1": None,
            "arch_file": str(arch_file), "epochs": state.get("epoch"), "teacher_sha256": state.get("teacher_sha256"),
            "distill_alpha": (state.get("config") or {}).get("distill_alpha")}


def finetuned_by_board(values: list[str] | None, boards: list[str], finetune_epochs: int) -> dict[str, Path]:
    """--finetuned as {board: checkpoint}: one CKPT for the one board of --boards, or BOARD=CKPT pairs (the
    boards then come from them, in the order given); every file must exist, before anything is built."""
    if not values:
        return {}
    if finetune_epochs:
        raise ConfigError("--finetuned deploys fine-tuned subnets: give no --finetune-epochs")
    if len(values) == 1 and "=" not in values[0]:
        if len(boards) != 1:
            raise ConfigError("--finetuned CKPT deploys one fine-tuned subnet: give one board, or BOARD=CKPT pairs")
        pairs = {boards[0]: values[0]}
    else:
        pairs = {}
        for v in values:
            board, sep, path = v.partition("=")
            if not sep or not path:
                raise ConfigError(f"--finetuned {v}: give BOARD=CKPT pairs when there are several")
            if board not in BOARDS:
                raise ConfigError(f"--finetuned {v}: unknown board {board!r} (one of {', '.join(BOARDS)})")
            if board in pairs:
                raise ConfigError(f"--finetuned: board {board} given twice")
            pairs[board] = path
    for board, path in pairs.items():
        if not Path(path).is_file():
            raise CheckpointError(f"fine-tuned checkpoint not found: {path} (for {board})")
    return {board: Path(path) for board, path in pairs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--boards", nargs="+", default=list(BOARDS))
    ap.add_argument("--finetune-epochs", type=int, default=0, help="fine-tune each searched subnet (0: none)")
    ap.add_argument("--finetune-teacher", choices=["largest", "none"], default="largest",
                    help="fine-tuning's teacher: the supernet's largest subnet (default), or the labels alone")
    ap.add_argument("--population", type=int, default=SEARCH_DEFAULTS["population"])
    ap.add_argument("--generations", type=int, default=SEARCH_DEFAULTS["generations"])
    ap.add_argument("--fitness", choices=["top1", "loglik"], default=SEARCH_DEFAULTS["fitness"],
                    help="the search's held-out score (default: the pipeline's)")
    ap.add_argument("--test-limit", type=int, default=0,
                    help="int8 top-1 on this many test images spread over the split (0: all 10,000)")
    ap.add_argument("--finetuned", nargs="+", default=None, metavar="[BOARD=]CKPT",
                    help="deploy this fine-tuned subnet (a `mcuformer finetune` checkpoint) on the one board of "
                         "--boards instead of searching and fine-tuning; or BOARD=CKPT pairs, a board each (e.g. "
                         "scripts/device_train.sh's finetune-NAME-fp16.pt files), which stand for --boards")
    ap.add_argument("--hflip", action="store_true",
                    help="also the int8 top-1 through the engine's horizontal-flip entry point (mcuformer_invoke_hflip; "
                         "one more test-set pass of the int8 model and its mirror images)")
    ap.add_argument("--data-path", default=None, help="default: the CIFAR-10 archive")
    ap.add_argument("--work", default=str(ROOT / "runs/zoo-models"), help="the per-board run folders")
    ap.add_argument("--output", default=str(ROOT / "benchmarks/results/model_zoo.json"))
    args = ap.parse_args()
    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise CheckpointError(f"supernet checkpoint not found: {ckpt}")
    adopted = finetuned_by_board(args.finetuned, args.boards, args.finetune_epochs)
    if adopted:
        args.boards = list(adopted)
    sha = file_sha256(ckpt)  # each model names the exact supernet it was cut from; the file may be replaced later
    rows, not_built = [], {}
    for name in args.boards:
        t0 = time.time()
        finetuned = adopted.get(name)
        cfg = PipelineConfig(space=[], train_config=None, output=Path(args.work) / name, supernet=ckpt,
                             data_path=Path(args.data_path) if args.data_path else None, board=name,
                             search={"population": args.population, "generations": args.generations,
                                     "fitness": args.fitness},
                             finetune={"epochs": args.finetune_epochs, "teacher": args.finetune_teacher == "largest"},
                             quantize={"test_limit": args.test_limit})
        board = cfg.target_board()
        ledger = StageLedger(cfg.output)
        supernet_stage(cfg, ledger)
        try:
            if finetuned is not None:
                searched = adopt_finetuned(cfg, finetuned, board, ledger)
                deployed = cfg.output / "finetune" / "checkpoint.pt"
            else:
                searched = search_stage(cfg, ckpt, board, workers=1, progress=True, ledger=ledger)
                # a board whose search picked a subnet another board's run already fine-tuned copies its weights
                deployed = finetune_stage(cfg, ckpt, searched, progress=True, ledger=ledger,
                                          donors=[Path(args.work) / b for b in BOARDS if b != name])
            if deployed is None:  # SIGINT/SIGTERM: the fine-tune saved its step; the same command continues it
                print(f"{name}: fine-tune interrupted: rerun the same command to continue", file=sys.stderr)
                return 130
            acc = quantize_stage(cfg, deployed, searched, progress=True, ledger=ledger)
            engine = engine_stage(cfg, board, progress=True, ledger=ledger)
        except McuformerError as e:  # one board's failure (say a link that overflows) does not stop the others
            print(f"{name}: no model: {e}", file=sys.stderr)
            not_built[name] = str(e)
            continue
        emu = engine.get("emulator") or {}
        flip = {}
        if args.hflip:
            from mcuformer.api import evaluate_quantized
            flip = evaluate_quantized(cfg.output / "int8", data_path=cfg.data_path, limit=args.test_limit, hflip=True)
            if flip["int8_top1"] != acc["int8_top1"]:  # the same int8 model on the same images: exact
                raise RuntimeError(f"{name}: int8 top-1 {flip['int8_top1']} on the flip pass, {acc['int8_top1']} before")
        copied = ledger.records.get("finetune", {}).get("reused_from") if args.finetune_epochs else None
        tuned_epochs = searched["epochs"] if finetuned is not None else args.finetune_epochs
        dest = ckpt.parent / f"int8-{name}"
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(cfg.output / "int8", tmp, ignore=shutil.ignore_patterns("accuracy.json"))
        ram, flash = emu.get("ram_bytes"), emu.get("model_flash_bytes")
        use = {"sram": ram / board.sram_bytes if ram else None, "flash": flash / board.flash_bytes if flash else None}
        binding = max((k for k in use if use[k] is not None), key=lambda k: use[k], default=None)
        row = {
            "board": board.to_dict(), "model": relative(dest), "supernet": relative(ckpt), "supernet_sha256": sha,
            "arch": searched["arch"], "summary": searched["summary"], "heldout_top1": searched["heldout_top1"],
            **({"search_fitness": args.fitness, "search_population": args.population,
                "search_generations": args.generations, "search_evaluations": searched.get("evaluations")}
               if finetuned is None else {"search": "none: the fine-tuned checkpoint's subnet"}),
            "fine_tuned_epochs": tuned_epochs,
            **({"fine_tune_teacher": args.finetune_teacher} if args.finetune_epochs else {}),
            **({"fine_tuned_checkpoint": finetuned.name} if finetuned is not None else {}),
            **({"fine_tune_teacher_sha256": searched["teacher_sha256"],
                "fine_tune_distill_alpha": searched["distill_alpha"]}
               if finetuned is not None and searched.get("teacher_sha256") not in (None, "none") else {}),
            **({"fine_tune_copied_from": copied} if copied else {}),
            "float_top1": acc["float_top1"], "int8_top1": acc["int8_top1"], "test_images": acc["count"],
            **({"int8_top1_hflip": flip["int8_top1_hflip"], "hflip_instructions": emu.get("hflip_instructions")}
               if flip else {}),
            "planned_arena_bytes": engine["export"]["arena_bytes"],
            "planned_flash_bytes": engine["export"]["planned_flash_bytes"],
            "measured_on": emu.get("target"), "measured_ram_bytes": ram,
            "measured_static_ram_bytes": emu.get("static_ram_bytes"), "measured_stack_bytes": emu.get("stack_bytes"),
            "measured_flash_bytes": flash, "sram_used": use["sram"], "flash_used": use["flash"], "binding": binding,
            "instructions_per_inference": emu.get("instructions_per_inference"),
            "instructions_per_mac": emu.get("instructions_per_mac"), "macs": engine["export"]["macs"],
            "bit_exact_host": engine["host"]["bit_exact"], "bit_exact_emulator": emu.get("bit_exact"),
            "verified_images": engine["host"]["images"], "seconds": round(time.time() - t0, 1),
            "command": f"python benchmarks/model_zoo.py --checkpoint {relative(ckpt)} --boards {name}"
                       + (f" --finetune-epochs {args.finetune_epochs} --finetune-teacher {args.finetune_teacher}"
                          if args.finetune_epochs else "")
                       + (f" --finetuned {relative(finetuned)}" if finetuned is not None else "")
                       + (f" --population {args.population} --generations {args.generations}"
                          if finetuned is None and (args.population, args.generations)
                          != (SEARCH_DEFAULTS["population"], SEARCH_DEFAULTS["generations"]) else "")
                       + (f" --test-limit {args.test_limit}" if args.test_limit else "")
                       + (" --hflip" if args.hflip else "")
                       + (f" --fitness {args.fitness}" if finetuned is None and args.fitness != "top1" else ""),
            "data": f"CIFAR-10 JPEG tarball ../shared/data/cifar10-jpg.tar.gz ({acc['count']:,} test images)",
        }
        manifest = json.loads((tmp / "manifest.json").read_text())
        manifest["info"]["checkpoint"] = "../supernet.pt"  # relative to the model's folder: no absolute path
        if args.finetune_epochs:  # its weights are params.npz's: the supernet's subnet, trained on alone
            manifest["info"]["fine_tuned"] = {"epochs": args.finetune_epochs, "teacher": args.finetune_teacher}
        elif finetuned is not None:
            manifest["info"]["fine_tuned"] = {"epochs": tuned_epochs, "checkpoint": finetuned.name,
                                              **({"teacher_sha256": row["fine_tune_teacher_sha256"],
                                                  "distill_alpha": row["fine_tune_distill_alpha"]}
                                                 if "fine_tune_teacher_sha256" in row else {})}
        write_json(tmp / "manifest.json", manifest)
        write_json(tmp / "zoo.json", row)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        rows.append(row)
    kb = lambda b: f"{b / 1024:.1f} KB" if b is not None else "-"  # noqa: E731
    pct = lambda u: f"{100 * u:.1f} %" if u is not None else "-"  # noqa: E731  (one decimal: 79.9 % must not print as 80 %)
    print("\n| board | subnet | float top-1 | int8 top-1 | RAM measured (of SRAM) | flash measured (of flash) | "
          "instructions / inference | bit-exact (host, emulator) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['board']['name']} | {r['summary']} | {r['float_top1']:.2f} % | {r['int8_top1']:.2f} % | "
              f"{kb(r['measured_ram_bytes'])} ({pct(r['sram_used'])}) | {kb(r['measured_flash_bytes'])} "
              f"({pct(r['flash_used'])}) | {(r['instructions_per_inference'] or 0) / 1e6:.1f} M | "
              f"{r['bit_exact_host']}, {r['bit_exact_emulator']} |")
    out = Path(args.output)  # rows of boards measured by earlier calls on the same supernet file stay, each
    old = json.loads(out.read_text()) if out.exists() else {}  # naming the sha256 of the supernet it was cut from
    if old.get("supernet") == relative(ckpt):
        done = {r["board"]["name"] for r in rows} | set(not_built)
        kept = [r for r in old["rows"] if r["board"]["name"] not in done]
        for r in kept:
            r.setdefault("supernet_sha256", old.get("supernet_sha256"))
        rows = kept + rows
        not_built = {**{k: v for k, v in (old.get("not_built") or {}).items() if k not in done}, **not_built}
    order = list(BOARDS)  # a partial rebuild keeps the table in board order
    rows.sort(key=lambda r: order.index(r["board"]["name"]) if r["board"]["name"] in order else len(order))
    write_json(out, {"supernet": relative(ckpt), "supernet_sha256": sha, "rows": rows,
                     **({"not_built": not_built} if not_built else {})})
    ok = all(r["bit_exact_host"] and r["bit_exact_emulator"] is not False for r in rows)
    return 0 if ok and not not_built else 1


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
