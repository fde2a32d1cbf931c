"""The tables behind the results page, as files: for people who continue in pandas or a paper.

* ``results.csv``: one row per run folder of a profile, every test metric the run recorded
  (Table II's, weighted averages, balanced accuracy, AUROC, specificity) with each 95% interval
  of ``test.ci95`` as ``test_<metric>_ci_low`` / ``_ci_high``, plus the run's identity, split
  protocol and data (synthetic or not).
* ``table_ii.csv``: the paper's Table II layout (a row per dataset x model, in the paper's
  order, every row of the paper even where the profile ran no such model), with the paper's cell
  beside ours, the difference and our 95% interval for each metric.

Why files and not only the page: a table in HTML has to be retyped; a CSV is one
``pd.read_csv`` away. The CSVs hold fractions (0.9679), not percents, so nothing is rounded.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .. import run_folder as rf
from ..utils import atomic_write
from .report import (
    CI_BOUNDS,
    DEFAULT_STRATEGY,
    METRICS,
    SOURCES,
    STATUS_COMPLETE,
    collect_runs,
    dataset_name,
    table_ii,
    table_ii_intervals,
    with_identity,
)

RESULTS_CSV = "results.csv"
TABLE_II_CSV = "table_ii.csv"
# the runs' recorded test scalars copied into results.csv (besides Table II's own columns)
TEST_SCALARS: tuple[str, ...] = ("n", "accuracy", "precision_macro", "recall_macro", "f1_macro",
                                 "precision_weighted", "recall_weighted", "f1_weighted",
                                 "balanced_accuracy", "sensitivity_macro", "specificity_macro",
                                 "auroc_macro")


def _test_columns(run_dir: Path) -> dict[str, Any]:
    """Every test scalar and every ci95 entry of a run's recorded metrics, flat."""
    try:
        test = rf.read_metrics(run_dir).get("test") or {}
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {f"test_{k}": test.get(k) for k in TEST_SCALARS}
    for name, entry in (test.get("ci95") or {}).items():
        out[f"test_{name}_ci_value"] = entry.get("value")
        for b in CI_BOUNDS:
            out[f"test_{name}_ci_{b}"] = entry.get(b)
        out[f"test_{name}_ci_method"] = entry.get("method")
    return out


def results_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run (complete or not), every metric: what ``results.csv`` holds.

    ``run`` is the run folder's name (the file names no machine path of the runs); the Table II
    columns (train_acc ... f1, fractions) come first with their intervals, then every test
    scalar and interval the run recorded."""
    runs = with_identity(runs)
    rows = []
    for _, row in runs.iterrows():
        path = Path(row["path"])
        record = {"run": path.name, **row.drop(labels=["path"]).to_dict(),
                  "dataset_name": dataset_name(row["dataset"])}
        if row["status"] == STATUS_COMPLETE:
            record.update(_test_columns(path))
        rows.append(record)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run", *runs.columns.drop("path", errors="ignore")])
    first = ["run", "dataset", "dataset_name", "model", "model_label", "strategy", "seed",
             "status", "split", "group_by", "synthetic"]
    table = [c for m in METRICS for c in (m, f"{m}_ci_low", f"{m}_ci_high") if c in frame.columns]
    rest = [c for c in frame.columns if c not in first and c not in table]
    return frame[[c for c in first if c in frame.columns] + table + rest]


def table_ii_file(runs: pd.DataFrame, strategy: str = DEFAULT_STRATEGY) -> pd.DataFrame:
    """Table II as a flat frame: a row per (dataset, model), every row of the paper's table
    plus every model the profile ran; for each metric ``<metric>_ours``, ``_ours_ci_low``,
    ``_ours_ci_high``, ``_paper``, ``_diff`` (ours − paper), all fractions; ``n_runs`` says how
    many complete runs (seeds) the ours columns average."""
    runs = with_identity(runs)
    table = table_ii(runs, all_paper_rows=True, strategy=strategy)
    intervals = table_ii_intervals(runs, table, strategy=strategy)
    done = runs[(runs["strategy"] == strategy) & (runs["status"] == STATUS_COMPLETE)]
    counts = done.groupby(["dataset", "model_label"]).size()
    rows = []
    for key in table.index:
        dataset, model = key
        row: dict[str, Any] = {"dataset": dataset, "dataset_name": dataset_name(dataset),
                               "model": model, "n_runs": int(counts.get(key, 0))}
        for m in METRICS:
            for source in SOURCES:
                if source == "ours":
                    row[f"{m}_ours"] = table.loc[key, (m, "ours")]
                    for b in CI_BOUNDS:
                        col = (m, b)
                        row[f"{m}_ours_ci_{b}"] = (intervals.loc[key, col]
                                                   if col in intervals.columns else math.nan)
                else:
                    row[f"{m}_{source}"] = table.loc[key, (m, source)]
        rows.append(row)
    return pd.DataFrame(rows)


def write_results_files(profile_dir: str | Path, runs: pd.DataFrame | None = None
                        ) -> dict[str, Path]:
    """Write ``results.csv`` and ``table_ii.csv`` into the profile folder; returns their paths."""
    profile_dir = Path(profile_dir)
    runs = collect_runs(profile_dir) if runs is None else runs
    runs = with_identity(runs)
    frames = {RESULTS_CSV: results_table(runs), TABLE_II_CSV: table_ii_file(runs)}
    out = {}
    for name, frame in frames.items():
        out[name] = atomic_write(profile_dir / name,
                                 lambda p, f=frame: f.to_csv(p, index=False, float_format="%.6g"))
    return out
