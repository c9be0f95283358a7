#!/usr/bin/env bash
# The whole GPU check in one script, inside 10 minutes on one H200 (torch 2.11, run from source):
# GPU-vs-CPU logits of every model (fp32 1e-4, bf16 1e-2), training/eval throughput at batch 64
# and 512 in eager, compile and CUDA-graphs modes, and the original recipe (ResNet-20, 150 epochs,
# batch 64) timed end to end with its test accuracy. Goal: the recipe in <= 3 minutes wall.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --cpu-dry-run   # anywhere: every phase shrunk, on the CPU
#
# Env: DATA (default .gpu/cifar10-jpeg.tar.gz), OUT (results folder, default .gpu/out), PYTHON.
# Results: $OUT/gpu_check.json, $OUT/recipe.log, $OUT/recipe/ (the run directory).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
DATA=${DATA:-.gpu/cifar10-jpeg.tar.gz}
OUT=${OUT:-.gpu/out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export RESNET_CIFAR_CACHE=${RESNET_CIFAR_CACHE:-$PWD/.gpu/cache}  # decoded once, then reused
if [[ "${1:-}" != "--cpu-dry-run" ]]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
exec "$PYTHON" benchmarks/gpu_check.py --data "$DATA" --out "$OUT" "$@"
