#!/usr/bin/env bash
# One lent GPU slot, one call: train the CIFAR-10 supernet, checkpointing every minute, then fine-tune every
# zoo board's subnet from it at once, for FINETUNE_S seconds, and put the weights-only fp16 supernet and
# fine-tuned subnets (their histories inside), the supernet's log, a run record and, if time and the file
# limit allow, the input-path and official-T throughput figures into an output folder: at most 8 files, each
# under 16 MiB.
#
#   bash scripts/device_train.sh [--dry-run] [OUTDIR]       (OUTDIR defaults to $OUT, else outputs/device)
#
# Environment (all optional):
#   DATA       the CIFAR-10 archive (default .gpu/data/cifar10-jpg.tar.gz, else ../shared/data/cifar10-jpg.tar.gz)
#   DEADLINE_S seconds from the start by which everything must be written (default 570: a 600 s call)
#   TRAIN_S    training seconds at most (default 540, less when the deadline needs it); TRAIN_S=0 trains no
#              supernet: the fine-tunes start from INIT and have the slot (FINETUNE_S defaults to all of it),
#              and the zoo's supernet stays as it is, so that only its models change
#   RESERVE_S  seconds kept after training for the copy-out and the throughput figures (default 75; a short
#              slot's last minutes go to training with RESERVE_S=30, which leaves no time for the figures)
#   INIT       a supernet of the same space to continue (default models/cifar10-zoo/supernet.pt, the zoo
#              supernet: training accumulates across slots); INIT=none starts from scratch
#   SPLIT      the held-out split to train without (default models/cifar10-zoo/heldout-split.json: the
#              zoo's search split stays unseen); SPLIT=none trains on all of train
#   SPACE, CONFIG  the space and training settings (default configs/cifar10-zoo.yaml and
#              configs/train-cifar10-zoo-gpu.yaml, the recipe that raised the zoo supernet on an H200;
#              configs/train-cifar10-gpu.yaml is the heavier recipe for a supernet trained from scratch)
#   TRAIN_ARGS extra `mcuformer train` flags, appended last (e.g. a fallback: "--amp off --data-on-device off")
#   FINETUNE_S seconds of fine-tuning after the supernet (default 180; 0: none). Each subnet trains on its own
#              from the supernet just trained, with configs/finetune-cifar10-zoo-gpu.yaml (FT_CONFIG), all of
#              them at the same time on the one GPU (one process each, its DataLoader workers a share of 14):
#              a small subnet leaves most of a GPU idle, and the zoo's models must all be cut from the
#              supernet they ship beside. Their training time and the minute they take to start are taken
#              from the supernet's.
#   FT_ARCHS   the subnets, "NAME=ARCH ..." (ARCH: an arch file, largest or smallest); each comes back as
#              finetune-NAME-fp16.pt. Default: one per distinct subnet of the zoo's boards
#              (models/cifar10-zoo/int8-*/zoo.json), named after its first board; today stm32f746 (which the
#              F427 and H743 share), stm32f411re and stm32l432kc.
#   FT_ARCH    one subnet instead, as FT_ARCHS="subnet=$FT_ARCH": FT_ARCH=configs/arch-stm32f746-grid16.yaml
#              fine-tunes the F746 model's subnet on 16x16 tokens (docs/conv-stem.md)
#   FT_TEACHER the fine-tune's --teacher (default: the shipped CNN teacher models/cifar10-zoo/teacher.pt, which
#              gave the F746 pick +1.05 points int8 in 20 CPU epochs as the FT_CONFIG's distill_alpha 1.0 has it;
#              none; largest; or a fine-tuning checkpoint of the same space whose subnet then teaches:
#              self-distillation)
# If training fails before it writes a checkpoint (as bf16 on the device-resident path did on the first
# slot: a NaN at step 7) and two minutes remain, it is retried once in fp32 on the DataLoader path, so that
# the slot still trains.
# --dry-run runs every step on the CPU with tiny settings (what tests/test_train_recipes.py does), so that a
# GPU slot is never spent on a bug.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUTDIR=${1:-${OUT:-outputs/device}}
mkdir -p "$OUTDIR" || { echo "device_train: cannot create $OUTDIR" >&2; exit 2; }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
DATA=${DATA:-}
if [ -z "$DATA" ]; then
  for d in .gpu/data/cifar10-jpg.tar.gz ../shared/data/cifar10-jpg.tar.gz; do [ -f "$d" ] && DATA=$d && break; done
