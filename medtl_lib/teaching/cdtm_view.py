"""Seed 002's CDTM opened up for notebook 11: on real images of a trained run, the query's cosine
scores to the centres, the softmax over them, which centres each class uses, and the mixed
p x p token matrix."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import run_folder as rf


def sample_images(run_dir: str | Path, per_class: int = 4, split: str = "test"
                  ) -> tuple[torch.Tensor, np.ndarray, list[str], list[str]]:
    """``per_class`` images of each class from a run's split, through timm's eval transform for
    its model: (batch, labels, class names, relative paths)."""
    from ..data.catalogue import get_spec
    from ..data.images import load_rgb
    from ..data.loaders import build_transforms
    from ..models.factory import load_run_model

    run = Path(run_dir)
    _, _, meta = load_run_model(run)
    cfg = rf.read_config(run)
    root = get_spec(cfg["dataset"]).find(cfg.get("data_dir"))
    frame = rf.read_split(run)
    frame = frame[frame["split"] == split]
    picked = frame.groupby("label", group_keys=False).head(per_class).sort_values("label")
    _, eval_tf = build_transforms({k: tuple(v) if isinstance(v, list) else v
                                   for k, v in meta["data_config"].items()})
    x = torch.stack([eval_tf(load_rgb(root / p)) for p in picked["path"]])
    return x, picked["label"].to_numpy(), list(meta["class_names"]), picked["path"].tolist()


@torch.no_grad()
def attention(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the CDTM head computes for a batch: ``scores`` (B, n) cosine similarities,
    ``weights`` (B, n) the softmax the module uses, ``paper_weights`` the softmax with the paper's
    1/sqrt(d) temperature on the same scores, ``mixed`` (B, p, p) the mixed token matrix."""
    model.eval()
    cdtm = model.head.cdtm
    h = cdtm.mixing_input(model.backbone(x))
    scores = cdtm.scores(h)
    return {"scores": scores, "weights": cdtm.weights(h),
            "paper_weights": (scores / math.sqrt(cdtm.dim)).softmax(-1),
            "mixed": cdtm.mixed_matrix(h)}


def entropy_bits(weights: torch.Tensor) -> torch.Tensor:
    """Entropy of each row of softmax weights, in bits (log2 n for a uniform row)."""
    w = weights.clamp_min(1e-12)
    return -(w * w.log2()).sum(-1)


def centre_usage(weights: torch.Tensor, labels: np.ndarray, class_names: list[str],
                 top: int = 12) -> pd.DataFrame:
    """Mean softmax weight of each class's images on the ``top`` centres used most overall, as a
    multiple of the uniform weight 1/n (1.0: no preference)."""
    w = weights.cpu().numpy() * weights.shape[1]
    order = np.argsort(-w.mean(0))[:top]
    rows = {class_names[c]: w[labels == c][:, order].mean(0) for c in np.unique(labels)}
    return pd.DataFrame(rows, index=[f"c{i}" for i in order]).T
