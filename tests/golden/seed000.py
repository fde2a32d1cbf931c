"""The seed-000 regression: a few `medtl train` commands whose history.csv and metrics.json were
recorded with the trainer as it was before strategies had stages (commit c2d4bce), and must stay
bit-identical on the CPU.

Record (only when a change is *meant* to alter seed-000 numbers, and say so in the commit):
    python tests/golden/seed000.py record

The data is the brain MRI stand-in of medtl_lib.data.synthetic. When its GENERATOR_VERSION
changes, the numbers change with the images: record them again with c2d4bce's trainer on the new
images (its tree from `git archive c2d4bce` first on PYTHONPATH, the data written by the current
generator), then check that the current trainer matches them bit for bit. Done so for version 2.
"""
from __future__ import annotations

import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYNTH = dict(name="brain_tumor_mri", n_per_class=30, size=48, seed=0)
BASE = ["--dataset", "brain_tumor_mri", "--model", "test_resnet", "--weights", "none",
        "--img-size", "48", "--epochs", "5", "--batch-size", "8", "--num-workers", "0",
        "--seed", "3", "--threshold", "0.5", "--patience", "1", "--stop-patience", "3",
        "--no-progress"]
CASES = {
    "full_cached": [],
    "full_per_image": ["--pipeline", "per_image"],
    "linear_probe_features": ["--strategy", "linear_probe", "--no-augment", "--lr", "0.05"],
}
#: metrics.json keys that describe the machine or the wall clock, not the numbers
VOLATILE = {"seconds", "device", "torch", "input", "compute"}
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "phase", "c",
                   "s", "lr_factor", "save_best", "stop"]


def command(case: str, data: Path, out: Path) -> list[str]:
    return ["train", *BASE, "--data-dir", str(data), "--out", str(out), *CASES[case]]


def environment() -> dict:
    import torch

    return {"torch": torch.__version__, "machine": platform.machine()}


def record() -> None:
    from medtl_lib.cli import main
    from medtl_lib.data.synthetic import write_synthetic

    tmp = Path(tempfile.mkdtemp())
    try:
        data = write_synthetic(SYNTH["name"], tmp / "data", n_per_class=SYNTH["n_per_class"],
                               size=SYNTH["size"], seed=SYNTH["seed"])
        for case in CASES:
            out = tmp / case
            assert main(command(case, data, out)) == 0
            shutil.copy(out / "history.csv", HERE / f"seed000_{case}_history.csv")
            metrics = json.loads((out / "metrics.json").read_text())
            for k in VOLATILE:
                metrics.pop(k, None)
            (HERE / f"seed000_{case}_metrics.json").write_text(json.dumps(metrics, indent=1))
        (HERE / "seed000_environment.json").write_text(json.dumps(environment(), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:] == ["record"]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MEDTL_CACHE_DIR", tempfile.mkdtemp())
    record()
