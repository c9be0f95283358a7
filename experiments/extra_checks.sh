#!/usr/bin/env bash
# Two real-data checks on the JPEG copy, each against a baseline run of the same recipe:
#  1. data-parallel: 1 process (batch 64) vs 2 processes under torchrun (32 per rank = 64 global),
#     one epoch on a stratified 8,000-image subset, test accuracy of the final weights;
#  2. speed options: the 3-epoch Part-2 ResNet-20 recipe (experiments/part2_comparison.sh) with
#     --channels-last --compile, seeds 0 and 1, to compare with runs/part2/resnet20-s{0,1}
#     (written to runs/speed-options/, away from the Part-2 runs that `compare` globs).
set -euo pipefail
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PY=${PY:-python}
COMMON=(--model resnet20 --data "$DATA" --epochs 1 --train-subset 8000 --threads 1 --seed 0 --overwrite)
$PY -m resnet_cifar train "${COMMON[@]}" --batch-size 64 --out runs/ddp/one-process
$PY -m torch.distributed.run --standalone --nproc_per_node=2 -m resnet_cifar train "${COMMON[@]}" \
  --batch-size 32 --out runs/ddp/two-processes
for seed in 0 1; do
  $PY -m resnet_cifar train --model resnet20 --data "$DATA" --seed "$seed" --epochs 3 \
    --milestones 2 --train-subset 4000 --val-split 1000 --threads 1 --channels-last --compile \
    --out "runs/speed-options/resnet20-s$seed" --overwrite
done
