"""Figures and tables for notebook 01: what is in a dataset before anything is trained on it."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..data.images import load_rgb
from ..data.index import DataIndex


def class_balance(index: DataIndex, ax=None):
    """Bar chart of images per class (stacked by the dataset's own split folders)."""
    counts = index.counts().drop(columns="total")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    counts.plot.bar(stacked=True, ax=ax, rot=0)
    ax.set_ylabel("images")
    ax.set_title(f"{index.spec.name}: {len(index.frame)} images")
    return ax.figure


def size_mode_summary(index: DataIndex) -> pd.DataFrame:
    """Image sizes and colour modes per class: medical sets mix grayscale, RGB and sizes."""
    f = index.frame.assign(size=lambda d: d["width"].astype(str) + "x" + d["height"].astype(str))
    table = f.groupby(["class_name", "mode", "size"]).size().rename("images").reset_index()
    return table.sort_values(["class_name", "images"], ascending=[True, False]).reset_index(drop=True)


def sample_grid(index: DataIndex, per_class: int = 6, seed: int = 0, thumb: int = 96):
    """A few images of every class, drawn with a fixed seed."""
    classes = index.class_names
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.6 * per_class, 1.7 * len(classes)),
                             squeeze=False)
    rng = np.random.default_rng(seed)
    for r, cls in enumerate(classes):
        paths = index.frame.loc[index.frame["class_name"] == cls, "path"].to_numpy()
        pick = rng.choice(paths, size=min(per_class, len(paths)), replace=False)
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(pick):
                img = load_rgb(index.abspath(pick[c]))
                img.thumbnail((thumb, thumb))
                ax.imshow(img)
        axes[r, 0].set_title(cls, loc="left", fontsize=9)
    fig.tight_layout()
    return fig
