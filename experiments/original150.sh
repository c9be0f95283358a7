#!/usr/bin/env bash
# The original experiment in full (#14): `configs/original.toml` unchanged, ResNet-20 for 150
# epochs, batch 64, lr 0.1 then 0.01 from epoch index 80, validated on the test split after every
# epoch.
# It takes hours on a CPU (idle, both threads: 125-190 s per epoch on the 2-core Zen 3s of
# different sessions, 5 to 8 hours in all; about 100-113 s on a Zen 4), so it runs in the
# background and is resumed until it is done. Seed 0 ended at 87.11% test on the JPEG copy
# (resnet20.original150_jpeg, resnet20's default weights; docs/results.md, section 2):
#
#   OUT=~/runs/original150 bash experiments/original150.sh > ~/runs/original150.log 2>&1 &
#
# Rerunning resumes from the last saved step (SIGTERM saves mid-epoch, and last.pt is also saved
# every 10 minutes within an epoch, `--save-every`) or does nothing once the run has finished;
# it then prints the command that publishes its weights. The thread count is the default (one
# per idle core, chosen again every 20 s), so other work on the machine slows the run instead of
# collapsing it; each epoch's count is kept in metrics.jsonl.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/original150}
CLI=${CLI:-resnet-cifar}
SEEDS=${SEEDS:-0}
for seed in $SEEDS; do
  run="$OUT/resnet20-s$seed"
  if [ ! -f "$run/summary.json" ]; then
    if [ -f "$run/last.pt" ]; then
      $CLI train --resume "$run" --threads 0 --no-progress
    else
      $CLI train --model resnet20 --data "$DATA" --seed "$seed" --threads 0 --no-progress \
        --out "$run"
    fi
  fi
  if [ ! -f "$run/summary.json" ]; then  # stopped early (SIGTERM saves and exits cleanly)
    echo "not finished: $run; rerun this script to resume it" >&2
    exit 1
  fi
  tag=resnet20.original150_jpeg
  [ "$seed" = 0 ] || tag="resnet20.original150s${seed}_jpeg"
  echo "finished: $run. Publish it with"
  echo "  $CLI weights --add $run --tag $tag --data $DATA --provenance \"trained and" \
    "evaluated on the CIFAR-10 JPEG q75 copy ($DATA), not the original CIFAR-10: compare its" \
    "accuracy with runs on this copy only (a published ResNet-20 that scores 91.7% on the" \
    "original test set scores 81.0% on this copy without retraining)\""
done
