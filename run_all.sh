#!/usr/bin/env bash
# The main job: run a profile of the course through papermill.
#   bash run_all.sh                  the embedded default: 'smoke' (offline, CPU, minutes)
#   bash run_all.sh paper            seed 000's full reproduction (real data, GPU recommended)
#   bash run_all.sh FILE.yaml        your own matrix (see profiles/*.yaml)
#   ... --only 'brain*'              only runs whose <dataset>__<model> matches
#   ... --dry-run                    print the plan and what would be skipped
#   ... --launcher local --jobs 4    4 runs side by side (one GPU each); --launcher slurm
#                                    --slurm-partition P: a SLURM job per run (submitit)
# Finished runs are skipped, interrupted ones resume, failures are reported and the rest goes
# on; the exit code is non-zero when anything failed. Results: runs/<profile>/results.html
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh "notebooks,offline"
exec medtl run "$@"
