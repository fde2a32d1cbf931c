"""Figures for the kit: training curves (the paper's Fig. 3), confusion matrices and notebook
06's leakage chart.

Every plotting function draws into given axes or a new figure and returns the Figure; nothing
calls ``plt.show()``, so the same code serves notebooks, scripts and tests. A notebook shows a
figure with :func:`show_figure`, which attaches alt text: ``plt.show()`` output has none, and
the results page needs it for every image.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

# A headless script or test (no display, not a Jupyter kernel, no MPLBACKEND) gets Agg up front;
# a notebook keeps its inline backend.
if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY") and "MPLBACKEND" not in os.environ
        and "ipykernel" not in sys.modules):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from ..utils import atomic_write  # noqa: E402
from .report import DATASETS, PAPER_MODELS, SYNTHETIC_NOTE, dataset_name  # noqa: E402

DEFAULT_DPI = 110  # small enough for committed PNGs, sharp enough to read
PANELS = (("acc", "Accuracy"), ("loss", "Loss"))
# Artist gids, so a test or a caller can find the markers without relying on draw order.
GID_LR_CUT, GID_THETA, GID_PHASE = "lr_cut", "theta_star", "val_loss_phase"
GID_CI = "ci95"  # the error bars of plot_leakage


def model_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """One fixed colour per model (paper models first) so every figure uses the same key."""
    ordered = [m for m in PAPER_MODELS] + [m for m in labels if m not in PAPER_MODELS]
    palette = sns.color_palette("tab10", n_colors=max(10, len(ordered)))
    return {m: palette[i % len(palette)] for i, m in enumerate(ordered)}


def lr_cut_epochs(history: pd.DataFrame) -> list[int]:
    """Epochs after which the LR was cut (the cut applies from the next epoch on)."""
    if "lr_factor" not in history.columns:
        return []
    return [int(e) for e in history.loc[history["lr_factor"] < 1, "epoch"]]


def best_epoch(history: pd.DataFrame) -> int | None:
    """theta*: the last epoch whose weights were saved as best."""
    if "save_best" not in history.columns:
        return None
    saved = history.loc[history["save_best"].astype(bool), "epoch"]
    return int(saved.iloc[-1]) if len(saved) else None


def phase_spans(history: pd.DataFrame, phase: str = "val_loss") -> list[tuple[int, int]]:
    """Contiguous (first, last) epoch ranges spent in one dual-monitor phase."""
    if "phase" not in history.columns:
        return []
    spans: list[tuple[int, int]] = []
    for epoch, ph in zip(history["epoch"], history["phase"]):
        if ph != phase:
            continue
        if spans and spans[-1][1] == int(epoch) - 1:
            spans[-1] = (spans[-1][0], int(epoch))
        else:
            spans.append((int(epoch), int(epoch)))
    return spans


def _epoch_axis(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def plot_history(history: pd.DataFrame, title: str = "", axes: Sequence[Axes] | None = None,
                 best: int | None = None) -> Figure:
    """One run's curves (accuracy and loss panels) with the dual monitor's decisions on them.

    Shaded: epochs in the 'val_loss' phase; dotted grey verticals: LR cuts, drawn between the
    epoch that triggered them and the next; star: theta* (``best`` overrides the history's).
    Each panel holds exactly two lines (train dashed, val solid); markers are collections/patches.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    axes = list(axes)
    if len(axes) != 2:
        raise ValueError(f"plot_history draws two panels, got {len(axes)} axes")
    fig = axes[0].figure
    epochs = history["epoch"].to_numpy()
    cuts = lr_cut_epochs(history)
    theta = best if best is not None else best_epoch(history)
    spans = phase_spans(history)
    for ax, (key, name) in zip(axes, PANELS):
        ax.plot(epochs, history[f"train_{key}"], "--", marker=".", color="C0", label="train")
        ax.plot(epochs, history[f"val_{key}"], "-", marker=".", color="C1", label="val")
        for i, (a, b) in enumerate(spans):
            ax.axvspan(a - 0.5, b + 0.5, color="0.85", alpha=0.5, zorder=0, gid=GID_PHASE,
                       label="val_loss phase" if i == 0 else None)
        if cuts:
            ax.vlines([c + 0.5 for c in cuts], 0, 1, transform=ax.get_xaxis_transform(),
                      colors="0.4", linestyles=":", gid=GID_LR_CUT, label="LR cut")
        if theta is not None and theta in set(epochs.tolist()):
            y = history.loc[history["epoch"] == theta, f"val_{key}"].iloc[0]
            ax.scatter([theta], [y], marker="*", s=160, color="C3", zorder=5, gid=GID_THETA,
                       label=f"θ* (epoch {theta})")
        if key == "acc":
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
        ax.set_title(f"{title}: {name.lower()}" if title else name)
        ax.set_ylabel(name.lower())
        _epoch_axis(ax)
    axes[1].legend(fontsize="small", loc="best")
    return fig


def _row_datasets(keys: Sequence[tuple[str, str]]) -> list[str]:
    present = list(dict.fromkeys(d for d, _ in keys))
    return [d for d in DATASETS if d in present] + sorted(d for d in present if d not in DATASETS)


def _row_models(keys: Sequence[tuple[str, str]]) -> list[str]:
    present = list(dict.fromkeys(m for _, m in keys))
    return [m for m in PAPER_MODELS if m in present] + sorted(m for m in present
                                                              if m not in PAPER_MODELS)


def plot_fig3(histories: Mapping[tuple[str, str], pd.DataFrame], fig: Figure | None = None) -> Figure:
    """The paper's Fig. 3: a row per dataset, accuracy and loss columns, a colour per model,
    train dashed and val solid."""
    if not histories:
        raise ValueError("plot_fig3 needs at least one (dataset, model) history")
    keys = list(histories)
    datasets, models = _row_datasets(keys), _row_models(keys)
    colors = model_colors(models)
    fig = fig or plt.figure(figsize=(11, 3.4 * len(datasets)), layout="constrained")
    grid = fig.subplots(len(datasets), 2, squeeze=False)
    for r, dataset in enumerate(datasets):
        for c, (key, name) in enumerate(PANELS):
            ax = grid[r][c]
            for model in models:
                h = histories.get((dataset, model))
                if h is None or h.empty:
                    continue
                ax.plot(h["epoch"], h[f"train_{key}"], "--", color=colors[model], alpha=0.8)
                ax.plot(h["epoch"], h[f"val_{key}"], "-", color=colors[model])
            if key == "acc":
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1))
            ax.set_title(f"{dataset_name(dataset)}: {name.lower()}")
            ax.set_ylabel(name.lower())
            _epoch_axis(ax)
    handles = [Line2D([], [], color=colors[m], label=m) for m in models] + [
        Line2D([], [], color="0.3", ls="--", label="train"),
        Line2D([], [], color="0.3", ls="-", label="val")]
    grid[0][1].legend(handles=handles, fontsize="small", loc="best")
    return fig


