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


def claims_table(c: dict) -> pd.DataFrame:
    """The abstract's claims next to what :func:`claims` found, one row each, with a verdict
    that says only what these runs can say (few cells or one seed decide little)."""
    rows = []
    cells = c.get("cells", 0)
    if "lp_ft_share" in c and c["lp_ft_share"] is not None:
        share = c["lp_ft_share"]
        rows.append(("LP-FT beats full fine-tuning in over 50% of the cases",
                     f"{c['lp_ft_beats_full']} of {c['lp_ft_cells']} cell(s) ({share:.0%})",
                     "holds here" if share > 0.5 else "does not hold here"))
    if "auto_rgn_max_gain_pct" in c:
        gain = c["auto_rgn_max_gain_pct"]
        rows.append(("Auto-RGN gains up to 11% on some modalities",
                     f"largest change {gain:+.2f}% ({c['auto_rgn_max_gain_cell']})",
                     "a gain here" if gain > 0 else "no gain here"))
    if "linear_probe_below_full" in c:
        below = c["linear_probe_below_full"]
        rows.append(("linear probing is often weak",
                     f"below full fine-tuning in {below} of {cells} cell(s)",
                     "holds here" if cells and below / cells > 0.5 else "does not hold here"))
    by_model = c.get("share_of_alternatives_beating_full_by_model", {})
    if len(by_model) > 1:
        top = max(by_model, key=by_model.get)
        rows.append(("DenseNet profits most from alternatives to full fine-tuning",
                     "; ".join(f"{m}: {v:.0%} of alternatives beat full"
                               for m, v in by_model.items()),
                     "holds here" if "densenet" in top.lower() else f"{top} profits most here"))
    if "distinct_best" in c:
        n = c["distinct_best"]
        rows.append(("no single strategy is best everywhere",
                     f"{n} different best strateg{'y' if n == 1 else 'ies'} over {cells} cell(s)",
                     "cannot tell from one cell" if cells < 2 else
                     ("holds here" if n > 1 else "does not hold here")))
    return pd.DataFrame(rows, columns=["claim (seed 001 abstract)", f"these runs ({c['metric']})",
                                       "verdict"])
