"""Seed 003's numbers from saved predictions and built models: AUROC and AUPRC per class, and the
params / MACs / latency table of a set of cut points."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import run_folder as rf


def per_class_auc(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per class, one-vs-rest: AUROC, AUPRC as the authors compute it (trapezoidal area
    under the precision-recall curve, sklearn's ``auc(recall, precision)``) and average precision
    (the step-wise area, sklearn's ``average_precision_score``) beside it. The two AUPRCs differ,
    in either direction: the trapezoid interpolates linearly between PR points, which precision
    does not do between thresholds; compare the authors' numbers with the first only."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    rows = []
    for i, name in enumerate(class_names):
        y = (labels == i).astype(int)
        if y.min() == y.max():  # the class is absent (or everything): no curve
            rows.append({"class": name, "n": int(y.sum()), "auroc": np.nan,
                         "auprc_trapezoid": np.nan, "average_precision": np.nan})
            continue
        precision, recall, _ = precision_recall_curve(y, probs[:, i])
        rows.append({"class": name, "n": int(y.sum()), "auroc": roc_auc_score(y, probs[:, i]),
                     "auprc_trapezoid": auc(recall, precision),
                     "average_precision": average_precision_score(y, probs[:, i])})
    return pd.DataFrame(rows).set_index("class")


def run_per_class_auc(run_dir: str | Path, split: str = "test") -> pd.DataFrame:
    """:func:`per_class_auc` of a run folder's predictions of one split."""
    classes = rf.class_names(run_dir)
    frame = rf.read_predictions(run_dir, split)
    return per_class_auc(frame["label"].to_numpy(),
                         frame[[f"prob_{c}" for c in classes]].to_numpy(), classes)


def complexity_table(model: str, variants: dict[str, list[dict]], num_classes: int = 2,
                     img_size: int = 224, latency: bool = True) -> pd.DataFrame:
    """Params (M), MACs (G, conv + linear and the authors' ptflops convention) and batch-1 CPU
    latency (ms, median) of ``model`` under each named list of surgery ops (``{}`` = the full
    model), as Table 1's P / MACs / T columns."""
    from ..models.factory import create_model
    from ..models.info import count_macs, describe_device, latency_ms

    rows = []
    for label, ops in variants.items():
        m, _ = create_model(model, num_classes, weights="none", img_size=img_size, surgery=ops)
        rows.append({"model": label, "params_M": sum(p.numel() for p in m.parameters()) / 1e6,
                     "macs_G": count_macs(m, img_size) / 1e9,
                     "macs_ptflops_G": count_macs(m, img_size, convention="ptflops") / 1e9,
                     "latency_ms": latency_ms(m, img_size, "cpu", warmup=5, reps=30)
                     if latency else np.nan})
    out = pd.DataFrame(rows).set_index("model")
    out.attrs["latency_device"] = describe_device("cpu") if latency else ""
    return out


def search_summary(profile_dir: str | Path, n_boot: int = 2000,
                   max_share: float | None = None, only: str | None = None) -> pd.DataFrame:
    """Each finished cut search of a profile against its FTL baseline (the run whose settings it
    searched, ``search_<method>__<run>`` beside ``<run>``): the chosen point, its share of the
    baseline's parameters, both test macro AUROCs with their 95% intervals, and the paired
    difference (chosen - FTL) on the same test images. One row per search; seeds stay separate
    rows (their mean and spread: ``groupby('method')``).

    ``max_share``: instead of the search's choice, the candidate with the best validation AUROC
    among those keeping at most that share of the baseline's parameters (ties: the smaller). The
    claim "a cut keeps the AUROC at half the parameters" is then tested on a point that the
    validation set chose under that budget, never the test set. A search with no candidate
    inside the budget gives no row. ``only``: one search folder's name (its bootstrap alone)."""

    from ..config import RunConfig
    from ..search_cut import model_params
    from .ci import run_paired_difference

    rows = []
    root = Path(profile_dir)
    for found in sorted(root.glob(f"{only or 'search_*__*'}/{rf.SEARCH_CHOICE}")):
        search = found.parent
        if not search.name.startswith("search_") or "__" not in search.name:
            continue  # not a profile's search (a lab search has no FTL run beside it)
        method, run = search.name[len("search_"):].split("__", 1)
        baseline = root / run
        chosen = json.loads(found.read_text())
        try:
            ftl = rf.read_metrics(baseline)
            if not rf.path(baseline, rf.CONFIG).is_file():
                continue
            cfg = RunConfig.from_dict(rf.read_config(baseline))
        except (OSError, ValueError):
            continue  # the baseline has not finished: nothing to compare with yet
        table = rf.read_csv(search / rf.SEARCH_TABLE)
        ftl_params = model_params(cfg, len(ftl["class_names"]))
        if max_share is None:
            pick = table[table["chosen"]].iloc[0]
            test = chosen["test"]
        else:
            within = table[table["params"] <= max_share * ftl_params]
            if within.empty:
                continue
            pick = within.sort_values(["val_auroc", "params"], ascending=[False, True]).iloc[0]
            test = rf.read_metrics(pick["path"])["test"]
        path = pick["path"]
        ci = (test.get("ci95") or {}).get("auroc_macro") or {}
        ftl_ci = (ftl["test"].get("ci95") or {}).get("auroc_macro") or {}
        diff = run_paired_difference(path, baseline, "auroc_macro", n_boot=n_boot)
        rows.append({"method": method, "run": run, "chosen": pick["point"],
                     "params": int(pick["params"]), "params_share": pick["params"] / ftl_params,
                     "val_auroc": pick["val_auroc"],
                     "auroc": test.get("auroc_macro"), "auroc_low": ci.get("low"),
                     "auroc_high": ci.get("high"), "ftl_auroc": ftl["test"].get("auroc_macro"),
                     "ftl_low": ftl_ci.get("low"), "ftl_high": ftl_ci.get("high"),
                     "diff": diff["value"], "diff_low": diff["low"], "diff_high": diff["high"],
                     "candidates": len(table)})
    return pd.DataFrame(rows)
