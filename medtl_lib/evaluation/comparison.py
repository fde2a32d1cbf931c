"""Seed 001's comparison: every strategy against full fine-tuning, cell by cell, and the
abstract's claims checked on the kit's own runs.

A *cell* is one (dataset, model) pair, as in the abstract's "evaluated cases" (6 datasets x 3
CNNs = 18 there). Metrics are on the test split, averaged over seeds: ``recall`` is the macro
recall, which is the macro (balanced) accuracy that seed 001's protocol reports, and ``f1`` the
macro F1. Changes are relative, in percent of full fine-tuning's value, as the abstract's "up to
11%" reads.
"""
from __future__ import annotations

import pandas as pd

from .report import strategy_table

#: seed 001's two test metrics in collect_runs' column names, with the names a reader expects
SEED001_METRICS = {"recall": "macro accuracy", "f1": "macro F1"}


def comparison_table(runs: pd.DataFrame, metric: str = "recall") -> pd.DataFrame:
    """Mean over seeds, rows = strategy, columns = (dataset, model): the paper's main table."""
    table = strategy_table(runs, tuple(SEED001_METRICS))
    mean = table[(metric, "mean")].unstack(["dataset", "model"])
    return mean.reindex(table.index.get_level_values("strategy").unique())


def spread_table(runs: pd.DataFrame, metric: str = "recall") -> pd.DataFrame:
    """Sample standard deviation over seeds, laid out as :func:`comparison_table`."""
    table = strategy_table(runs, tuple(SEED001_METRICS))
    sd = table[(metric, "sd")].unstack(["dataset", "model"])
    return sd.reindex(table.index.get_level_values("strategy").unique())


def change_vs_full(runs: pd.DataFrame, metric: str = "recall") -> pd.DataFrame:
    """(strategy - full) / full x 100 per cell, full's own row dropped; NaN where a cell has no
    complete full run."""
    mean = comparison_table(runs, metric)
    if "full" not in mean.index:
        raise ValueError("no 'full' runs: the comparison is against full fine-tuning")
    full = mean.loc["full"]
    return ((mean - full) / full * 100).drop(index="full")


def claims(runs: pd.DataFrame, metric: str = "recall") -> dict:
    """The abstract's claims as numbers from these runs (None where the runs cannot say)."""
    change = change_vs_full(runs, metric)
    mean = comparison_table(runs, metric)
    cells = [c for c in mean.columns if pd.notna(mean.loc["full", c])]
    out: dict = {"metric": SEED001_METRICS.get(metric, metric), "cells": len(cells)}
    if "lp_ft" in change.index:
        d = change.loc["lp_ft", cells].dropna()
        out["lp_ft_beats_full"] = int((d > 0).sum())
        out["lp_ft_cells"] = int(d.size)
        out["lp_ft_share"] = float((d > 0).mean()) if d.size else None  # paper: > 0.5
    if "auto_rgn" in change.index:
        d = change.loc["auto_rgn", cells].dropna()
        if d.size:
            where = d.idxmax()
            out["auto_rgn_max_gain_pct"] = float(d.max())  # paper: up to about 11
            out["auto_rgn_max_gain_cell"] = " / ".join(map(str, where))
    if "linear_probe" in change.index:
        d = change.loc["linear_probe", cells].dropna()
        out["linear_probe_below_full"] = int((d < 0).sum())  # paper: "often weak"
    best = mean[cells].idxmax()
    out["best_strategy_per_cell"] = {" / ".join(map(str, c)): s for c, s in best.items()}
    out["distinct_best"] = int(best.nunique())  # paper: no single method is best everywhere
    by_model = change[cells].T.groupby(level="model").apply(lambda f: (f > 0).to_numpy().mean())
    out["share_of_alternatives_beating_full_by_model"] = {m: float(v)
                                                          for m, v in by_model.items()}
    return out
