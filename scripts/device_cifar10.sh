#!/usr/bin/env bash
# Trains the GPU-sized CIFAR-10 supernet on a lent GPU machine, in calls of at most 10 minutes (not yet run:
# no GPU was lent to the task that wrote it).
#   first call:  bash scripts/device_cifar10.sh start  BUDGET_S CALL_S   (benchmark, 1-epoch probe, then train)
#   later calls: bash scripts/device_cifar10.sh resume CALL_S            (continue the checkpoint in .gpu/run)
# The epoch count is chosen from the probe so that the whole schedule takes about BUDGET_S seconds of training.
# The run folder travels in .gpu/run (carried), the data in .gpu/data; results are copied to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/src MCUFORMER_CACHE=/tmp/mcuformer-cache
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
DATA=.gpu/data/cifar10-jpg.tar.gz
WORKERS=$(( $(nproc) - 2 ))
TRAIN="python3 -m mcuformer train --space configs/cifar10.yaml --config configs/train-cifar10.yaml --data-path $DATA --workers $WORKERS --no-progress"
t0=$(date +%s)
collect() {
  mkdir -p /tmp/small && cp -f .gpu/run/log.jsonl .gpu/run/curves.png .gpu/run/space.json /tmp/small/ 2>/dev/null
  cp -f "$OUT"/*.log "$OUT"/*.json /tmp/small/ 2>/dev/null; rm -f "$OUT"/*.log "$OUT"/*.json
  tar czf "$OUT/small.tgz" -C /tmp/small .
  [ -f .gpu/run/checkpoint.pt ] && split -b 15M .gpu/run/checkpoint.pt "$OUT/ckpt.part-"
  ls -la "$OUT"
}
case "$1" in
  start)
    budget=$2; call=$3
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
    python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
    timeout 260 python3 benchmarks/train_throughput.py --output "$OUT/train_throughput_official-T_cuda.json" 2>&1 | tee "$OUT/bench.log"
    timeout 60 python3 benchmarks/train_throughput.py --cifar --modes mcuformer-bf16 --output "$OUT/train_throughput_cifar10_cuda.json" 2>&1 | tail -3 | tee -a "$OUT/bench.log"
    rm -rf /tmp/probe
    $TRAIN --output /tmp/probe --epochs 1 --warmup-epochs 0 2>&1 | tail -2 | tee "$OUT/probe.log"
    sec=$(python3 -c "import json; print(json.loads(open('/tmp/probe/log.jsonl').readline())['seconds'])")
    epochs=$(python3 -c "print(max(30, min(400, int($budget / ($sec * 1.06)))))")
    echo "probe: $sec s/epoch -> $epochs epochs for a $budget s budget" | tee -a "$OUT/probe.log"
    left=$(( call - ($(date +%s) - t0) - 25 ))
    timeout -k 30 -s INT $left $TRAIN --output .gpu/run --epochs "$epochs" 2>&1 | grep -v "^\s*$" | tail -40 | tee "$OUT/train.log"
    ;;
  resume)
    call=$2
    left=$(( call - 25 ))
    timeout -k 30 -s INT $left $TRAIN --output .gpu/run --resume 2>&1 | grep -v "^\s*$" | tail -40 | tee "$OUT/train.log"
    ;;
esac
collect
