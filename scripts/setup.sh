#!/usr/bin/env bash
# Set-up of a fresh machine: the system tools (apt) and the Python package with its dependencies.
# Idempotent: a second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Cortex-M cross compiler, newlib and the emulator (for the C engine's build and verification)
if ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null; then
  echo "setup: installing gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm >/dev/null
fi

# PyTorch: a bare 'torch' requirement resolves to a 5.5 GB CUDA build, and the CPU-only 2.13 wheel on
# these machines cannot import torchvision; torch 2.14.1 + torchvision 0.29.1 is the pair that works.
if ! $PY -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "setup: installing torch 2.14.1 + torchvision 0.29.1"
  $PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
$PY -m pip install -q -e ".[dev]"
echo "setup: done ($($PY -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'))"
