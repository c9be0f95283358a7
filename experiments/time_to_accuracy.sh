#!/usr/bin/env bash
# The time-to-accuracy comparison of #13 (docs/results.md): ResNet-20 for 15 epochs on the full
# training split of the JPEG copy, validated on the test split after every epoch (no val split:
# these runs choose nothing, they are measured), two seeds per recipe, one thread per lane:
#   seedshort  the original recipe shortened: batch 64, lr 0.1, x0.1 at epoch index 8
#   akamaster  akamaster's schedule: batch 128, lr 0.1, x0.1 at 8 and 12, ImageNet normalization
#   fast       configs/fast.toml (chosen on --val-split 5000 by experiments/fast_search.sh)
#   fastbf16   the same with --amp bf16 (a CPU with AVX512-BF16 or AMX; held-out check: fast_search.sh)
#   fast10     toward "85% by epoch 10": fast.toml's cycle in 10 epochs with twice its lr peak and
#              crops from 2-pixel padding (search rounds 11 and 13: 84.80% and 84.98% held-out)
#   fast10ema99  fast10 with a short average that its warm-up reaches (--ema-decay 0.99, about 100
#              steps; search round 15: 84.88% and 85.52% held-out; test: 84.78% and 85.21%)
#
#   RUNS="seedshort-s0 akamaster-s1" bash experiments/time_to_accuracy.sh &
#   RUNS="fast-s0 fast-s1" bash experiments/time_to_accuracy.sh &
#   resnet-cifar compare runs/tta/* --x time --targets 80,85 --baseline LABEL --out-dir docs/tta
#   (LABEL: the original recipe's run label, written out in docs/results.md section 6)
#
# Rerunning finishes or resumes what is missing.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/tta}
CLI=${CLI:-resnet-cifar}
RUNS=${RUNS:-"seedshort-s0 akamaster-s0 fast-s0 seedshort-s1 akamaster-s1 fast-s1"}
for name in $RUNS; do
  run="$OUT/$name"
  recipe=${name%-s*}
  seed=${name##*-s}
  [ -f "$run/summary.json" ] && continue
  if [ -f "$run/last.pt" ]; then
    $CLI train --resume "$run" --threads 1 --no-progress
    continue
  fi
  case $recipe in
    seedshort) flags=(--model resnet20 --epochs 15 --milestones 8);;
    akamaster) flags=(--model resnet20 --epochs 15 --batch-size 128 --milestones 8,12
                      --normalize imagenet);;
    fast) flags=(--recipe fast);;
    fastbf16) flags=(--recipe fast --amp bf16);;
    fast10) flags=(--recipe fast --epochs 10 --lr 0.4 --crop-padding 2);;
    fast10ema99) flags=(--recipe fast --epochs 10 --lr 0.4 --crop-padding 2 --ema-decay 0.99);;
    *) echo "unknown recipe $recipe" >&2; exit 2;;
  esac
  $CLI train "${flags[@]}" --data "$DATA" --seed "$seed" --threads 1 --no-progress --out "$run"
done