fi
[ -n "$DATA" ] && [ -f "$DATA" ] || { echo "device_train: no CIFAR-10 archive (set DATA)" >&2; exit 2; }
SPACE=${SPACE:-configs/cifar10-zoo.yaml}
CONFIG=${CONFIG:-configs/train-cifar10-zoo-gpu.yaml}
DEADLINE_S=${DEADLINE_S:-570}
for v in DEADLINE_S TRAIN_S RESERVE_S; do  # whole seconds, or bash arithmetic below fails mid-slot
  [[ "${!v:-0}" =~ ^[0-9]+$ ]] || { echo "device_train: $v must be a whole number of seconds, not '${!v}'" >&2; exit 2; }
done
RUN=${RUN:-.gpu/run}
FINETUNE_ONLY=0
[ -n "${TRAIN_S:-}" ] && [ "$TRAIN_S" -eq 0 ] && FINETUNE_ONLY=1  # a whole number by now (checked above)
if [ "$FINETUNE_ONLY" = 1 ]; then FINETUNE_S=${FINETUNE_S:-$DEADLINE_S}; else FINETUNE_S=${FINETUNE_S:-180}; fi
FT_CONFIG=${FT_CONFIG:-configs/finetune-cifar10-zoo-gpu.yaml}
for f in "$SPACE" "$CONFIG" "$FT_CONFIG"; do  # a typo must not cost the slot: caught before anything runs
  [ -f "$f" ] || { echo "device_train: $f not found (SPACE, CONFIG or FT_CONFIG)" >&2; exit 2; }
done
[[ "$FINETUNE_S" =~ ^[0-9]+$ ]] || { echo "device_train: FINETUNE_S must be a whole number of seconds, not '$FINETUNE_S'" >&2; exit 2; }
EXTRA=()
BENCH_IN=()
BENCH_T=()
if [ "$DRY" = 1 ]; then
  SPACE=configs/cifar10-tiny.yaml
  DEADLINE_S=${DEADLINE_S_DRY:-600}
  RUN=$(mktemp -d)/run
  EXTRA=(--device cpu --epochs 3 --steps-per-epoch 3 --batch-size 16 --eval-batch-size 64 --limit-eval 64
         --limit-train 512 --eval-every 1 --data-on-device on --workers 0 --checkpoint-every-s 0.001)
  BENCH_IN=(--steps 2 --batch 16 --workers 0)
  BENCH_T=(--device cpu --steps 1 --warmup 0 --batch 1 --modes mcuformer-bf16)
  FT_ARCHS=${FT_ARCHS:-largest=largest smallest=smallest}  # of the tiny space, two at once
  [ "$FINETUNE_S" -gt 0 ] && FINETUNE_S=240
