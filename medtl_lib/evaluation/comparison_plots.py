"""Seed 001's comparison as pictures (notebook 08): every seed's score per strategy, and the
change against full fine-tuning as a heat map."""
from __future__ import annotations

import pandas as pd

from .comparison import SEED001_METRICS, change_vs_full
from .report import STATUS_COMPLETE, dataset_name, strategy_order, with_identity


def plot_seed_scores(runs: pd.DataFrame, metric: str = "recall", ncols: int = 3):
    """One panel per (dataset, model): a dot per seed and the mean as a bar, per strategy, so
    the spread over seeds is seen before any difference between strategies is believed."""
    import matplotlib.pyplot as plt

    done = with_identity(runs[runs["status"] == STATUS_COMPLETE])
    cells = list(dict.fromkeys(zip(done["dataset"], done["model_label"])))
    if not cells:
        raise ValueError("no complete run to plot")
    order = strategy_order(done["strategy"].unique())
    ncols = min(ncols, len(cells))
    nrows = -(-len(cells) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharex=False,
                             figsize=(4.6 * ncols, 0.42 * len(order) * nrows + 1.2 * nrows))
    for ax, (ds, model) in zip(axes.flat, cells):
        sub = done[(done["dataset"] == ds) & (done["model_label"] == model)]
        for y, strategy in enumerate(order):
            vals = sub.loc[sub["strategy"] == strategy, metric].dropna() * 100
            if vals.empty:
                continue
            ax.barh(y, vals.mean(), color="#9ecae1" if strategy != "full" else "#fd8d3c",
                    height=0.6)
            ax.plot(vals, [y] * len(vals), "o", color="black", ms=3.5)
            ax.text(vals.mean(), y, f" {vals.mean():.1f}", va="center", fontsize=8)
        ax.set_yticks(range(len(order)), order)
        ax.invert_yaxis()
        low = (sub[metric].min() * 100) if sub[metric].notna().any() else 0
        ax.set_xlim(max(0, low - 10), 100)
        ax.set_title(f"{dataset_name(ds)} · {model}", fontsize=10)
        ax.set_xlabel(f"test {SEED001_METRICS.get(metric, metric)} (%)")
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_change_heatmap(runs: pd.DataFrame, metric: str = "recall", ax=None):
    """Strategy (rows) x cell (columns): (strategy - full) / full in percent, red below full,
    blue above, centred on 0."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    change = change_vs_full(runs, metric)
    change.columns = [f"{dataset_name(d)}\n{m}" for d, m in change.columns]
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2 + 1.4 * change.shape[1], 0.45 * len(change) + 1.4))
    bound = max(1.0, float(change.abs().max().max())) if change.notna().any().any() else 1.0
    sns.heatmap(change, ax=ax, cmap="RdBu", center=0, vmin=-bound, vmax=bound, annot=True,
                fmt="+.1f", cbar_kws={"label": "% change against full fine-tuning"})
    ax.set_title(f"Test {SEED001_METRICS.get(metric, metric)}:\nchange against full "
                 "fine-tuning (%)")
    ax.set_ylabel("")
    return ax
