#!/usr/bin/env bash
# One lent GPU slot, one call: train the CIFAR-10 supernet, checkpointing every minute, then fine-tune the F746
# zoo model's subnet from it for FINETUNE_S seconds, and put the weights-only fp16 supernet and fine-tuned
# subnet (their histories inside), the supernet's log and curves, a run record and, if time remains, the
# input-path and official-T throughput figures into an output folder: at most 8 files, each under 16 MiB.
#
#   bash scripts/device_train.sh [--dry-run] [OUTDIR]       (OUTDIR defaults to $OUT, else outputs/device)
#
# Environment (all optional):
#   DATA       the CIFAR-10 archive (default .gpu/data/cifar10-jpg.tar.gz, else ../shared/data/cifar10-jpg.tar.gz)
#   DEADLINE_S seconds from the start by which everything must be written (default 570: a 600 s call)
#   TRAIN_S    training seconds at most (default 540, less when the deadline needs it)
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
#   FINETUNE_S seconds of fine-tuning after the supernet (default 180; 0: none). The subnet (FT_ARCH, default
#              the F746 zoo model's arch, models/cifar10-zoo/int8-stm32f746/zoo.json) trains on its own from the
#              supernet just trained, with configs/finetune-cifar10-zoo-gpu.yaml (FT_CONFIG): at 19,000 img/s,
#              tens of epochs where the CPU gave the zoo models 20 in 50 minutes. Its training time and the
#              minute it takes to start are taken from the supernet's. FT_ARCH=configs/arch-stm32f746-grid16.yaml
#              fine-tunes the same subnet on 16x16 tokens instead (docs/conv-stem.md).
#   FT_TEACHER the fine-tune's --teacher (default none; largest, or a fine-tuning checkpoint of the same space
#              whose subnet then teaches: self-distillation)
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
FINETUNE_S=${FINETUNE_S:-180}
FT_ARCH=${FT_ARCH:-models/cifar10-zoo/int8-stm32f746/zoo.json}
FT_CONFIG=${FT_CONFIG:-configs/finetune-cifar10-zoo-gpu.yaml}
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
  FT_ARCH=largest  # of the tiny space
  [ "$FINETUNE_S" -gt 0 ] && FINETUNE_S=240
fi
if [ "$FINETUNE_S" -gt 0 ] && [ "$FT_ARCH" != largest ] && [ ! -f "$FT_ARCH" ]; then
  echo "device_train: FT_ARCH $FT_ARCH not found; no fine-tune" >&2; FINETUNE_S=0
fi
FT_START_S=60                                   # the fine-tune's start: load, data, its first evaluation
ft_reserve() { [ "$FINETUNE_S" -gt 0 ] && echo $(( FINETUNE_S + FT_START_S )) || echo 0; }
INIT=${INIT:-}
if [ -z "$INIT" ] && [ "$DRY" = 0 ] && [ -f models/cifar10-zoo/supernet.pt ]; then INIT=models/cifar10-zoo/supernet.pt; fi
[ "$INIT" = none ] && INIT=
SPLIT=${SPLIT:-models/cifar10-zoo/heldout-split.json}
[ "$SPLIT" = none ] || [ ! -f "$SPLIT" ] && SPLIT=
left() { echo $(( DEADLINE_S - ($(date +%s) - t0) )); }

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

# ---- copy out: weights-only fp16 supernet, log, curves, a run record ----
$PY - "$RUN" "$OUTDIR" "$SPACE" "$CONFIG" "${INIT:-}" "$train_rc" "$(( $(date +%s) - t0 ))" <<'PY' 2>&1 | tee -a "$OUTDIR/train.log"
import json, shutil, sys
from pathlib import Path
import torch
from mcuformer.train import load_checkpoint
from mcuformer.train.warm_start import write_weights_only
run, out, space, config, init, rc, secs = sys.argv[1:]
run, out = Path(run), Path(out)
write_weights_only(run / "checkpoint.pt", out / "supernet-fp16.pt")
for name in ("log.jsonl", "curves.png"):
    if (run / name).exists():
        shutil.copyfile(run / name, out / name)
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