fi
[ -n "${FT_ARCH:-}" ] && FT_ARCHS="subnet=$FT_ARCH"
if [ -z "${FT_ARCHS:-}" ]; then  # one per distinct subnet of the zoo's boards, in the boards' order
  FT_ARCHS=$($PY - <<'PY'
import json
from pathlib import Path
from mcuformer.memory import BOARDS
names = {}
for board in BOARDS:
    path = Path(f"models/cifar10-zoo/int8-{board}/zoo.json")
    try:
        arch = json.dumps(json.loads(path.read_text())["arch"], sort_keys=True)
    except (OSError, ValueError, KeyError, TypeError):
        continue
    names.setdefault(arch, f"{board}={path}")
print(" ".join(names.values()))
PY
)
fi
# a bad entry is dropped with a warning, not fatal: the slot still trains the supernet and the others
FT_SPECS=()
for spec in ${FT_ARCHS:-}; do
  name=${spec%%=*} arch=${spec#*=}
  if [[ "$spec" != *=* || ! "$name" =~ ^[A-Za-z0-9_.-]+$ ]]; then
    echo "device_train: FT_ARCHS entry '$spec' is not NAME=ARCH (NAME of letters, digits, '.', '_', '-'); skipped" >&2
  elif [ "$arch" != largest ] && [ "$arch" != smallest ] && [ ! -f "$arch" ]; then
    echo "device_train: fine-tune $name: arch $arch not found; skipped" >&2
  else
    FT_SPECS+=("$name=$arch")
  fi
done
[ "${#FT_SPECS[@]}" -eq 0 ] && FINETUNE_S=0
FT_START_S=60                                   # the fine-tune's start: load, data, its first evaluation
ft_reserve() { [ "$FINETUNE_S" -gt 0 ] && echo $(( FINETUNE_S + FT_START_S )) || echo 0; }
INIT=${INIT:-}
if [ -z "$INIT" ] && [ "$DRY" = 0 ] && [ -f models/cifar10-zoo/supernet.pt ]; then INIT=models/cifar10-zoo/supernet.pt; fi
[ "$INIT" = none ] && INIT=
SPLIT=${SPLIT:-models/cifar10-zoo/heldout-split.json}
[ "$SPLIT" = none ] || [ ! -f "$SPLIT" ] && SPLIT=
left() { echo $(( DEADLINE_S - ($(date +%s) - t0) )); }
if [ "$FINETUNE_ONLY" = 1 ] && { [ -z "$INIT" ] || [ ! -f "$INIT" ]; }; then
  echo "device_train: TRAIN_S=0 trains only the fine-tunes, from INIT: give a supernet file as INIT" >&2
  exit 2
fi
if [ "$FINETUNE_ONLY" = 1 ] && [ "$FINETUNE_S" -eq 0 ]; then
  echo "device_train: TRAIN_S=0 trains only the fine-tunes, and there are none (FINETUNE_S=0, or no FT_ARCHS left)" >&2
  exit 2
fi

{
  echo "device_train: $(date -u +%FT%TZ) dry-run=$DRY space=$SPACE config=$CONFIG data=$DATA init=${INIT:-none} split=${SPLIT:-none}"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  $PY -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUTDIR/train.log"

# ---- train: the time budget sizes the schedule after epoch 1; SIGINT at the deadline saves and stops ----
RESERVE_S=${RESERVE_S:-75}
read -r -a user_args <<< "${TRAIN_ARGS:-}"
train_once() {  # train_once RUN_DIR [extra flags...]: one training attempt; returns the trainer's exit status
  local run=$1; shift
  local resume=()
  [ -f "$run/checkpoint.pt" ] && resume=(--resume)
  local budget=$(( $(left) - RESERVE_S - $(ft_reserve) ))  # keep time for the fine-tune, copy-out and figures
  [ "$budget" -gt "${TRAIN_S:-540}" ] && budget=${TRAIN_S:-540}
  [ "$DRY" = 1 ] && budget=240                # the 3 tiny epochs fit, even on a busy CPU
  if [ "$budget" -lt 10 ]; then echo "device_train: no time left to train" | tee -a "$OUTDIR/train.log" >&2; return 3; fi
  local cmd=($PY -m mcuformer train --space "$SPACE" --config "$CONFIG" --data-path "$DATA" --output "$run"
             --time-budget-s "$budget" --checkpoint-every-s 60 --no-progress "${resume[@]}" "${EXTRA[@]}")
  [ -n "$INIT" ] && [ ${#resume[@]} -eq 0 ] && cmd+=(--init-from "$INIT")
  [ -n "$SPLIT" ] && cmd+=(--exclude-split "$SPLIT")
  cmd+=("${user_args[@]}" "$@")
  echo "+ ${cmd[*]}" | tee -a "$OUTDIR/train.log"
  local hard=$(( $(left) - RESERVE_S / 2 - $(ft_reserve) ))  # the trainer's own budget ends first: the backstop
  timeout -k 20 -s INT "$hard" "${cmd[@]}" 2>&1 | grep --line-buffered -v '^\s*$' | tee -a "$OUTDIR/train.log"
  return "${PIPESTATUS[0]}"
}
if [ "$FINETUNE_ONLY" = 1 ]; then
  SUPERNET=$INIT
  echo "device_train: TRAIN_S=0: no supernet training; the fine-tunes start from $INIT" | tee -a "$OUTDIR/train.log"
  $PY - "$OUTDIR" "$INIT" <<'PY' 2>&1 | tee -a "$OUTDIR/train.log"
import json, sys
from pathlib import Path
import torch
out, init = Path(sys.argv[1]), sys.argv[2]
record = {"supernet_trained": False, "init_from": init,
          "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__}
(out / "run.json").write_text(json.dumps(record, indent=1))
PY
else
train_once "$RUN"
train_rc=$?
echo "device_train: train exited $train_rc after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/train.log"
if [ ! -f "$RUN/checkpoint.pt" ] && [ "$train_rc" -ne 0 ] && [ "$(left)" -gt $(( RESERVE_S + 120 )) ]; then
  RUN=$RUN-fp32
  echo "device_train: no checkpoint; retrying once in fp32 on the DataLoader path" | tee -a "$OUTDIR/train.log"
  train_once "$RUN" --amp off --data-on-device off
  train_rc=$?
  echo "device_train: retry exited $train_rc after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/train.log"
fi
[ -f "$RUN/checkpoint.pt" ] || { echo "device_train: no checkpoint was written" | tee -a "$OUTDIR/train.log" >&2; exit 4; }

# ---- copy out: weights-only fp16 supernet, log, a run record (the curves are redrawn from the log at
# packaging, benchmarks/zoo_supernet.py: the 8-file limit goes to the fine-tunes) ----
$PY - "$RUN" "$OUTDIR" "$SPACE" "$CONFIG" "${INIT:-}" "$train_rc" "$(( $(date +%s) - t0 ))" <<'PY' 2>&1 | tee -a "$OUTDIR/train.log"
import json, shutil, sys
from pathlib import Path
import torch
from mcuformer.train import load_checkpoint
from mcuformer.train.warm_start import write_weights_only
run, out, space, config, init, rc, secs = sys.argv[1:]
run, out = Path(run), Path(out)
write_weights_only(run / "checkpoint.pt", out / "supernet-fp16.pt")
if (run / "log.jsonl").exists():
    shutil.copyfile(run / "log.jsonl", out / "log.jsonl")
state = load_checkpoint(out / "supernet-fp16.pt")
evals = [h for h in state["history"] if "eval" in h]
record = {"space": space, "config": config, "init_from": init or None, "train_exit": int(rc),
          "retried_in_fp32": run.name.endswith("-fp32"),
          "wall_seconds_so_far": int(secs), "epochs_done": state["epoch"], "planned_epochs": state.get("planned_epochs"),
          "images_seen": state.get("images_seen"), "last_eval": evals[-1] if evals else None,
          "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
          "torch": torch.__version__, "supernet_bytes": (out / "supernet-fp16.pt").stat().st_size}
(out / "run.json").write_text(json.dumps(record, indent=1))
print("device_train: wrote", ", ".join(sorted(p.name for p in out.iterdir())))
PY
SUPERNET=$RUN/checkpoint.pt
fi

# ---- fine-tune every subnet of FT_SPECS from the supernet just trained, all at once on the one device ----
if [ "$FINETUNE_S" -gt 0 ]; then
  ft_budget=$(( $(left) - RESERVE_S / 2 - FT_START_S ))
  [ "$ft_budget" -gt "$FINETUNE_S" ] && ft_budget=$FINETUNE_S
  if [ "$ft_budget" -lt 10 ]; then
    echo "device_train: no time left to fine-tune" | tee -a "$OUTDIR/train.log"
  else
    ft_workers=$(( 14 / ${#FT_SPECS[@]} )); [ "$ft_workers" -lt 2 ] && ft_workers=2
    ft_args=()
    for spec in "${FT_SPECS[@]}"; do
      name=${spec%%=*} arch=${spec#*=}
      ft_run=$RUN-finetune-$name
      ft_cmd=($PY -m mcuformer finetune --checkpoint "$SUPERNET" --arch "$arch" --output "$ft_run"
              --data-path "$DATA" --config "$FT_CONFIG" --teacher "${FT_TEACHER:-models/cifar10-zoo/teacher.pt}" --time-budget-s "$ft_budget"
              --checkpoint-every-s 60 --no-progress --workers "$ft_workers" "${EXTRA[@]}")
      [ "$DRY" = 1 ] && ft_cmd+=(--epochs 2)
      echo "+ [$name] ${ft_cmd[*]}" | tee -a "$OUTDIR/train.log"
      # each in the background with its own log, collected below; the deadline stops them all (a warm
      # machine's earlier call may have left this run's markers: they must not pass for this one's)
      rm -f "$ft_run".{log,rc,start,end}
      ( date +%s.%N > "$ft_run.start"
        timeout -k 10 -s INT $(( $(left) - 20 )) "${ft_cmd[@]}" > "$ft_run.log" 2>&1; echo $? > "$ft_run.rc"
        date +%s.%N > "$ft_run.end" ) &
      ft_args+=("$name" "$arch" "$ft_run")
    done
    wait
    for (( i = 0; i < ${#ft_args[@]}; i += 3 )); do
      name=${ft_args[i]} ft_run=${ft_args[i + 2]}
      grep -v '^\s*$' "$ft_run.log" 2>/dev/null | sed "s/^/[$name] /" | tee -a "$OUTDIR/train.log"
      ft_rc=$(cat "$ft_run.rc" 2>/dev/null || echo '?')
      echo "device_train: fine-tune $name exited $ft_rc after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/train.log"
    done
    # weights-only copies and their records in run.json (under finetune, by name), with the zoo boards each serves
    $PY - "$OUTDIR" "$FT_CONFIG" "${ft_args[@]}" <<'PY' 2>&1 | tee -a "$OUTDIR/train.log"
import json, sys
from pathlib import Path
from mcuformer.train import load_checkpoint
from mcuformer.train.warm_start import write_weights_only
out, config, rest = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
zoo = {}
for z in sorted(Path("models/cifar10-zoo").glob("int8-*/zoo.json")):
    try:
        zoo[z.parent.name[len("int8-"):]] = json.loads(z.read_text())["arch"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
def read(run, suffix, kind):  # what a background job wrote beside its run folder, if it did
    try:
        return kind(run.with_name(run.name + suffix).read_text().strip())
    except (OSError, ValueError):
        return None
records = {}
for name, arch, run in zip(rest[0::3], rest[1::3], rest[2::3]):
    run = Path(run)
    rc = read(run, ".rc", int)
    clock = {"started_at": read(run, ".start", float), "ended_at": read(run, ".end", float)}
    if not (run / "checkpoint.pt").exists():
        records[name] = {"arch_file": arch, "exit": rc, "file": None, **clock}
        continue
    dest = out / f"finetune-{name}-fp16.pt"
    write_weights_only(run / "checkpoint.pt", dest)
    state = load_checkpoint(dest)
    evals = [h for h in state["history"] if "eval" in h]
    records[name] = {"file": dest.name, "arch_file": arch, "arch": state.get("finetuned_arch"),
                     "boards": sorted(b for b, a in zoo.items() if a == state.get("finetuned_arch")),
                     "config": config, "exit": rc, "epochs_done": state["epoch"],
                     "images_seen": state.get("images_seen"),
                     "train_seconds": round(sum(h.get("seconds", 0) for h in state["history"]), 1),
                     "first_eval": evals[0] if evals else None, "last_eval": evals[-1] if evals else None,
                     "bytes": dest.stat().st_size, **clock}
    print(f"device_train: fine-tuned {name}: {state['epoch']} epochs; last eval", records[name]["last_eval"])
run_record = json.loads((out / "run.json").read_text())
(out / "run.json").write_text(json.dumps({**run_record, "finetune": records}, indent=1))
PY
  fi
fi

# ---- the throughput figures, if time remains (after a fine-tune, only in a dry run) and the 8-file limit
# leaves room ----
room() { [ "$(ls "$OUTDIR" | wc -l)" -lt 8 ]; }
if [ "$(left)" -gt 45 ] && room; then
  timeout -k 5 $(( $(left) / 2 )) $PY benchmarks/input_path_throughput.py --space "$SPACE" --config "$CONFIG" \
    --data-path "$DATA" --output "$OUTDIR/input_path_throughput.json" "${BENCH_IN[@]}" 2>&1 | tail -4 | tee -a "$OUTDIR/train.log"
fi
if [ "$(left)" -gt 25 ] && room; then
  timeout -k 5 $(( $(left) - 10 )) $PY benchmarks/train_throughput.py --output "$OUTDIR/train_throughput_official-T.json" \
    "${BENCH_T[@]}" 2>&1 | tail -6 | tee -a "$OUTDIR/train.log"
fi
[ "$DRY" = 1 ] && rm -rf "$(dirname "$RUN")"
echo "device_train: done in $(( $(date +%s) - t0 )) s; $(ls "$OUTDIR" | wc -l) files in $OUTDIR" | tee -a "$OUTDIR/train.log"
exit 0
