"""Gradual unfreezing against early stopping, measured (issue 27, item 1), on the CPU in minutes.

Trains ``gradual_lf`` and ``gradual_fl`` through ``medtl train`` with ``--early-stop-patience 1``
(a patience short enough that early stopping would fire at the first epoch without a better
validation accuracy) and prints, per run, which blocks trained in each epoch, where a stop was
held (``stop_held``) and where the run ended. Before the hold, a run ended at its first held
epoch: the script names that epoch and the blocks that had trained by then, so one run shows
both behaviours.

    python scripts/check_gradual_hold.py [--epochs 10] [--img-size 64] [--weights auto|none]
                                         [--data-dir DIR]   # default: the synthetic stand-in
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--weights", default="auto")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--data-dir", default=None, help="a brain_tumor_mri folder (Training/, "
                   "Testing/); default: the kit's synthetic stand-in, written to a temp folder")
    args = p.parse_args(argv)

    from medtl_lib.cli import main as medtl
    from medtl_lib.data.synthetic import write_synthetic

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data_dir
        if data is None:
            data = str(Path(tmp) / "brain_tumor_mri")
            write_synthetic("brain_tumor_mri", data, n_per_class=24, size=args.img_size)
        for strategy in ("gradual_lf", "gradual_fl"):
            out = Path(tmp) / strategy
            rc = medtl(["train", "--dataset", "brain_tumor_mri", "--data-dir", data,
                        "--model", args.model, "--weights", args.weights,
                        "--img-size", str(args.img_size), "--epochs", str(args.epochs),
                        "--batch-size", "16", "--split", "predefined", "--optimizer", "adam",
                        "--schedule", "none", "--select-by", "val_acc",
                        "--early-stop-patience", "1", "--strategy", strategy,
                        "--out", str(out), "--no-progress"])
            if rc not in (0, None):
                return int(rc)
            h = pd.read_csv(out / "history.csv")
            every = set(h["trainable_blocks"].iloc[-1].split("+"))
            print(f"\n{strategy}: {args.model} ({args.weights} weights), {args.img_size} px, "
                  f"{args.epochs} epochs, early_stop_patience 1")
            print(h[["epoch", "val_acc", "save_best", "stop_held", "stop",
                     "trainable_blocks"]].to_string(index=False))
            all_open = h.index[h["trainable_blocks"].map(lambda b: set(b.split("+")) == every)]
            held = h.index[h["stop_held"]]
            print(f"-> ended after epoch {len(h)}; every block ({len(every) - 1} + head) trained "
                  f"from epoch {h['epoch'][all_open[0]]}" if len(all_open) else "-> never all")
            if len(held):
                first = held[0]
                print(f"-> without the hold it would have ended after epoch {h['epoch'][first]}, "
                      f"with {h['trainable_blocks'][first]} trained")
            else:
                print("-> no stop was held (validation accuracy kept improving)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
