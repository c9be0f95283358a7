#!/usr/bin/env bash
# The whole GPU check in one command, inside 10 minutes on one GPU (torch 2.11, run from source):
# tests/test_cuda.py, GPU-vs-CPU logits of every model, training/eval throughput at batch 64 and
# 512 in eager, compile and CUDA-graphs modes, and the original recipe (ResNet-20, 150 epochs,
# batch 64) timed end to end with its test accuracy. Goal: the recipe in <= 3 minutes wall.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run   # anywhere: every phase shrunk, on the CPU
#
# Env: DATA (default .gpu-data/cifar10-jpeg.tar.gz: a folder holding nothing else, so that it
# alone travels to the GPU machine; the dry run's default: 1,000 random images it writes), OUT
# (results; the GPU machine sets it, else .gpu/out), PYTHON (default .venv/bin/python where
# there is one, else python3). The decoded-array cache goes to .gpu/cache, which never travels.
# Results: $OUT/gpu_check.json, tests.log, recipe.log (both streamed) and recipe/.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] && PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export RESNET_CIFAR_CACHE=${RESNET_CIFAR_CACHE:-$PWD/.gpu/cache}  # decoded once, then reused
exec "${PYTHON:-python3}" benchmarks/gpu_check.py --out "${OUT:-.gpu/out}" ${DATA:+--data "$DATA"} "$@"
