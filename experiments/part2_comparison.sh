#!/usr/bin/env bash
# The original repository's Part 2 question -- does a recurrent cell help? -- on a budget that fits
# a 2-core CPU: six models x two seeds, the original recipe (SGD 0.1, batch 64, one lr step x 0.1)
# shortened to 10 epochs on a stratified 10,000-image training subset, lr step at epoch index 5
# (the original's 80/150, scaled), validation after every epoch on 1,000 held-out training images,
# test accuracy of the final weights on the full 10,000-image test split.
#
# One single-threaded lane per seed, both at once (two 1-thread jobs use 2 cores far better than
# one 2-thread job does here); rerunning the script finishes or resumes what is missing:
#
#   SEEDS=0 bash experiments/part2_comparison.sh & SEEDS=1 bash experiments/part2_comparison.sh
#   resnet-cifar compare runs/part2-e10/* --baseline resnet20 --out-dir docs/part2
#
# The first, smaller comparison (3 epochs on 4,000 images, NCHW) is EPOCHS=3 MILESTONES=2
# SUBSET=4000 EXTRA=--no-channels-last OUT=runs/part2.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
EPOCHS=${EPOCHS:-10}
MILESTONES=${MILESTONES:-5}
SUBSET=${SUBSET:-10000}
OUT=${OUT:-runs/part2-e$EPOCHS}
CLI=${CLI:-resnet-cifar}
EXTRA=${EXTRA:-}
MODELS=${MODELS:-"resnet20 resnet20_convrnn resnet20_convgru regnet20_convrnn regnet20_convgru regnet20_convlstm"}
SEEDS=${SEEDS:-"0 1"}
for seed in $SEEDS; do
  for model in $MODELS; do
    run="$OUT/$model-s$seed"
    [ -f "$run/summary.json" ] && continue  # done already: the script can be rerun to finish
    if [ -f "$run/last.pt" ]; then
      $CLI train --resume "$run" --threads "${THREADS:-1}"
    else
      # shellcheck disable=SC2086  # EXTRA is a list of flags
      $CLI train --model "$model" --data "$DATA" --seed "$seed" --epochs "$EPOCHS" \
        --milestones "$MILESTONES" --train-subset "$SUBSET" --val-split 1000 \
        --threads "${THREADS:-1}" --out "$run" --overwrite $EXTRA
    fi
  done
done
