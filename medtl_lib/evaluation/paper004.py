"""Seed 004's tables from run folders: model x setting with 95% intervals, the gain from
pretraining as a paired difference, size against score, and the ranking within families.

A setting is read from each run's own config (``weights`` x ``strategy``), so any profile whose
runs cover the five combinations gives these tables; nothing depends on folder names.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from .. import run_folder as rf

# (pretrained?, strategy) -> the setting's name, in the paper's order
SETTINGS: dict[tuple[bool, str], str] = {
    (True, "linear_probe"): "pretrained + frozen",
    (True, "top_layers"): "pretrained + top",
    (True, "full"): "pretrained + all",
    (False, "top_layers"): "random + top",
    (False, "full"): "random + all",
}
SETTING_ORDER: tuple[str, ...] = tuple(SETTINGS.values())
CI_METHOD = "95% intervals: percentile bootstrap over the test images (recorded with each run)"
METRIC_LABELS = {"auroc_macro": "AUC", "precision_macro": "precision",
                 "sensitivity_macro": "sensitivity", "specificity_macro": "specificity",
                 "accuracy": "accuracy", "f1_macro": "macro F1",
                 "auroc_delong": "AUC (DeLong's interval; binary sets only)"}


def setting_of(weights: Any, strategy: str) -> str | None:
    """The seed-004 setting of a run, or None for a combination the paper did not train."""
    return SETTINGS.get((str(weights) != "none", str(strategy)))


def collect(profile_dir: str | Path) -> pd.DataFrame:
    """One row per complete run below ``profile_dir`` with its setting, every test metric and
    its interval (``<metric>``, ``<metric>_low``, ``<metric>_high``)."""
    rows = []
    for run in rf.collect(profile_dir):  # the reports' one collector of run folders
        if not run.complete or run.config_error or not rf.path(run.path, rf.CONFIG).is_file():
            continue
        m, cfg = run.metrics, run.config
        setting = setting_of(cfg.get("weights", "auto"), cfg.get("strategy", "full"))
        if setting is None:
            continue
        row = {"dataset": cfg.get("dataset"), "model": cfg.get("model"), "setting": setting,
               "seed": cfg.get("seed"), "n_test": (m.get("test") or {}).get("n"), "path": str(run.path)}
        ci = (m.get("test") or {}).get("ci95") or {}
        for metric in METRIC_LABELS:
            entry = ci.get(metric) or {}
            row[metric] = entry.get("value", (m.get("test") or {}).get(metric, math.nan))
            row[f"{metric}_low"] = entry.get("low", math.nan)
            row[f"{metric}_high"] = entry.get("high", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: float, low: float, high: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isnan(low):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def settings_table(runs: pd.DataFrame, dataset: str, metric: str = "auroc_macro") -> pd.DataFrame:
    """Model x setting, each cell 'value [low, high]' for one dataset; several seeds: the mean,
    and the cell says how many runs it averages (an interval belongs to one run)."""
    part = runs[runs["dataset"] == dataset]
    out = pd.DataFrame(index=list(dict.fromkeys(part["model"])), columns=list(SETTING_ORDER),
                       dtype=object).fillna("")
    for (model, setting), g in part.groupby(["model", "setting"]):
        if len(g) == 1:
            r = g.iloc[0]
            out.loc[model, setting] = _cell(r[metric], r[f"{metric}_low"], r[f"{metric}_high"])
        else:
            out.loc[model, setting] = (f"{g[metric].mean():.3f} ± {g[metric].std(ddof=1):.3f} "
                                       f"(mean ± SD, {len(g)} seeds)")
    out.index.name = "model"
    return out[[c for c in SETTING_ORDER if (out[c] != "").any()]]


def pretraining_gain(runs: pd.DataFrame, metric: str = "auroc_macro", n_boot: int = 2000,
                     seed: int = 0, with_: str = "pretrained + all",
                     without: str = "random + all") -> pd.DataFrame:
    """Per dataset and model: metric(pretrained) - metric(random), both trained the same way,
    with a paired bootstrap interval over the shared test images (one seed: the first)."""
    from .ci import run_paired_difference

    rows = []
    for (dataset, model), g in runs.groupby(["dataset", "model"], sort=False):
        a, b = g[g["setting"] == with_], g[g["setting"] == without]
        if a.empty or b.empty:
            continue
        a, b = a.sort_values("seed").iloc[0], b.sort_values("seed").iloc[0]
        try:
            d = run_paired_difference(a["path"], b["path"], metric, n_boot, seed)
        except (FileNotFoundError, ValueError) as exc:
            rows.append({"dataset": dataset, "model": model, "gain": math.nan, "low": math.nan,
                         "high": math.nan, "note": str(exc)})
            continue
        rows.append({"dataset": dataset, "model": model, "gain": d["value"], "low": d["low"],
                     "high": d["high"], "note": d["method"]})
    return pd.DataFrame(rows, columns=["dataset", "model", "gain", "low", "high", "note"])


def parameter_counts(models: list[str], num_classes: int = 2, img_size: int = 128) -> dict[str, int]:
    """Parameters of each model with its head, built without weights on the meta device (no
    memory, no download)."""
    import torch

    from ..models.factory import create_model

    out = {}
    for name in models:
        with torch.device("meta"):
            model, _ = create_model(name, num_classes, weights="none", img_size=img_size)
        out[name] = sum(p.numel() for p in model.parameters())
    return out


def family_of(model: str) -> str:
    """The architecture family the paper ranks within (VGG, ResNet, Inception, Xception,
    DenseNet; EfficientNet-Lite for the CPU stand-ins)."""
    low = model.lower()
    for key, family in (("inception", "Inception"), ("vgg", "VGG"), ("resnet", "ResNet"),
                        ("xception", "Xception"), ("densenet", "DenseNet"),
                        ("efficientnet", "EfficientNet"), ("lite", "EfficientNet")):
        if key in low:  # Inception first: Inception-ResNet-v2 is ranked with the Inceptions
            return family
    return model


def family_ranking(runs: pd.DataFrame, metric: str = "auroc_macro",
                   setting: str = "pretrained + all") -> pd.DataFrame:
    """Within each family, the models ranked per dataset (1 = best) in one setting: does the
    order hold across datasets? (The paper: it does not.)"""
    part = runs[runs["setting"] == setting].copy()
    if part.empty:
        return pd.DataFrame()
    part["family"] = part["model"].map(family_of)
    mean = part.groupby(["family", "model", "dataset"])[metric].mean().unstack("dataset")
    return mean.groupby(level="family").rank(ascending=False, method="min").astype("Int64")
