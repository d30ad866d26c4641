"""Does a CNN teacher make a better fine-tune? The board's zoo subnet fine-tuned for the same epochs with the same
seeded recipe, once from the labels alone (the zoo's recipe) and once distilled from a `mcuformer teacher`
checkpoint (soft targets mixed with the labels by --distill-alpha, the fine-tune's 0.5 by default), both
quantised to int8 and measured on the full 10k test split. Prints a table, writes JSON.

    python benchmarks/teacher_distill.py --teacher runs/teacher/teacher.pt [--board stm32f746] [--epochs 3]
    python benchmarks/teacher_distill.py --teacher models/cifar10-zoo/teacher.pt --epochs 20 --distill-alpha 1.0 \
        --baseline-from benchmarks/results/flash_fill_stm32f746_ep20.json   # the teacher's prediction alone

Several --teacher checkpoints distil from their averaged predictions (an ensemble). Another --distill-alpha than
the default trains in its own folder (teacher-alpha1 in the board's --work folder) and writes its own result
(teacher_distill_<board>_ep<N>_alpha1.json).

The labels-only row is trained in the same run, or reused from the board's zoo run folder (`--zoo-work`) when
that holds the same fine-tune (seeded: training it again gives the same weights), or taken from an earlier
result of this supernet, subnet and epochs (`--baseline-from`: flash_fill.py's JSON, or the zoo model's own zoo.json
while it is the labels-only fine-tune), which the table marks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcuformer.errors import CheckpointError, ConfigError, run_script  # noqa: E402
from mcuformer.train.config import FINETUNE_DEFAULTS  # noqa: E402
from mcuformer.train.teacher import read_teacher, teacher_fingerprint, teacher_paths  # noqa: E402
from mcuformer.utils.io import file_sha256, read_structured, write_json  # noqa: E402
from flash_fill import finetune_and_test  # noqa: E402
from model_zoo import relative  # noqa: E402


def committed_version(path: Path) -> str:
    """``path``, with the commit that last changed it when git holds it unchanged: a zoo.json is rewritten by the
    zoo's next rebuild, so the path alone would point at another model."""
    def git(*args):
        where = path.resolve()
        try:
            run = subprocess.run(["git", "-C", str(where.parent), *args, "--", where.name], capture_output=True,
                                 text=True)
        except OSError:  # no git here: the path alone
            return None
        return run.stdout.strip() if run.returncode == 0 else None

    commit = git("log", "-1", "--format=%h")
    clean = git("status", "--porcelain") == ""
    return f"{relative(path)} at {commit}" if commit and clean else relative(path)


def recorded_baseline(path: Path, zoo: dict, epochs: int) -> dict:
    """The labels-only row of an earlier result for the zoo's subnet, supernet and epochs."""
    try:
        result = read_structured(path)
        if "fine_tuned_epochs" in result:  # a zoo.json: the zoo's own seeded fine-tune, if it had no teacher
            # an adopted fine-tune (--finetuned) has no "fine_tune_teacher": its recipe is unknown, so no baseline
            result = {"supernet_sha256": result["supernet_sha256"], "teacher": result.get("fine_tune_teacher", "?"),
                      "epochs": result["fine_tuned_epochs"],
                      "rows": [{**result, "subnet": "search's pick (zoo)", "train_seconds": None}]}
        same = (result["supernet_sha256"] == zoo["supernet_sha256"] and result.get("teacher") in ("none", None)
                and result.get("finetune_epochs", result.get("epochs")) == epochs)
        row = next((r for r in result["rows"] if r.get("summary", result.get("arch")) == zoo["summary"]
                    and r.get("subnet", r.get("fine-tune")) in ("search's pick (zoo)", "labels only")), None)
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(f"--baseline-from {path}: not a flash_fill.py, teacher_distill.py or zoo.json "
                          "result") from None
    if not same or row is None:
        raise ConfigError(f"--baseline-from {path}: no labels-only row of {zoo['summary']} fine-tuned {epochs} "
                          "epochs from this supernet")
    return {"fine-tune": "labels only", "float_top1": row["float_top1"], "int8_top1": row["int8_top1"],
            "test_images": row["test_images"], "train_seconds": row.get("train_seconds"),
            "recorded_in": committed_version(path)}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(ROOT / "models/cifar10-zoo/supernet.pt"))
    ap.add_argument("--teacher", required=True, nargs="+",
                    help="a teacher checkpoint (mcuformer teacher's teacher.pt); several: their ensemble")
    ap.add_argument("--board", default="stm32f746")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-path", default=None, help="default: the CIFAR-10 archive")
    ap.add_argument("--work", default=str(ROOT / "runs/teacher-distill"))
    ap.add_argument("--zoo-work", default=str(ROOT / "runs/zoo-models"),
                    help="model_zoo.py's run folders: a finished labels-only fine-tune there is reused")
    ap.add_argument("--baseline-from", default=None, metavar="JSON",
                    help="take the labels-only row from this result (flash_fill.py's, this script's, or a labels-only "
                         "zoo model's zoo.json) instead of training it: same supernet, subnet and epochs")
    ap.add_argument("--distill-alpha", type=float, default=None,
                    help="the teacher's share of the target, in (0, 1]: 1 its prediction alone, the labels left out "
                         f"(default: the fine-tune's, {FINETUNE_DEFAULTS['distill_alpha']:g})")
    ap.add_argument("--output", default=None, help="default: benchmarks/results/teacher_distill_<board>_ep<N>.json "
                                                   "(_alpha<A> before .json for another --distill-alpha)")
    return ap


