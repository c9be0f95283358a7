#!/usr/bin/env bash
# Part 2 at full data: every model under `--recipe fast` (configs/fast.toml, chosen for ResNet-20
# on held-out images and used unchanged for the recurrent models), 15 epochs on the full training
# split of the JPEG copy, validated on the test split after every epoch (these runs choose
# nothing: they are measured and their final weights are published with `resnet-cifar weights
# --add`). One single-threaded lane per call; rerunning finishes or resumes what is missing:
#
#   MODELS="resnet20_convrnn" bash experiments/part2_fast.sh &
#   MODELS="regnet20_convrnn" bash experiments/part2_fast.sh &
#   resnet-cifar compare runs/part2-fast/* runs/tta/fast-s* --baseline resnet20 \
#       --out-dir docs/part2-fast
#
# resnet20 itself is time_to_accuracy.sh's fast-s0 and fast-s1 (the same command).
# THREADS=0 gives a lane the default thread count (one per idle core, chosen again as the load
# changes): for a run left alone on the machine across sessions (regnet20_convlstm's seed 1).
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/part2-fast}
CLI=${CLI:-resnet-cifar}
MODELS=${MODELS:-"resnet20_convrnn resnet20_convgru regnet20_convrnn regnet20_convgru regnet20_convlstm"}
SEEDS=${SEEDS:-0}
THREADS=${THREADS:-1}
for seed in $SEEDS; do
  for model in $MODELS; do
    run="$OUT/$model-s$seed"
    [ -f "$run/summary.json" ] && continue  # done already
    if [ -f "$run/last.pt" ]; then
      $CLI train --resume "$run" --threads "$THREADS" --no-progress
    else
      $CLI train --recipe fast --model "$model" --data "$DATA" --seed "$seed" --threads "$THREADS" \
        --no-progress --out "$run"
    fi
  done
done
