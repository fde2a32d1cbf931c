"""Pictures of seed 001's fine-tuning strategies for notebook 07: what trains when, where
Auto-RGN puts its learning rate, and how far each strategy moves the pretrained weights.

Everything here either runs a strategy's own hooks on a model (no data, no training: the plan is
the code's, not a description of it) or reads what a finished run wrote (its history and
theta*), so the pictures cannot drift from what the trainer does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models.groups import parameter_groups
from ..training.strategies import get_strategy


def trainable_grid(model: nn.Module, strategy: str, epochs: int,
                   args: Mapping | None = None) -> pd.DataFrame:
    """Share of each block's parameters that receive gradients in each epoch of ``strategy``.

    Rows are the blocks of :func:`~medtl_lib.models.groups.parameter_groups` (stem first, head
    last), columns the run's epochs labelled ``<stage> <epoch>``. The strategy's
    ``on_epoch_start`` sets ``requires_grad`` exactly as in training; the model's flags are put
    back afterwards.
    """
    strat = get_strategy(strategy, dict(args or {}))
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    was_training = model.training
    groups = parameter_groups(model)
    params = dict(model.named_parameters())
    sizes = {g: sum(params[n].numel() for n in names) for g, names in groups}
    columns: dict[str, list[float]] = {}
    try:
        stages = strat.stages(epochs)
        for stage in stages:
            for e in range(stage.epochs):
                strat.on_epoch_start(model, stage, e)
                label = f"{stage.name} {e + 1}" if len(stages) > 1 else str(len(columns) + 1)
                columns[label] = [sum(params[n].numel() for n in names if params[n].requires_grad)
                                  / sizes[g] for g, names in groups]
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(before[n])
        model.train(was_training)
    return pd.DataFrame(columns, index=[g for g, _ in groups])


def plot_trainable_grids(grids: Mapping[str, pd.DataFrame], ncols: int = 4):
    """One small panel per strategy: blocks (rows) x epochs (columns), dark = trains."""
    import matplotlib.pyplot as plt

    names = list(grids)
    nrows = -(-len(names) // ncols)
    first = grids[names[0]]
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True,
                             figsize=(3.2 * ncols, 0.28 * len(first) * nrows + 1.2 * nrows))
    image = None
    for ax, name in zip(axes.flat, names):
        g = grids[name]
        image = ax.imshow(g.to_numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1,
                          interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_yticks(range(len(g)), g.index, fontsize=8)
        step = max(1, len(g.columns) // 6)
        ticks = list(range(0, len(g.columns), step))
        ax.set_xticks(ticks, [str(c).replace(" ", "\n") for c in g.columns[ticks]], fontsize=7)
        ax.set_xticks(np.arange(-0.5, len(g.columns)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(g)), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5)
        ax.tick_params(which="minor", length=0)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.supxlabel("epoch")
    fig.colorbar(image, ax=axes, shrink=0.6, label="share of the block's parameters that train")
    return fig


def rgn_weights(history: pd.DataFrame) -> pd.DataFrame:
    """Auto-RGN's mean weight per block (rows) and epoch (columns) from a run history's
    ``rgn_groups`` column (``"stem=0.31 stage1=0.8 ..."``)."""
    if "rgn_groups" not in history:
        raise ValueError("this history has no 'rgn_groups' column: it is not an auto_rgn run")
    cols = {}
    for epoch, text in zip(history["epoch"], history["rgn_groups"]):
        if isinstance(text, str) and text.strip():
            cols[int(epoch)] = {k: float(v) for k, v in (kv.split("=") for kv in text.split())}
    return pd.DataFrame(cols)


def plot_rgn_heatmap(weights: pd.DataFrame, ax=None, title: str = "Auto-RGN weight per block"):
    """Blocks x epochs, each cell the mean LR multiplier of the block's tensors (max 1)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(3.0 + 0.6 * weights.shape[1], 0.35 * len(weights) + 1))
    sns.heatmap(weights, ax=ax, cmap="magma", vmin=0, vmax=1, annot=weights.shape[1] <= 12,
                fmt=".2f", cbar_kws={"label": "LR multiplier (mean over the block's tensors)"})
    ax.set_xlabel("epoch")
    ax.set_ylabel("")
    ax.set_title(title)
    return ax


def weight_movement(run_dir: str | Path, weights: str | None = None) -> pd.DataFrame:
    """How far training moved each backbone block from its pretrained weights.

    Columns: ``distance`` ||theta* - theta^0|| and ``relative`` (the same over ||theta^0||), one
    row per block. theta* is the run's trained model; theta^0 the same architecture built again with
    the run's pretrained weights (``weights``: default the run's own ``weights`` setting). The
    head is left out: it starts random, so it has no pretrained weights to move away from. The
    root of the summed squared distances is the ``sp_distance`` that L2-SP / L1-SP runs log.
    """
    from .. import run_folder as rf
    from ..models.factory import build_model, load_run_model

    run = Path(run_dir)
    tuned, spec, _ = load_run_model(run)
    if weights is None:
        weights = rf.read_config(run).get("weights", "auto")
    if weights == "none":
        raise ValueError(f"{run} trained from random weights (weights: none): there is no "
                         "pretrained theta^0 to measure the movement from")
    with torch.random.fork_rng(devices=[]):
        start, _ = build_model(spec, weights=weights)
    after = dict(tuned.named_parameters())
    before = dict(start.named_parameters())
    rows = {}
    for g, names in parameter_groups(tuned):
        if g == "head":
            continue
        diff = sum(float((after[n].detach() - before[n].detach()).double().pow(2).sum())
                   for n in names)
        base = sum(float(before[n].detach().double().pow(2).sum()) for n in names)
        rows[g] = {"distance": diff ** 0.5,
                   "relative": (diff / base) ** 0.5 if base > 0 else float("nan")}
    return pd.DataFrame.from_dict(rows, orient="index")


def total_distance(movement: pd.DataFrame) -> float:
    """||theta* - theta^0|| over the whole backbone, from :func:`weight_movement`'s blocks."""
    return float(np.sqrt((movement["distance"] ** 2).sum()))


def plot_movement(movement: pd.DataFrame, highlight: Sequence[str] = ("full", "lp_ft"), ax=None):
    """Relative movement per block (rows of ``movement``, on x) for each strategy (its columns, a
    line each); ``highlight`` drawn bold. A log scale: the probe's zero sits at the bottom."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    for name in movement.columns:
        bold = name in highlight
        ax.plot(range(len(movement)), movement[name].to_numpy(), marker="o" if bold else ".",
                lw=2.5 if bold else 1, alpha=1 if bold else 0.45, label=name)
    ax.set_xticks(range(len(movement)), movement.index)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_ylim(bottom=0)  # nothing moves backwards: no room for negative values
    ax.set_ylabel("||θ* − θ⁰|| / ||θ⁰||")
    ax.set_title("How far each block moved from its pretrained weights")
    ax.legend(fontsize=8, ncols=2)
    ax.grid(alpha=0.3)
    return ax
