"""How long the `medtl` command takes to answer a mistake (issue: under 2 s for a typo in
--dataset or --model). A benchmark, not a test: run it on an idle machine.

    python scripts/bench_typos.py [--repeats 5]

Prints one JSON object: the median wall time in seconds per mistake, and the exit codes.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

MISTAKES = {
    "dataset typo": ["train", "--dataset", "brain_tumor_mrii", "--model", "resnet"],
    "model typo": ["train", "--dataset", "brain_tumor_mri", "--model", "resnett"],
    "strategy typo": ["train", "--dataset", "brain_tumor_mri", "--model", "resnet",
                      "--strategy", "lp-ft"],
    "profile typo": ["run", "smok"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for what, argv in MISTAKES.items():
            argv = argv + (["--out", f"{tmp}/run"] if argv[0] == "train" else [])
            times, codes = [], set()
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-m", "medtl_lib", *argv],
                                   capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                codes.add(r.returncode)
            out[what] = {"median_s": round(statistics.median(times), 3),
                         "max_s": round(max(times), 3), "exit_codes": sorted(codes),
                         "message": r.stderr.strip().splitlines()[-1][:120]}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
