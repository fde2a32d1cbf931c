"""The smoke profile through each launcher, one after another, and its results table compared:
issue 15's check that where runs execute does not change what they compute.

    HF_HUB_OFFLINE=1 python scripts/bench_launchers.py [--out DIR] [--launchers inline,local,submitit-local]

Each launcher writes DIR/<launcher>/smoke (stand-ins shared in DIR/data); prints the wall time of
each and whether every metric column of results.csv equals the plain runner's.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from medtl_lib import orchestration as profiles  # noqa: E402

COLUMNS = ["run", "status", "train_acc", "val_acc", "test_acc", "precision", "recall", "f1",
           "test_auroc_macro", "epochs_run", "best_epoch"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/medtl_bench_launchers")
    ap.add_argument("--launchers", default="inline,local,submitit-local")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    out = Path(args.out)
    tables = {}
    for launcher in args.launchers.split(","):
        p = profiles.load_profile("smoke", runs_dir=out / launcher, data_root=out / "data")
        t0 = time.perf_counter()
        steps = profiles.run_profile(p, log=lambda *a: None, launcher=launcher, jobs=args.jobs,
                                     export_html=False)
        failed = [s.name for s in steps if s.status == "failed"]
        frame = pd.read_csv(p.out_root / "results.csv")[COLUMNS].sort_values("run")
        tables[launcher] = frame.reset_index(drop=True)
        print(f"{launcher}: {time.perf_counter() - t0:.0f} s, {len(frame)} runs, failed {failed}")
    first = next(iter(tables))
    for name, frame in tables.items():
        if name != first:
            same = frame.equals(tables[first])
            print(f"{name} results.csv == {first}'s: {same}")
    print(tables[first].to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
