"""Notebook 06's result as a table and a file, so the results page (notebook 05) can show it.

One row per split of the same model: the image-level split (the paper's) and the
duplicate-grouped one (the kit's default), each with its test accuracy, 95% interval, macro F1
and how many of its test images have a copy in train or val. ``leakage.csv`` in 06's output
folder keeps it; 05 reads it back instead of training again.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import pandas as pd

from .. import run_folder as rf
from ..data.prepare import leaked_test_images
from ..utils import atomic_write
from .report import is_synthetic_data, run_data_root, split_protocol

LEAKAGE_CSV = "leakage.csv"
COLUMNS: tuple[str, ...] = ("split", "group_by", "test_acc", "test_acc_ci_low",
                            "test_acc_ci_high", "f1", "test_images", "leaked_test_images",
                            "leaked_share", "synthetic", "run")


def leakage_row(run_dir: str | Path, group_by: str, leaked: int) -> dict:
    """One split's row from its run folder (metrics, split) and the leak count."""
    run_dir = Path(run_dir)
    metrics = rf.read_metrics(run_dir)
    test = metrics.get("test") or {}
    ci = (test.get("ci95") or {}).get("accuracy") or {}
    split = rf.read_split(run_dir)
    n_test = int((split["split"] == "test").sum())
    return {"split": split_protocol(group_by), "group_by": group_by,
            "test_acc": float(test["accuracy"]),
            "test_acc_ci_low": float(ci.get("low", math.nan)),
            "test_acc_ci_high": float(ci.get("high", math.nan)),
            "f1": float(test.get("f1_macro", math.nan)), "test_images": n_test,
            "leaked_test_images": int(leaked),
            "leaked_share": leaked / n_test if n_test else math.nan,
            "synthetic": is_synthetic_data(run_data_root(run_dir)), "run": run_dir.name}


def leakage_table(runs: Mapping[str, str | Path], duplicates: pd.DataFrame) -> pd.DataFrame:
    """A row per split, indexed by its label; ``runs`` maps group_by ('none', 'duplicates')
    to the run folder, ``duplicates`` is the audit's (group, path) frame."""
    rows = []
    for group_by, run_dir in runs.items():
        split = rf.read_split(run_dir)
        rows.append(leakage_row(run_dir, group_by, leaked_test_images(split, duplicates)))
    return pd.DataFrame(rows, columns=list(COLUMNS)).set_index("split")


def write_leakage_table(table: pd.DataFrame, out_dir: str | Path) -> Path:
    return atomic_write(Path(out_dir) / LEAKAGE_CSV,
                        lambda p: table.to_csv(p, float_format="%.6g"))


def read_leakage_table(out_dir: str | Path) -> pd.DataFrame | None:
    """The table 06 wrote into ``out_dir``, or None when 06 has not run there."""
    path = Path(out_dir) / LEAKAGE_CSV
    if not path.is_file():
        return None
    return pd.read_csv(path).set_index("split")


def leakage_markdown(table: pd.DataFrame) -> str:
    """The table as markdown for a notebook or the results page (accuracy with its interval)."""
    lines = ["| split | test accuracy [95% interval] | test macro F1 | test images | "
             "test images with a copy in train/val |", "|---|---|---|---|---|"]
    for label, r in table.iterrows():
        interval = ("" if pd.isna(r["test_acc_ci_low"]) else
                    f" [{r['test_acc_ci_low']:.3f}, {r['test_acc_ci_high']:.3f}]")
        share = "" if pd.isna(r["leaked_share"]) else f" ({r['leaked_share']:.0%})"
        lines.append(f"| {label} | {r['test_acc']:.3f}{interval} | {r['f1']:.3f} | "
                     f"{int(r['test_images'])} | {int(r['leaked_test_images'])}{share} |")
    return "\n".join(lines) + "\n"


def leakage_alt(table: pd.DataFrame) -> str:
    """Alt text for :func:`medtl_lib.evaluation.plots.plot_leakage`: the numbers the bars show,
    so a reader who cannot see the chart loses nothing."""
    parts = []
    for label, r in table.iterrows():
        interval = ("" if pd.isna(r.get("test_acc_ci_low")) else
                    f" (95% interval {r['test_acc_ci_low']:.3f} to {r['test_acc_ci_high']:.3f})")
        parts.append(f"{r['test_acc']:.3f}{interval} on the {label}")
    return ("Bar chart of test accuracy by split, axis from 0 to 100%: " + "; ".join(parts) + ".")