# ---- fine-tune the F746 model's subnet from the supernet just trained ----
if [ "$FINETUNE_S" -gt 0 ]; then
  FT_RUN=$RUN-finetune
  ft_budget=$(( $(left) - RESERVE_S / 2 - FT_START_S ))
  [ "$ft_budget" -gt "$FINETUNE_S" ] && ft_budget=$FINETUNE_S
  if [ "$ft_budget" -lt 10 ]; then
    echo "device_train: no time left to fine-tune" | tee -a "$OUTDIR/train.log"
  else
    ft_cmd=($PY -m mcuformer finetune --checkpoint "$RUN/checkpoint.pt" --arch "$FT_ARCH" --output "$FT_RUN"
            --data-path "$DATA" --config "$FT_CONFIG" --teacher "${FT_TEACHER:-none}" --time-budget-s "$ft_budget"
            --checkpoint-every-s 60 --no-progress "${EXTRA[@]}")
    [ "$DRY" = 1 ] && ft_cmd+=(--epochs 2)
    echo "+ ${ft_cmd[*]}" | tee -a "$OUTDIR/train.log"
    timeout -k 10 -s INT $(( $(left) - 20 )) "${ft_cmd[@]}" 2>&1 | grep --line-buffered -v '^\s*$' | tee -a "$OUTDIR/train.log"
    ft_rc=${PIPESTATUS[0]}
    echo "device_train: fine-tune exited $ft_rc after $(( $(date +%s) - t0 )) s" | tee -a "$OUTDIR/train.log"
    if [ -f "$FT_RUN/checkpoint.pt" ]; then
      $PY - "$FT_RUN" "$OUTDIR" "$FT_ARCH" "$FT_CONFIG" "$ft_rc" <<'PY' 2>&1 | tee -a "$OUTDIR/train.log"
import json, sys
from pathlib import Path
from mcuformer.train import load_checkpoint
from mcuformer.train.warm_start import write_weights_only
run, out, arch, config, rc = sys.argv[1:]
run, out = Path(run), Path(out)
write_weights_only(run / "checkpoint.pt", out / "finetune-fp16.pt")
state = load_checkpoint(out / "finetune-fp16.pt")
evals = [h for h in state["history"] if "eval" in h]
record = {"arch_file": arch, "arch": state.get("finetuned_arch"), "config": config, "exit": int(rc),
          "epochs_done": state["epoch"], "images_seen": state.get("images_seen"),
          "train_seconds": round(sum(h.get("seconds", 0) for h in state["history"]), 1),
          "first_eval": evals[0] if evals else None, "last_eval": evals[-1] if evals else None,
          "bytes": (out / "finetune-fp16.pt").stat().st_size}
run_record = json.loads((out / "run.json").read_text())
(out / "run.json").write_text(json.dumps({**run_record, "finetune": record}, indent=1))
print("device_train: fine-tuned", record["epochs_done"], "epochs; last eval", record["last_eval"])
PY
    fi
  fi
fi

# ---- the throughput figures, if time remains (after a fine-tune, only in a dry run) ----
if [ "$(left)" -gt 45 ]; then
  timeout -k 5 $(( $(left) / 2 )) $PY benchmarks/input_path_throughput.py --space "$SPACE" --config "$CONFIG" \
    --data-path "$DATA" --output "$OUTDIR/input_path_throughput.json" "${BENCH_IN[@]}" 2>&1 | tail -4 | tee -a "$OUTDIR/train.log"
fi
if [ "$(left)" -gt 25 ]; then
  timeout -k 5 $(( $(left) - 10 )) $PY benchmarks/train_throughput.py --output "$OUTDIR/train_throughput_official-T.json" \
    "${BENCH_T[@]}" 2>&1 | tail -6 | tee -a "$OUTDIR/train.log"
fi
[ "$DRY" = 1 ] && rm -rf "$(dirname "$RUN")"
echo "device_train: done in $(( $(date +%s) - t0 )) s; $(ls "$OUTDIR" | wc -l) files in $OUTDIR" | tee -a "$OUTDIR/train.log"
exit 0
