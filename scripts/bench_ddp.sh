#!/usr/bin/env bash
# One run with one process and the same run with two gloo processes on this CPU (issue 15's check):
# test metrics side by side, world_size as recorded, and the wall time of each.
#   bash scripts/bench_ddp.sh DATA_DIR [OUT_DIR] [extra medtl train arguments]
# DATA_DIR holds brain_tumor_mri (Kaggle layout). Defaults: EfficientNet-Lite0 (offline ImageNet
# weights), 128 px, 3 epochs, Adam 1e-4, the Testing folder as test set.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh offline
data=${1:?usage: bash scripts/bench_ddp.sh DATA_DIR [OUT_DIR] [medtl train args]}
out=${2:-runs/bench_ddp}
shift $(( $# > 1 ? 2 : 1 ))
args=(--dataset brain_tumor_mri --data-dir "$data/brain_tumor_mri" --model efficientnet_lite0
      --img-size 128 --epochs 3 --batch-size 64 --optimizer adam --lr 1e-4 --schedule none
      --select-by val_loss --split predefined --seed 1 --no-progress "$@")
for n in 1 2; do
  start=$(date +%s)
  HF_HUB_OFFLINE=1 python -m medtl_lib train "${args[@]}" --out "$out/nproc$n" --nproc "$n" > "$out.nproc$n.log" 2>&1 || { tail -20 "$out.nproc$n.log"; exit 1; }
  echo "nproc $n: $(( $(date +%s) - start )) s wall"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
for n in (1, 2):
    m = json.loads((Path(sys.argv[1]) / f"nproc{n}" / "metrics.json").read_text())
    t = m["test"]
    print(f"nproc {n}: world_size {m['world_size']}, test accuracy {t['accuracy']:.4f}, macro F1 "
          f"{t['f1_macro']:.4f}, AUROC {t['auroc_macro']:.4f}, best epoch {m['best_epoch']}, "
          f"{m['seconds']:.0f} s")
PY
