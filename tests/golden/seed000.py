"""The seed-000 regression: a few `medtl train` commands whose history.csv and metrics.json were
recorded with the trainer as it was before strategies had stages (commit c2d4bce), and must stay
bit-identical on the CPU.

Bit-identical holds only for one torch build on one kind of CPU: the kernels torch and oneDNN
pick differ with the instruction set (AVX-512 against AVX2) and round differently, and five
epochs of training carry that far above any tolerance. So the numbers are recorded with the
`environment()` they came from; elsewhere the test checks what survives a change of kernels.

Record with c2d4bce's trainer, never with the current one (else a drift would be recorded as the
truth), and then check that the current trainer matches it bit for bit:
    git archive c2d4bce | tar -x -C OLD_TREE
    python tests/golden/seed000.py record --trainer-tree OLD_TREE
The data is always written by the current medtl_lib.data.synthetic: when its GENERATOR_VERSION
changes, the images and so the numbers change. Recorded so for generator version 2, and again on
an AVX2 machine when CI moved to one.
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
    """What decides the CPU kernels, and so whether the numbers can be bit-identical."""
    import torch

    return {"torch": torch.__version__, "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


_RUN_IN_TREE = """import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import medtl_lib
where = Path(medtl_lib.__file__).resolve()
assert where.is_relative_to(Path(sys.argv[1]).resolve()), f"imported {where}, not the old tree"
from medtl_lib.cli import main
sys.exit(main(sys.argv[2:]))
"""


def record(trainer_tree: Path) -> None:
    """Run every case with the trainer of `trainer_tree` (a source tree holding medtl_lib) on data
    written by the current generator, and store its numbers with this machine's environment."""
    import subprocess

    from medtl_lib.data.synthetic import write_synthetic

    tmp = Path(tempfile.mkdtemp())
    try:
        data = write_synthetic(SYNTH["name"], tmp / "data", n_per_class=SYNTH["n_per_class"],
                               size=SYNTH["size"], seed=SYNTH["seed"])
        for case in CASES:
            out = tmp / case
            subprocess.run([sys.executable, "-c", _RUN_IN_TREE, str(trainer_tree),
                            *command(case, data, out)], check=True)
            shutil.copy(out / "history.csv", HERE / f"seed000_{case}_history.csv")
            metrics = json.loads((out / "metrics.json").read_text())
            for k in VOLATILE:
                metrics.pop(k, None)
            (HERE / f"seed000_{case}_metrics.json").write_text(json.dumps(metrics, indent=1))
        (HERE / "seed000_environment.json").write_text(json.dumps(environment(), indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Record the seed-000 golden numbers.")
    parser.add_argument("action", choices=["record"])
    parser.add_argument("--trainer-tree", type=Path, required=True,
                        help="a source tree of commit c2d4bce "
                             "(git archive c2d4bce | tar -x -C DIR)")
    args = parser.parse_args()
    if not (args.trainer_tree / "medtl_lib" / "cli.py").is_file():
        parser.error(f"{args.trainer_tree} holds no medtl_lib/cli.py: unpack c2d4bce there first")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MEDTL_CACHE_DIR", tempfile.mkdtemp())
    record(args.trainer_tree)