def alpha_suffix(alpha: float, sep: str) -> str:
    """What names a run or result of another distill_alpha than the default (none for the default)."""
    return "" if alpha == FINETUNE_DEFAULTS["distill_alpha"] else f"{sep}alpha{alpha:g}"


def recorded_command(args, ap: argparse.ArgumentParser) -> str:
    """The command that repeats this result: every path option given another value than its default, relative
    to the repository (repeated without its --work and --output, a run would write over another result)."""
    command = (f"python benchmarks/teacher_distill.py --teacher {' '.join(relative(t) for t in args.teacher)} "
               f"--board {args.board} --epochs {args.epochs}")
    if args.distill_alpha is not None:
        command += f" --distill-alpha {args.distill_alpha:g}"
    for flag in ("baseline_from", "checkpoint", "data_path", "work", "zoo_work", "output"):
        value, default = getattr(args, flag), ap.get_default(flag)
        if value is not None and (default is None or Path(value).resolve() != Path(default).resolve()):
            command += f" --{flag.replace('_', '-')} {relative(value)}"
    return command


def main() -> int:
    ap = parser()
    args = ap.parse_args()
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {args.epochs}")
    alpha = FINETUNE_DEFAULTS["distill_alpha"] if args.distill_alpha is None else args.distill_alpha
    if not 0 < alpha <= 1:  # nan fails this too; 0 would be the labels-only row again
        raise ConfigError(f"--distill-alpha must lie in (0, 1], got {alpha:g}")
    ckpt, teachers = Path(args.checkpoint), teacher_paths(args.teacher)
    if not ckpt.is_file():
        raise CheckpointError(f"supernet checkpoint not found: {ckpt}")
    metas = [read_teacher(t) for t in teachers]
    teacher_fingerprint(teachers)  # the same checkpoint twice (copied under another name) fails now
    zoo_row = ckpt.parent / f"int8-{args.board}" / "zoo.json"
    if not zoo_row.is_file():
        raise ConfigError(f"no zoo model for {args.board} beside the supernet ({zoo_row} missing)")
    zoo = read_structured(zoo_row)
    data_path = Path(args.data_path) if args.data_path else None
    work = Path(args.work) / f"{args.board}-ep{args.epochs}"
    rows = []
    named = f", distill_alpha {alpha:g}" if alpha_suffix(alpha, "") else ""
    if len(teachers) == 1:
        taught = ("CNN teacher" + named, "teacher" + alpha_suffix(alpha, "-"), teachers[0])
    else:
        taught = (f"{len(teachers)} CNN teachers' ensemble{named}", "ensemble" + alpha_suffix(alpha, "-"), teachers)
    runs = [("labels only", "labels", None), taught]
    if args.baseline_from:
        rows.append(recorded_baseline(Path(args.baseline_from), zoo, args.epochs))
        runs = runs[1:]
    for name, folder, by in runs:
        acc = finetune_and_test(ckpt, zoo["arch"], work / folder, args.epochs, data_path,
                                zoo_run=Path(args.zoo_work) / args.board, teacher=by,
                                distill_alpha=alpha if by else None)
        rows.append({"fine-tune": name, "float_top1": acc["float_top1"], "int8_top1": acc["int8_top1"],
                     "test_images": acc["count"],
                     "train_seconds": acc.get("train_seconds", acc.get("train_seconds_this_run")),
                     **({"reused_from": acc["reused_from"]} if "reused_from" in acc else {})})
    described = [{"file": relative(t), "sha256": file_sha256(t), "widths": meta["widths"], "epochs": meta.get("epochs"),
                  "test_top1": meta.get("test_top1"), "train_seconds": meta.get("seconds")}
                 for t, meta in zip(teachers, metas)]
    result = {"board": args.board, "arch": zoo["summary"], "epochs": args.epochs,
              "supernet_sha256": zoo["supernet_sha256"],
              "teacher": described[0] if len(described) == 1 else described, "distill_alpha": alpha,
              "rows": rows,
              "command": recorded_command(args, ap)}
    by = " and ".join(f"CNN {m['widths']}, {m.get('test_top1')} % test top-1" for m in metas)
    print(f"\n{args.board}'s zoo subnet {zoo['summary']}, fine-tuned {args.epochs} epochs, int8 on the 10k test "
          f"(teacher{'s' if len(metas) > 1 else ''}: {by}; distill_alpha {alpha:g}):\n")
    print("| fine-tune | float top-1 | int8 top-1 | training s |\n|---|---|---|---|")
    for r in rows:
        where = f" (recorded in {r['recorded_in']})" if "recorded_in" in r else ""
        print(f"| {r['fine-tune']}{where} | {r['float_top1']:.2f} % | {r['int8_top1']:.2f} % | "
              f"{r['train_seconds'] or '-'} |")
    default = ROOT / f"benchmarks/results/teacher_distill_{args.board}_ep{args.epochs}{alpha_suffix(alpha, '_')}.json"
    write_json(Path(args.output or default), result)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, Path(__file__).name))
