#!/usr/bin/env bash
# Part 2 at equal cost (docs/results.md, "Part 2"): the regulated networks' second seeds and the
# deeper ResNets that match their multiply-adds, every run under `--recipe fast`, 15 epochs,
# full training split, one thread, through part2_fast.sh (which resumes or skips what exists).
# Two lanes, each a list of model:seed in the order the plan gives:
#
#   LANE=a bash experiments/part2_cost.sh &
#   LANE=b bash experiments/part2_cost.sh &
#
# Rerunning the same two commands resumes both lanes. CLI may point at a frozen install.
# resnet56 comes first: the cost neighbour of both gated models, and a lane's first run is the
# one most sure to finish before a session ends.
#
# A run directory may not outlive the machine, so each finished run is folded at once into the
# saved rows (docs/part2-cost/comparison.csv, first made from docs/part2-fast/comparison.csv),
# and those rows are committed:
#
#   resnet-cifar compare docs/part2-cost/comparison.csv runs/part2-fast/resnet56-s0 \
#     --cost macs --baseline resnet20 --out-dir docs/part2-cost
#
# Once every run is in, the verdict's tables and figure (docs/results.md, "At equal cost"):
#
#   resnet-cifar compare docs/part2-cost/comparison.csv --cost macs \
#     --baseline resnet20,regnet20_convrnn=resnet44,regnet20_convgru=resnet56 \
#     --baseline regnet20_convgru=resnet110,regnet20_convlstm=resnet56 \
#     --baseline regnet20_convlstm=resnet110 --out-dir docs/part2-cost
set -euo pipefail
here=$(dirname "$0")
case "${LANE:?set LANE=a or LANE=b}" in
  a) runs="resnet56:0 regnet20_convgru:1 resnet110:0 resnet44:0 regnet20_convrnn:1" ;;
  b) runs="resnet56:1 regnet20_convlstm:1 resnet110:1 resnet44:1 resnet20_convgru:1" ;;
  *) echo "error: LANE=$LANE: use a or b" >&2; exit 2 ;;
esac
for run in $runs; do
  MODELS=${run%:*} SEEDS=${run#*:} bash "$here/part2_fast.sh"
done
