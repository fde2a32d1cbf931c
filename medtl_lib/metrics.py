"""Metrics computed from predictions (probabilities + labels), never from a live model, so any
metric can be recomputed later without retraining. Bottom layer: the trainer (validation AUROC)
and a run (its test metrics) use these as much as the reports do."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           class_names: list[str]) -> dict:
    """Accuracy and macro/weighted precision, recall, F1 (the paper's Table II uses macro),
    balanced accuracy, one-vs-rest AUROC, the confusion matrix and a per-class report."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} do not match")
    k = len(class_names)
    pred = probs.argmax(1)
    ids = list(range(k))
    out: dict = {"n": int(labels.size), "accuracy": float(skm.accuracy_score(labels, pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(labels, pred, labels=ids, average=avg,
                                                         zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    out["balanced_accuracy"] = float(skm.balanced_accuracy_score(labels, pred))
    cm = skm.confusion_matrix(labels, pred, labels=ids).astype(np.float64)
    tp = np.diag(cm)
    tn = cm.sum() - cm.sum(0) - cm.sum(1) + tp
    with np.errstate(invalid="ignore", divide="ignore"):  # seed 004's names for the same rates
        # an absent class counts 0, as sklearn's zero_division=0 (so this equals recall_macro)
        out["sensitivity_macro"] = float(np.mean(np.nan_to_num(tp / cm.sum(1))))
        out["specificity_macro"] = float(np.mean(np.nan_to_num(tn / (cm.sum() - cm.sum(1)))))
    out["auroc_macro"] = auroc(labels, probs, k)
    out["confusion_matrix"] = skm.confusion_matrix(labels, pred, labels=ids).tolist()
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, c in enumerate(class_names)}
    return out


def auroc(labels: np.ndarray, probs: np.ndarray, k: int) -> float | None:
    """One-vs-rest macro AUROC (binary: of class 1); None where undefined (a class absent)."""
    present = np.unique(labels)
    if present.size < 2:
        return None  # undefined with one class present
    if k == 2:
        return float(skm.roc_auc_score(labels, probs[:, 1]))
    if present.size < k:
        return None
    return float(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                                   labels=list(range(k))))


def predictions_frame(paths: list[str], labels: np.ndarray, probs: np.ndarray,
                      class_names: list[str]) -> pd.DataFrame:
    """One row per image: path, label, pred, and one probability column per class."""
    frame = pd.DataFrame({"path": paths, "label": labels, "pred": probs.argmax(1)})
    for i, c in enumerate(class_names):
        frame[f"prob_{c}"] = probs[:, i]
    return frame


def metrics_from_predictions(frame: pd.DataFrame, class_names: list[str]) -> dict:
    """Recompute metrics from a predictions CSV written by a run."""
    probs = frame[[f"prob_{c}" for c in class_names]].to_numpy()
    return classification_metrics(frame["label"].to_numpy(), probs, class_names)


def f1_of_macro_pr(precision_macro: float, recall_macro: float) -> float:
    """2PR / (P + R) of the macro precision and macro recall: what seed 002 reports as "F1".

    It is not the macro F1 (the mean of the per-class F1s), which is never larger: a class with
    high precision and low recall and another with the reverse average to balanced P and R, whose
    harmonic mean is high, while each class's own F1 is low. Derived from a run's stored macro
    precision and recall, so it is not stored itself."""
    p, r = float(precision_macro), float(recall_macro)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)
