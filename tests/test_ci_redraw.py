"""Bootstrap resamples on which a metric is undefined are redrawn, not skipped (issue 27, item 7;
spec 4.3: "resamples lacking a class are redrawn"), and every interval says how many were."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtl_lib import intervals as ci


def _scores(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(labels), k))
    logits[np.arange(len(labels)), labels] += 1.0
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def _rare_binary():
    """20 images, 2 positives: about one resample in eight draws no positive (AUROC undefined)."""
    labels = np.array([0] * 18 + [1] * 2)
    return labels, _scores(labels, 2, seed=4)


def _reference_redraw(labels, probs, n_boot, seed):
    """The spec's rule written out: draw resamples n_boot at a time from one generator seeded
    with ``seed`` and keep the first n_boot that hold both classes; (values, undefined ones)."""
    rng = np.random.default_rng(seed)
    values, undefined = [], 0
    while len(values) < n_boot:
        for row in rng.integers(0, len(labels), (n_boot, len(labels))):
            if len(values) == n_boot:
                break
            if len(np.unique(labels[row])) < 2:
                undefined += 1
                continue
            values.append(roc_auc_score(labels[row], probs[row, 1]))
    return np.array(values), undefined


def test_undefined_resamples_are_redrawn_until_n_boot_defined_ones():
    labels, probs = _rare_binary()
    n_boot, seed = 300, 0
    first = ci.bootstrap_all(labels, probs, n_boot, seed)["auroc_macro"]
    assert np.isnan(first).sum() > 10  # the case this test is about: some resamples lack a class
    values, undefined = _reference_redraw(labels, probs, n_boot, seed)
    expected = np.percentile(values, [2.5, 97.5])

    boot = ci.bootstrap_values(labels, probs, ci.auroc_macro, n_boot, seed)
    assert len(boot.values) == n_boot and not np.isnan(boot.values).any()
    assert boot.redrawn == undefined > 0
    np.testing.assert_allclose(boot.values, values, rtol=1e-12)
    np.testing.assert_allclose(ci.bootstrap(labels, probs, ci.auroc_macro, n_boot, seed),
                               expected, rtol=1e-12)

    table = ci.ci95(labels, probs, n_boot, seed)  # the vectorised path: the same resamples
    auc = table["auroc_macro"]
    assert auc["redrawn"] == undefined
    np.testing.assert_allclose([auc["low"], auc["high"]], expected, rtol=1e-12)
    assert table["sensitivity_macro"]["redrawn"] == undefined  # undefined on the same resamples
    assert table["accuracy"]["redrawn"] == 0  # always defined: the plain first draw
    assert f"{undefined} undefined resamples redrawn" in ci.format_ci(table)

    # paired: both models on the same redrawn resamples, and the count reported
    d = ci.paired_difference(labels, probs, probs[:, ::-1], "auroc_macro", n_boot, seed)
    assert d["redrawn"] == undefined
    np.testing.assert_allclose([d["low"], d["high"]], np.percentile(2 * values - 1, [2.5, 97.5]),
                               rtol=1e-12)


def test_confusion_intervals_redraw_like_ci95():
    labels, probs = _rare_binary()
    full = ci.ci95(labels, probs, n_boot=300, seed=1)
    alone = ci.confusion_ci95(labels, probs.argmax(1), 2, n_boot=300, seed=1)
    for name, entry in alone.items():
        assert entry == full[name], name
    assert alone["sensitivity_macro"]["redrawn"] > 0


def test_intervals_without_undefined_resamples_are_the_plain_bootstrap():
    """Nothing undefined: the first n_boot resamples exactly, as before the redraw existed."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, 150)
    logits = rng.normal(0, 1, (150, 3))
    logits[np.arange(150), labels] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    table = ci.ci95(labels, probs, n_boot=400, seed=3)
    # recorded with the kit before the redraw (it skipped undefined resamples; here there are none)
    recorded = {"accuracy": (0.6266666666666667, 0.7734999999999999),
                "sensitivity_macro": (0.6381943828740746, 0.781412184333547),
                "f1_macro": (0.6204355319753443, 0.774171718038202),
                "auroc_macro": (0.8167073662076099, 0.9075227724316333)}
    for name, bounds in recorded.items():
        assert table[name]["redrawn"] == 0
        assert (table[name]["low"], table[name]["high"]) == pytest.approx(bounds, rel=1e-12,
                                                                          abs=0)
    # and formula by formula: the plain percentile interval of the first draw, bit for bit
    tail = (1 - 0.95) / 2 * 100  # as the kit computes it: 2.5000000000000022, not 2.5
    first = ci.bootstrap_all(labels, probs, 400, 3)
    for name in ci.METRICS:
        assert not np.isnan(first[name]).any()
        low, high = np.nanpercentile(first[name], [tail, 100 - tail])
        assert (table[name]["low"], table[name]["high"]) == (low, high), name
    idx = np.random.default_rng(3).integers(0, 150, (400, 150))
    acc = [(probs[i].argmax(1) == labels[i]).mean() for i in idx]
    assert ci.bootstrap(labels, probs, ci.accuracy, 400, 3) == \
        tuple(np.nanpercentile(acc, [tail, 100 - tail]))


def _many_singletons():
    """30 images of class 0 and ten classes with one image each: all eleven classes land in about
    1% of resamples."""
    labels = np.array([0] * 30 + list(range(1, 11)))
    return labels, _scores(labels, 11, seed=5)


def test_a_metric_defined_on_almost_no_resample_is_a_clear_error():
    labels, probs = _many_singletons()
    with pytest.raises(ci.UndefinedMetricError, match="sensitivity_macro is undefined on"):
        ci.bootstrap(labels, probs, ci.sensitivity_macro, n_boot=50, seed=0)
    boot = ci.bootstrap_values(labels, probs, ci.sensitivity_macro, n_boot=50, seed=0)
    assert not boot.complete and len(boot.values) + boot.redrawn == ci.REDRAW_CAP * 50
    # a run's evaluation records the reason instead of failing
    table = ci.ci95(labels, probs, n_boot=50, seed=0)
    sens = table["sensitivity_macro"]
    assert math.isnan(sens["low"]) and math.isnan(sens["high"]) and "too rare" in sens["note"]
    assert sens["redrawn"] > 0 and not math.isnan(table["accuracy"]["low"])
    assert "too rare" in ci.format_ci(table)


def test_a_metric_undefined_on_the_test_set_has_no_interval_and_no_redraws():
    labels = np.array([0, 1] * 15)
    probs = _scores(labels, 3, seed=6)  # three classes, the third never in the test set
    table = ci.ci95(labels, probs, n_boot=100, seed=0)
    auc = table["auroc_macro"]
    assert math.isnan(auc["value"]) and math.isnan(auc["low"]) and auc["redrawn"] == 0
    low, high = ci.bootstrap(labels, probs, ci.auroc_macro, n_boot=100, seed=0)
    assert math.isnan(low) and math.isnan(high)
    d = ci.paired_difference(labels, probs, probs, "auroc_macro", n_boot=100)
    assert math.isnan(d["low"]) and d["redrawn"] == 0
