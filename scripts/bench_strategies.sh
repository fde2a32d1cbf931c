#!/usr/bin/env bash
# lp_ft against linear_probe and full: EfficientNet-Lite0 (offline ImageNet weights) at 128 px,
# the same epoch budget for all three (lp_ft: 1 probe epoch + 2 fine-tuning epochs at 0.1 x LR),
# seeds 42, 1, 2; then the loop bench. Finished runs are not repeated.
# Usage: bash scripts/bench_strategies.sh PATH/TO/brain_tumor_mri [RUNS_DIR]
set -euo pipefail
DATA="${1:?usage: bash scripts/bench_strategies.sh PATH/TO/brain_tumor_mri [RUNS_DIR]}"
RUNS="${2:-runs/bench_strategies}"
cd "$(dirname "$0")/.."
. scripts/venv.sh test
EPOCHS="${EPOCHS:-3}"
for seed in 42 1 2; do
  for strategy in full linear_probe lp_ft; do
    medtl train --dataset brain_tumor_mri --data-dir "$DATA" --model efficientnet_lite0 \
      --img-size 128 --epochs "$EPOCHS" --seed "$seed" --strategy "$strategy" \
      --out "$RUNS/${strategy}__s${seed}" --no-progress
  done
done
python - "$RUNS" <<'PY'
import json, statistics, sys
from pathlib import Path
rows = {}
for m in sorted(Path(sys.argv[1]).glob("*/metrics.json")):
    d = json.loads(m.read_text())
    rows.setdefault(d["strategy"], []).append((d["test"]["accuracy"], d["test"]["f1_macro"], d["seconds"]))
for s, v in rows.items():
    acc = [a for a, _, _ in v]; f1 = [f for _, f, _ in v]
    sd = lambda x: statistics.stdev(x) if len(x) > 1 else float("nan")
    print(f"{s:<13} n={len(v)} acc {statistics.mean(acc):.4f} ± {sd(acc):.4f}  "
          f"macro-F1 {statistics.mean(f1):.4f} ± {sd(f1):.4f}  runs {[round(a, 4) for a in acc]}  "
          f"seconds {[round(t) for _, _, t in v]}")
PY
medtl bench train --dataset brain_tumor_mri --data-dir "$DATA" --model efficientnet_lite0 --img-size 128
