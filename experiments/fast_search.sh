#!/usr/bin/env bash
# The search behind configs/fast.toml (#13): 15 epochs of resnet20 on the JPEG copy's training
# split less 5,000 stratified held-out images (--val-split 5000), seed 0, one thread per lane.
# Every choice is made on the held-out accuracy; the test split is not looked at here.
# Validation also reports flip-TTA beside the plain accuracy (it does not change training).
#
#   LANE=a bash experiments/fast_search.sh & LANE=b bash experiments/fast_search.sh
#   resnet-cifar compare runs/fast-search/*
#
# Rerunning finishes or resumes what is missing.
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
OUT=${OUT:-runs/fast-search}
CLI=${CLI:-resnet-cifar}
# The starting point: flags that existed before #13 (85.44% test in 15 epochs, issue #13).
BASE="--schedule onecycle --lr 0.2 --nesterov --label-smoothing 0.1 --weight-decay 5e-4 --batch-size 128"
# Round 1: the starting point against the three training options of #13 part 1 together.
# Round 2, on round 1's winner (ema-alt-nodecay): cutout, and label smoothing off. Both lost on
# held-out accuracy (docs/results.md, section 6): configs/fast.toml is ema-alt-nodecay.
EAN="$BASE --ema-decay 0.999 --flip alternating --no-decay-bn-bias"
# Round 3: the winner with bf16 autocast in training (a CPU with AVX512-BF16 or AMX): the same
# accuracy at less cost? (run as `--recipe fast --amp bf16 --val-split 5000 --seed 0`: the same
# settings, without the flip-TTA column).
# Round 4, toward "85% by epoch 10": the winner's one cycle compressed into 10 epochs (bf16, as
# round 3 showed it costs nothing measurable): does the schedule's end, not the epoch count,
# bring the last points? Partly: 83.64% held-out at epoch 10 against 85.82% at 15 (docs/results.md).
# Round 5, the same target: more steps per epoch. Batch 64, the original recipe's own batch (so
# within its per-epoch cost by construction), with the lr and the average's decay scaled to it
# (lr 0.1, half of 0.2; decay 0.9995, the same window in images as 0.999 at batch 128). No
# gain: 83.66% held-out at epoch 10 against round 4's 83.64% (docs/results.md).
# Round 6, the same target: the lr peak after 1 epoch instead of 3 (onecycle climbs for 30% of
# the steps): a 1-epoch linear warm-up, then a cosine down over the other 9 (round 4 otherwise).
# Ahead early (71.80% against 68.94% at epoch 2), level at the end: 83.66% held-out.
# Round 7, the same target, on a CPU without bf16 (float32): two initializations, together, that
# are said to speed up the start of training: the residual branches' last BatchNorm at 0
# (--zero-init-residual) and the first convolution as a whitening of the images' 3x3 patches
# (--stem-init whitening), against round 4's setting in float32 run beside it. Behind at every
# epoch (the average 75.08% against 78.56% held-out after epoch 5), so stopped there: dropped.
# Round 8, the same target, float32: two of airbench's settings for short runs, one at a time on
# round 4's setting: crops from 2-pixel padding instead of 4 (--crop-padding 2: weaker
# augmentation for fewer epochs), and label smoothing 0.2 instead of 0.1. Padding 2 led early and
# ended level (84.02% against 84.16%); smoothing 0.2 lost (83.70%). Neither enters fast.toml.
# Round 9, the same target, float32: twice the one-cycle peak (--lr 0.4), since every setting of
# rounds 4-8 ended at 83.6-84.2% held-out with the training accuracy no higher (underfitting):
# does a larger step get further in the same 10 epochs? Ahead early, behind after epochs 5-6,
# 0.3 points higher at the end (84.44% held-out against 84.16%): inside the noise, not kept.
# Round 10, the same target, float32: the original recipe's weight decay (1e-4) instead of 5e-4. The
# starting flags' 5e-4 was never searched, and it is the strongest regularizer left in a setting
# that underfits (training accuracy no higher than held-out at epoch 10).
# It overfits instead: level or ahead to epoch 8, then behind, ending 1 point lower (83.12%
# held-out against 84.16%, training accuracy 85.41% above it): fast.toml keeps 5e-4.
# Round 11, the same target, float32: the two levers that led early and ended level or slightly
# ahead, together: twice the one-cycle peak (round 9) with crops from 2-pixel padding (round 8).
# Round 12, the same target, float32: weight decay the other way from round 10, 1e-3 instead of
# 5e-4. With BatchNorm, decay mostly sets the effective step of the convolutions' weights, and
# 1e-4 overfit: does more of it help?
# Round 11 led the reference after every epoch and ended at 84.80% held-out (best 10-epoch run so
# far; +0.64, inside the noise). Round 12 lost (83.42%): fast.toml keeps 5e-4.
# Round 13: round 11's pair in the 15-epoch schedule of fast.toml (lane o), and round 11 again
# with seed 1 (lane p): is its lead over the reference more than one seed's luck?
# Seed 1 ended at 84.98% (raw weights 85.66%), so the pair in 10 epochs is measured on the test
# split as `fast10` (experiments/time_to_accuracy.sh). Over 15 epochs it ends level with fast
# (85.78% against 85.66%) and overfits (training accuracy 88.95%): fast.toml is unchanged.
# Round 14: round 11's setting with a shorter average (--ema-decay 0.998, about 1.4 epochs of
# steps instead of 2.8), seeds 0 and 1 (lanes q and r): in rounds 11 and 13 the raw weights ended
# above the average (85.21% against 84.89% held-out, mean of the two seeds).
# Stopped after 4 epochs: it reproduced round 11 exactly, since the average's warm-up,
# (1 + step) / (10 + step), stays below 0.998 (and 0.999) for all 3,510 steps of a 10-epoch run:
# only a decay under 0.9974 can change it. train's header now notes an unreached ema_decay.
# Round 15: round 11's setting with a short average that the warm-up reaches (--ema-decay 0.99,
# about 100 steps, reached at step 890 of 3,510), seeds 0 and 1 (lanes s and t). The raw weights
# are round 11's and 13's by construction (the average does not feed back into training), so
# only the final average can move.
# It ends level with the raw weights and above the warm-up's longer average: 84.88% and 85.52%
# held-out (mean 85.20%; raw 85.21%; round 11/13's average 84.89%), flip TTA 86.00% and 86.30%.
# Inside the noise, but the best 10-epoch setting so far: measured on the test split as
# `fast10ema99` (experiments/time_to_accuracy.sh).
declare -A CANDIDATES=(
  [base]="$BASE"
  [ema-alt-nodecay]="$EAN"
  [ean-cutout8]="$EAN --cutout 8"
  [ean-ls0]="${EAN/--label-smoothing 0.1/--label-smoothing 0}"
  [fast-bf16]="$EAN --amp bf16"
  [fast10-bf16]="$EAN --amp bf16 --epochs 10"
  [fast10-b64-bf16]="$EAN --amp bf16 --epochs 10 --batch-size 64 --lr 0.1 --ema-decay 0.9995"
  [fast10-cos1-bf16]="${EAN/--schedule onecycle/--schedule cosine --warmup-epochs 1} --amp bf16 --epochs 10"
  [fast10]="$EAN --epochs 10"
  [fast10-init]="$EAN --epochs 10 --zero-init-residual --stem-init whitening"
  [fast10-pad2]="$EAN --epochs 10 --crop-padding 2"
  [fast10-ls2]="${EAN/--label-smoothing 0.1/--label-smoothing 0.2} --epochs 10"
  [fast10-lr4]="${EAN/--lr 0.2/--lr 0.4} --epochs 10"
  [fast10-wd1]="${EAN/--weight-decay 5e-4/--weight-decay 1e-4} --epochs 10"
  [fast10-lr4-pad2]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2"
  [fast10-wd10]="${EAN/--weight-decay 5e-4/--weight-decay 1e-3} --epochs 10"
  [fast-lr4-pad2]="${EAN/--lr 0.2/--lr 0.4} --crop-padding 2"
  [fast10-lr4-pad2-s1]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2 --seed 1"
  [fast10-lr4-pad2-ema998]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2 --ema-decay 0.998"
  [fast10-lr4-pad2-ema998-s1]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2 --ema-decay 0.998 --seed 1"
  [fast10-lr4-pad2-ema99]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2 --ema-decay 0.99"
  [fast10-lr4-pad2-ema99-s1]="${EAN/--lr 0.2/--lr 0.4} --epochs 10 --crop-padding 2 --ema-decay 0.99 --seed 1"
)
declare -A LANES=(
  [a]="base ean-cutout8"
  [b]="ema-alt-nodecay ean-ls0"
  [c]="fast-bf16"
  [d]="fast10-bf16"
  [e]="fast10-b64-bf16"
  [f]="fast10-cos1-bf16"
  [g]="fast10"
  [h]="fast10-init"
  [i]="fast10-pad2"
  [j]="fast10-ls2"
  [k]="fast10-lr4"
  [l]="fast10-wd1"
  [m]="fast10-lr4-pad2"
  [n]="fast10-wd10"
  [o]="fast-lr4-pad2"
  [p]="fast10-lr4-pad2-s1"
  [q]="fast10-lr4-pad2-ema998"
  [r]="fast10-lr4-pad2-ema998-s1"
  [s]="fast10-lr4-pad2-ema99"
  [t]="fast10-lr4-pad2-ema99-s1"
)
for name in ${LANES[${LANE:-a}]}; do
  run="$OUT/$name"
  [ -f "$run/summary.json" ] && continue
  if [ -f "$run/last.pt" ]; then
    $CLI train --resume "$run" --threads 1 --no-progress
  else
    # shellcheck disable=SC2086
    $CLI train --model resnet20 --data "$DATA" --epochs 15 --seed 0 --val-split 5000 --tta flip \
      ${CANDIDATES[$name]} --threads 1 --no-progress --out "$run"
  fi
done
