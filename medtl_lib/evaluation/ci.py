"""95% confidence intervals recomputed from run folders (seed 004; every results table).

The intervals themselves (percentile bootstrap, Wilson, DeLong, paired differences) are pure
functions of labels and probabilities in :mod:`medtl_lib.intervals`, below training, since a run
records its own; this module holds what reads a run folder's test predictions.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import run_folder as rf
from ..intervals import ci95, confusion_ci95, paired_difference


def run_confusion_ci95(run_dir, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`confusion_ci95` of a run folder's test predictions (columns label, pred);
    {} for a run without usable predictions, whose intervals then stay empty."""
    try:
        k = len(rf.class_names(run_dir))
        frame = rf.read_predictions(run_dir, "test", usecols=["label", "pred"])
    except (OSError, ValueError, KeyError):
        return {}
    return confusion_ci95(frame["label"].to_numpy(), frame["pred"].to_numpy(), k, n_boot, seed)


def read_test_predictions(run_dir) -> tuple[np.ndarray, np.ndarray, list[str], pd.DataFrame]:
    """(labels, probabilities, class names, the frame) of a run folder's test predictions;
    a clear error when the run has not finished its evaluation."""
    path = rf.path(run_dir, rf.predictions_name("test"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the run has not finished its evaluation")
    classes = rf.class_names(Path(run_dir))
    frame = rf.read_predictions(run_dir, "test")
    return frame["label"].to_numpy(), frame[[f"prob_{c}" for c in classes]].to_numpy(), classes, frame


def run_ci(run_dir, n_boot: int = 2000, seed: int = 0) -> dict:
    """:func:`ci95` recomputed from a run folder's test predictions."""
    labels, probs, _, _ = read_test_predictions(run_dir)
    return ci95(labels, probs, n_boot, seed)


def run_paired_difference(run_a, run_b, metric: str = "auroc_macro", n_boot: int = 2000,
                          seed: int = 0) -> dict:
    """:func:`paired_difference` of two runs' test predictions, matched image by image;
    runs with different test images are refused (their difference would not be paired)."""
    (_, _, classes_a, a), (_, _, classes_b, b) = (read_test_predictions(r) for r in (run_a, run_b))
    cols_a, cols_b = ([f"prob_{c}" for c in cl] for cl in (classes_a, classes_b))
    if set(a["path"]) != set(b["path"]) or cols_a != cols_b:
        raise ValueError(f"{run_a} and {run_b} were tested on different images or classes; a "
                         "paired difference needs the same test split (same split seed and data)")
    b = b.set_index("path").loc[a["path"]]
    return paired_difference(a["label"].to_numpy(), a[cols_a].to_numpy(), b[cols_b].to_numpy(),
                             metric, n_boot, seed)
