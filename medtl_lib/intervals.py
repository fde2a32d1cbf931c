"""95% confidence intervals for the test metrics of a run (seed 004; every results table).

A test set of a few hundred images is a sample: a reported 94.2% is an estimate whose
uncertainty often exceeds the differences people compare. Three methods, each where it is the
standard:

* a seeded **percentile bootstrap** over test images for every metric (resample the images with
  replacement, recompute, take the 2.5th and 97.5th percentiles; 2,000 resamples by default), so
  macro metrics, which have no closed form, get intervals too. A resample on which a metric is
  undefined (AUROC or macro sensitivity with a class drawn zero times) is redrawn, as the spec
  says, until ``n_boot`` defined ones are collected; each interval records how many were redrawn
  (``redrawn``): skipping them, as the kit once did, left the interval on fewer resamples than
  its method states, without a word;
* **Wilson** score intervals for proportions (accuracy, a class's sensitivity), which behave at 0
  and 1 where the normal approximation does not;
* **DeLong**'s variance for a binary AUROC (Sun & Xu's fast midrank algorithm).

Everything is computed from labels and predicted probabilities, so a run's saved test
predictions reproduce it. Pure numpy (bottom layer): a run records its intervals with these, and
:mod:`medtl_lib.evaluation.ci` recomputes them from run folders.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile

#: at most this many times ``n_boot`` resamples are drawn in all while undefined ones are redrawn:
#: a metric defined on fewer than about 1 in 20 resamples gets no bootstrap interval
REDRAW_CAP = 20


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _midrank(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their mean rank."""
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    i = 0
    while i < len(z):
        j = i
        while j < len(z) and z[j] == z[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(len(x), dtype=np.float64)
    out[order] = ranks
    return out


def delong(labels: np.ndarray, scores: np.ndarray, z: float = Z95
           ) -> tuple[float, tuple[float, float]]:
    """(AUROC, 95% interval) of a binary classifier by DeLong's variance."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positives and two negatives")
    tx, ty = _midrank(pos), _midrank(neg)
    tz = _midrank(np.concatenate([pos, neg]))
    auc = tz[:m].sum() / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:m] - tx) / n  # each positive: share of negatives ranked below it
    v01 = 1 - (tz[m:] - ty) / m  # each negative: share of positives ranked above it
    se = math.sqrt(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
    return float(auc), (max(0.0, auc - z * se), min(1.0, auc + z * se))


class UndefinedMetricError(ValueError):
    """A metric undefined on nearly every bootstrap resample (a class too rare in the test set):
    redrawing cannot collect ``n_boot`` defined ones within :data:`REDRAW_CAP` draws."""


@dataclass(frozen=True)
class BootstrapValues:
    """A metric on the resamples where it is defined, in draw order, and how many undefined
    resamples were drawn (and replaced) on the way: the interval rests on exactly ``n_boot``
    values when :attr:`complete`, and ``redrawn`` says how far the draw departed from the plain
    first ``n_boot`` resamples (0: not at all)."""

    values: np.ndarray
    redrawn: int
    n_boot: int

    @property
    def complete(self) -> bool:
        return len(self.values) == self.n_boot

    def interval(self, name: str = "the metric", level: float = 0.95) -> tuple[float, float]:
        """The percentile interval; a clear error rather than one on too few resamples."""
        if not self.complete:
            drawn = len(self.values) + self.redrawn
            raise UndefinedMetricError(
                f"{name} is undefined on {self.redrawn:,} of {drawn:,} bootstrap resamples "
                f"({len(self.values):,} defined, {self.n_boot:,} needed): a class is too rare in "
                "this test set for a bootstrap interval")
        if np.isnan(self.values).all():  # undefined on the test set itself: no interval
            return (math.nan, math.nan)
        return _percentiles(self.values, level)


def bootstrap(labels: np.ndarray, probs: np.ndarray,
              metric: Callable[[np.ndarray, np.ndarray], float], n_boot: int = 2000,
              seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``metric(labels, probs)`` over ``n_boot`` resamples of the images
    on which it is defined (undefined ones are redrawn: :func:`bootstrap_values`); NaN when the
    metric is undefined on the test set itself."""
    return bootstrap_values(labels, probs, metric, n_boot, seed).interval(
        getattr(metric, "__name__", "the metric"), level)


def bootstrap_values(labels: np.ndarray, probs: np.ndarray,
                     metric: Callable[[np.ndarray, np.ndarray], float], n_boot: int = 2000,
                     seed: int = 0) -> BootstrapValues:
    """``metric`` on ``n_boot`` resamples where it is defined (NaN marks undefined), one resample
    at a time, drawn from :func:`resample_batches`. A metric undefined on the whole test set is
    undefined on every resample: its values are all NaN at once, rather than redrawn in vain."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    if np.isnan(metric(labels, probs)):
        return BootstrapValues(np.full(n_boot, np.nan), 0, n_boot)

    def values_on(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {"m": np.array([metric(labels[i], probs[i]) for i in idx], dtype=np.float64)}

    return defined_values(values_on, len(labels), n_boot, seed)["m"]


def resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    """The (n_boot, n) image indices of the bootstrap: the same for the same seed (the first
    batch of :func:`resample_batches`)."""
    return next(resample_batches(n, n_boot, seed))


def resample_batches(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's stream of resamples, ``n_boot`` at a time from one seeded generator. The
    first batch is all an interval uses when its metric is defined everywhere (so such intervals
    are those of the plain bootstrap); later batches replace undefined resamples."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.integers(0, n, (n_boot, n))


def defined_values(values_on: Callable[[np.ndarray], dict[str, np.ndarray]], n: int,
                   n_boot: int, seed: int, names: list[str] | None = None,
                   cap: int = REDRAW_CAP) -> dict[str, BootstrapValues]:
    """For each metric that ``values_on(idx)`` returns (one value per resample row of ``idx``, NaN
    where undefined; ``names``: only these), the first ``n_boot`` defined values of the stream of
    :func:`resample_batches`. Every metric sees the same stream, so paired and vectorised
    intervals stay on shared resamples; after ``cap`` batches a metric keeps what it has (not
    :attr:`~BootstrapValues.complete`)."""
    kept: dict[str, list[np.ndarray]] = {}
    redrawn: dict[str, int] = {}
    for batch, idx in enumerate(resample_batches(n, n_boot, seed), 1):
        for name, v in values_on(idx).items():
            if names is not None and name not in names:
                continue
            have = sum(len(a) for a in kept.setdefault(name, []))
            ok = np.flatnonzero(~np.isnan(v))[:n_boot - have]  # the defined rows still needed
            if have + len(ok) < n_boot:
                used = len(v)  # the whole batch, and more batches to come
            else:
                used = ok[-1] + 1 if len(ok) else 0  # up to the n_boot-th defined resample
            redrawn[name] = redrawn.get(name, 0) + int(used) - len(ok)
            kept[name].append(np.asarray(v)[ok])
        done = all(sum(len(a) for a in parts) == n_boot for parts in kept.values())
        if done or batch >= cap:
            break
    return {name: BootstrapValues(np.concatenate(parts), redrawn[name], n_boot)
            for name, parts in kept.items()}


def _percentiles(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def _entry(name: str, value: float, boot: BootstrapValues, method: str) -> dict:
    """One bootstrap interval as a run records it: NaN bounds (and why) where the metric
    is undefined on the test set or on nearly every resample."""
    out = {"value": value, "low": math.nan, "high": math.nan, "method": method,
           "redrawn": boot.redrawn}
    if math.isnan(value):
        return out
    try:
        out["low"], out["high"] = boot.interval(name)
    except UndefinedMetricError as exc:
        out["note"] = str(exc)
    return out


def bootstrap_all(labels: np.ndarray, probs: np.ndarray, n_boot: int = 2000, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` on every resample of :func:`resamples` at once, NaN where
    undefined (the plain first draw: :func:`ci95` replaces the NaN ones by redraws)."""
    labels = np.asarray(labels)
    return metrics_on(labels, probs, resamples(len(labels), n_boot, seed))


def metrics_on(labels: np.ndarray, probs: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` on each resample row of ``idx`` (vectorised: a confusion
    matrix per resample by one bincount, AUROCs from ranks); NaN where undefined."""
    from scipy.stats import rankdata

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    y = labels[idx]
    out = _confusion_metrics(_confusions_on(labels, probs.argmax(1), k, idx))
    with np.errstate(invalid="ignore", divide="ignore"):
        aucs = []
        for c in ([1] if k == 2 else range(k)):  # binary: the positive class, as roc_auc_score
            pos = y == c
            ranks = rankdata(probs[:, c][idx], axis=1)
            n_pos = pos.sum(1)
            n_neg = len(labels) - n_pos
            aucs.append(((ranks * pos).sum(1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
        auc = np.mean(aucs, axis=0)
        present = np.stack([(y == c).any(1) for c in range(k)]).all(0)
        out["auroc_macro"] = np.where(present, auc, np.nan)
    return out


def _confusion_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of :data:`CONFUSION_METRICS` for each (k, k) confusion matrix of ``cm``."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fn, fp = cm.sum(2) - tp, cm.sum(1) - tp
    tn = cm.sum((1, 2))[:, None] - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": tp.sum(1) / cm.sum((1, 2)),
                "sensitivity_macro": (tp / (tp + fn)).mean(1),
                "specificity_macro": (tn / (tn + fp)).mean(1),
                "precision_macro": np.nan_to_num(tp / (tp + fp)).mean(1),
                "f1_macro": f1_of_confusions(cm)}


#: the metrics a predicted class decides (no scores needed): their intervals can be recomputed
#: from any run's test predictions, also one recorded before its metrics kept ci95
CONFUSION_METRICS: tuple[str, ...] = ("accuracy", "sensitivity_macro", "specificity_macro",
                                      "precision_macro", "f1_macro")


def confusion_ci95(labels: np.ndarray, pred: np.ndarray, k: int, n_boot: int = 2000,
                   seed: int = 0) -> dict:
    """The intervals of :data:`CONFUSION_METRICS` from labels and predicted classes alone, in
    :func:`ci95`'s form: the same resamples for the same seed, so the same bounds ci95 records."""
    labels, pred = np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if labels.size == 0:
        return {}
    point = {name: float(v[0]) for name, v in
             _confusion_metrics(_confusion(labels, pred, k)[None].astype(float)).items()}
    boots = defined_values(lambda idx: _confusion_metrics(_confusions_on(labels, pred, k, idx)),
                           len(labels), n_boot, seed,
                           names=[m for m, v in point.items() if not math.isnan(v)])
    empty = BootstrapValues(np.full(n_boot, np.nan), 0, n_boot)
    return {name: _entry(name, value, boots.get(name, empty), bootstrap_method(n_boot, seed))
            for name, value in point.items()}


def bootstrap_method(n_boot: int, seed: int) -> str:
    """How a run's bootstrap is described in its recorded metrics (and parsed back by
    :func:`bootstrap_settings`)."""
    return f"percentile bootstrap, {n_boot} resamples, seed {seed}"


def bootstrap_settings(method: str | None, n_boot: int = 2000, seed: int = 0) -> tuple[int, int]:
    """(resamples, seed) from a method text of :func:`bootstrap_method`, so an interval filled in
    later is drawn on the resamples the run's other intervals used; the defaults otherwise."""
    import re

    found_n = re.search(r"(\d+) resamples", method or "")
    found_seed = re.search(r"seed (\d+)", method or "")
    return (int(found_n.group(1)) if found_n else n_boot,
            int(found_seed.group(1)) if found_seed else seed)


def _confusions_on(labels: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """(len(idx), k, k) confusion matrices of the resample rows of ``idx``, by one bincount."""
    labels, pred = np.asarray(labels, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    rows = len(idx)
    codes = (labels[idx] * k + pred[idx]) + (np.arange(rows)[:, None] * k * k)
    return np.bincount(codes.ravel(), minlength=rows * k * k).reshape(rows, k, k).astype(float)


def f1_of_confusions(cm: np.ndarray) -> np.ndarray:
    """Macro F1 of each (k, k) confusion matrix in ``cm`` (..., k, k); 0 for a class neither
    present nor predicted (sklearn's zero_division=0 with every label listed)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    fn, fp = cm.sum(-1) - tp, cm.sum(-2) - tp
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0).mean(-1)


# ------------------------------------------------------------------ metrics on (labels, probs)
def _confusion(labels: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def _per_class(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    k = probs.shape[1]
    cm = _confusion(labels, probs.argmax(1), k).astype(np.float64)
    tp = np.diag(cm)
    fn, fp = cm.sum(1) - tp, cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                "precision": tp / (tp + fp), "f1": 2 * tp / (2 * tp + fp + fn)}


def sensitivity_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of one-vs-rest sensitivity (recall); NaN if a class is absent."""
    return float(np.mean(_per_class(labels, probs)["sensitivity"]))


def specificity_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of one-vs-rest specificity: of the images not of class c, the share not
    called c."""
    return float(np.mean(_per_class(labels, probs)["specificity"]))


def precision_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of precision; a class never predicted counts 0 (as sklearn's
    zero_division=0)."""
    return float(np.mean(np.nan_to_num(_per_class(labels, probs)["precision"])))


def f1_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean over classes of F1 = 2TP / (2TP + FP + FN); 0 for a class neither present nor
    predicted (as sklearn's zero_division=0 with every label listed)."""
    return float(np.mean(np.nan_to_num(_per_class(labels, probs)["f1"])))


def auroc_macro(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary: the AUROC of the positive class; more classes: the one-vs-rest macro average;
    NaN when a class is missing from ``labels``."""
    from sklearn.metrics import roc_auc_score

    k = probs.shape[1]
    if len(np.unique(labels)) < k:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro",
                               labels=list(range(k))))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy, "sensitivity_macro": sensitivity_macro,
    "specificity_macro": specificity_macro, "precision_macro": precision_macro,
    "f1_macro": f1_macro, "auroc_macro": auroc_macro,
}


def ci95(labels: np.ndarray, probs: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict:
    """Every metric's point estimate and 95% interval: ``{name: {"value", "low", "high",
    "method", "redrawn"}}`` (``redrawn``: undefined resamples replaced; a ``note`` and NaN bounds
    where the metric is defined on too few resamples); accuracy also by Wilson, a binary AUROC
    also by DeLong. A run's evaluation never fails on an interval, hence the note, not an error."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    point = {name: fn(labels, probs) for name, fn in METRICS.items()}
    boots = defined_values(lambda idx: metrics_on(labels, probs, idx), len(labels), n_boot, seed,
                           names=[m for m, v in point.items() if not math.isnan(v)])
    empty = BootstrapValues(np.full(n_boot, np.nan), 0, n_boot)
    out: dict = {name: _entry(name, value, boots.get(name, empty), bootstrap_method(n_boot, seed))
                 for name, value in point.items()}
    k = int((probs.argmax(1) == labels).sum())
    low, high = wilson(k, len(labels))
    out["accuracy_wilson"] = {"value": k / len(labels), "low": low, "high": high,
                              "method": "Wilson score interval"}
    if probs.shape[1] == 2 and min(np.bincount(labels, minlength=2)) >= 2:
        auc, (low, high) = delong(labels, probs[:, 1])
        out["auroc_delong"] = {"value": auc, "low": low, "high": high, "method": "DeLong"}
    return out


def paired_difference(labels: np.ndarray, probs_a: np.ndarray, probs_b: np.ndarray,
                      metric: str = "auroc_macro", n_boot: int = 2000, seed: int = 0) -> dict:
    """metric(A) - metric(B) on the same test images, with a paired percentile bootstrap: both
    models are scored on the same resamples, so an image that is hard for both cancels out and
    the interval is much narrower than two separate intervals suggest. An interval that excludes
    0 says the difference is not a test-set accident (it says nothing about training seeds).
    Resamples where the difference is undefined are redrawn (``redrawn`` counts them); NaN bounds
    where it is undefined on the test set itself, an :class:`UndefinedMetricError` where it is
    defined on too few resamples for an interval."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric '{metric}'; known: {', '.join(METRICS)}")
    labels = np.asarray(labels)
    probs_a, probs_b = np.asarray(probs_a, np.float64), np.asarray(probs_b, np.float64)
    if probs_a.shape != probs_b.shape or len(labels) != len(probs_a):
        raise ValueError(f"paired difference needs both models on the same images: shapes "
                         f"{probs_a.shape} and {probs_b.shape} for {len(labels)} labels")
    value = METRICS[metric](labels, probs_a) - METRICS[metric](labels, probs_b)
    method = f"paired percentile bootstrap, {n_boot} resamples, seed {seed}"
    if math.isnan(value):  # undefined on the test set itself: on every resample too
        return {"value": value, "low": math.nan, "high": math.nan, "method": method, "redrawn": 0}
    boot = defined_values(lambda idx: {metric: metrics_on(labels, probs_a, idx)[metric]
                                       - metrics_on(labels, probs_b, idx)[metric]},
                          len(labels), n_boot, seed)[metric]
    low, high = boot.interval(metric)  # too rare a class: a clear error, not a narrow interval
    return {"value": value, "low": low, "high": high, "method": method, "redrawn": boot.redrawn}


def format_ci(table: dict) -> str:
    """One line per metric: value [low, high], the method, and the redrawn resamples and note
    where there are any (an interval on redrawn resamples says so where it is read)."""
    def extra(c: dict) -> str:
        redrawn = f", {c['redrawn']:,} undefined resamples redrawn" if c.get("redrawn") else ""
        return redrawn + (f"; {c['note']}" if c.get("note") else "")

    return "\n".join(f"{name:>18}: {c['value']:.4f} [{c['low']:.4f}, {c['high']:.4f}]  "
                     f"({c['method']}{extra(c)})" for name, c in table.items())