def normalize_confusion(cm) -> np.ndarray:
    """Row-normalise (rows = true class, so each row reads as recall); empty rows stay 0."""
    cm = np.asarray(cm, dtype=float)
    sums = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, sums, out=np.zeros_like(cm), where=sums > 0)


def plot_confusion(cm, class_names: Sequence[str], normalize: bool = False, ax: Axes | None = None,
                   title: str = "") -> Figure:
    """Heatmap of a confusion matrix (rows true, columns predicted): counts or row fractions."""
    counts = np.asarray(cm)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {k} class names")
    if ax is None:
        size = 1.2 + 0.9 * k
        _, ax = plt.subplots(figsize=(size + 0.8, size), layout="constrained")
    data = normalize_confusion(counts) if normalize else counts.astype(int)
    sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", square=True,
                vmin=0, vmax=1 if normalize else None, xticklabels=list(class_names),
                yticklabels=list(class_names), cbar=False, ax=ax)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
    ax.tick_params(axis="y", labelrotation=0)
    if title:
        ax.set_title(title)
    return ax.figure


def confusion_grid(runs: Mapping[tuple[str, str], dict], normalize: bool = True,
                   split: str = "test", fig: Figure | None = None) -> Figure:
    """Confusion matrices for many runs: a row per dataset, a column per model.

    Values are a run's recorded metrics dicts (or load_run dicts, whose 'metrics' is used).
    """
    if not runs:
        raise ValueError("confusion_grid needs at least one (dataset, model) run")
    keys = list(runs)
    datasets, models = _row_datasets(keys), _row_models(keys)
    # rows tall enough for a title, rotated tick labels and the 'predicted' label; wide enough
    # for a two-line figure title above a single column
    fig = fig or plt.figure(figsize=(max(5.5, 2.9 * len(models)), 3.5 * len(datasets)),
                            layout="constrained")
    grid = fig.subplots(len(datasets), len(models), squeeze=False)
    for r, dataset in enumerate(datasets):
        for c, model in enumerate(models):
            ax = grid[r][c]
            metrics = runs.get((dataset, model))
            if metrics is None:
                ax.set_axis_off()
                continue
            if "metrics" in metrics and split not in metrics:
                metrics = metrics["metrics"]
            plot_confusion(metrics[split]["confusion_matrix"], metrics["class_names"],
                           normalize=normalize, ax=ax, title=f"{dataset_name(dataset)}\n{model}")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DEFAULT_DPI) -> Path:
    """Write atomically (no torn PNG if interrupted); PNG unless the suffix names another format."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    fmt = path.suffix.lstrip(".").lower()
    return atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format=fmt, bbox_inches="tight"))


def figure_title(fig: Figure, title: str, synthetic: bool = False) -> Figure:
    """The figure's title; on synthetic stand-ins a second line says the numbers mean nothing
    for the real task, so a figure copied out of the page cannot lose that warning."""
    text = f"{title}\n{SYNTHETIC_NOTE}" if synthetic else title
    fig.suptitle(text, color="0.1", fontsize="medium")
    return fig


def plot_leakage(table: pd.DataFrame, ax: Axes | None = None, title: str = "",
                 synthetic: bool = False) -> Figure:
    """Notebook 06's result: test accuracy per split as horizontal bars with their 95%
    interval as error bars.

    ``table``: a row per split (its index is the label), columns ``test_acc`` and, where known,
    ``test_acc_ci_low`` / ``test_acc_ci_high``. The axis runs from 0 to 1: bars whose axis
    starts near the smaller value turn a gap of a few points into a bar twice as long.
    """
    if table.empty:
        raise ValueError("plot_leakage needs at least one split")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * len(table)), layout="constrained")
    fig = ax.figure
    acc = table["test_acc"].astype(float).to_numpy()
    y = np.arange(len(table))
    ax.barh(y, acc, color=["C3" if "image" in str(i) else "C0" for i in table.index], height=0.6)
    if {"test_acc_ci_low", "test_acc_ci_high"} <= set(table.columns):
        low = table["test_acc_ci_low"].astype(float).to_numpy()
        high = table["test_acc_ci_high"].astype(float).to_numpy()
        known = ~(np.isnan(low) | np.isnan(high))
        if known.any():
            err = np.vstack([acc - low, high - acc])[:, known]
            bars = ax.errorbar(acc[known], y[known], xerr=err, fmt="none", ecolor="0.15",
                               capsize=4, lw=1.2, label="95% interval")
            for artist in bars.get_children():
                artist.set_gid(GID_CI)
    for yi, v in zip(y, acc):  # the value inside its bar, or after a bar too short to hold it
        inside = v >= 0.15
        ax.text(0.01 if inside else v + 0.01, yi, f"{v:.3f}", va="center", ha="left",
                color="white" if inside else "0.1")
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_xlabel("test accuracy (bar) with its 95% bootstrap interval (line)")
    ax.grid(axis="x", alpha=0.3)
    if title or synthetic:
        figure_title(fig, title or "Test accuracy by split", synthetic)
    return fig


def figure_png(fig: Figure, dpi: int = DEFAULT_DPI) -> bytes:
    """The figure as PNG bytes (what a notebook output and the HTML page embed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", bbox_inches="tight")
    return buf.getvalue()


def show_figure(fig: Figure, alt: str, path: str | Path | None = None,
                dpi: int = DEFAULT_DPI) -> Path | None:
    """Display a figure in a notebook as a PNG that carries ``alt`` (the results page turns it
    into the image's alt text: ``plt.show()`` output has none), save it to ``path`` if given,
    and close it. Outside IPython it only saves. Returns the saved path."""
    if not alt.strip():
        raise ValueError("a figure on the results page needs alt text that says what it shows")
    saved = save_figure(fig, path, dpi) if path else None
    show_png(figure_png(fig, dpi), alt)
    plt.close(fig)
    return saved


def show_png(data: bytes | str | Path, alt: str) -> None:
    """Display PNG bytes or a PNG file with alt text (no-op outside IPython)."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    if isinstance(data, (str, Path)):
        data = Path(data).read_bytes()
    display(Image(data=data, format="png", alt=alt))
