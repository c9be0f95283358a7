#!/usr/bin/env bash
# The original repository's Part 2 question -- does a recurrent cell help? -- on a budget that fits
# a 2-core CPU: six models x two seeds, the seed recipe shortened to 3 epochs on a stratified
# 4,000-image subset (lr x 0.1 from epoch index 2), validation on 1,000 held-out training images,
# test accuracy of the final weights on the full 10,000-image test split. NCHW (--no-channels-last),
# as the published runs were made before channels_last became the default.
#
#   DATA=../shared/data/cifar10-jpeg.tar.gz bash experiments/part2_comparison.sh
#   resnet-cifar compare runs/part2/* --out-dir docs/part2
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/part2}
CLI=${CLI:-resnet-cifar}
MODELS=${MODELS:-"resnet20 resnet20_convrnn resnet20_convgru regnet20_convrnn regnet20_convgru regnet20_convlstm"}
SEEDS=${SEEDS:-"0 1"}
for seed in $SEEDS; do
  for model in $MODELS; do
    run="$OUT/$model-s$seed"
    [ -f "$run/summary.json" ] && continue  # done already: the script can be rerun to finish
    if [ -f "$run/last.pt" ]; then
      $CLI train --resume "$run" --threads "${THREADS:-1}"
    else
      $CLI train --model "$model" --data "$DATA" --seed "$seed" --epochs 3 --milestones 2 \
        --train-subset 4000 --val-split 1000 --no-channels-last --threads "${THREADS:-1}" \
        --out "$run" --overwrite
    fi
  done
done
