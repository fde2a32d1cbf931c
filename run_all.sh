#!/usr/bin/env bash
# The main job. Today (core kit): the embedded smoke run, offline and CPU-only: a synthetic
# brain-MRI stand-in, EfficientNet-Lite0 with its offline ImageNet weights, 2 epochs at 64 px.
# The notebook course and the full paper profile come with the notebooks issue.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh "notebooks,offline"
data="data/synthetic/brain_tumor_mri"
if [ ! -d "$data" ]; then
  medtl data synth brain_tumor_mri --out "$data" --n-per-class 40 --size 64 --seed 0
fi
medtl train --dataset brain_tumor_mri --data-dir "$data" --model efficientnet_lite0 \
  --img-size 64 --epochs 2 --batch-size 32 --out runs/smoke/brain_tumor_mri__efficientnet_lite0 "$@"
