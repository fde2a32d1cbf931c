"""Confidence intervals (seed 004; every results table): the properties issue 13 asks for."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtl_lib.intervals import (
    accuracy,
    auroc_macro,
    bootstrap,
    ci95,
    delong,
    sensitivity_macro,
    specificity_macro,
    wilson,
)


def _binary(n: int, seed: int = 0, separation: float = 1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * (2 * labels - 1))))
    return labels, np.stack([1 - scores, scores], 1)


def test_wilson_matches_the_textbook_values():
    low, high = wilson(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0


def test_delong_and_bootstrap_agree_on_a_binary_auroc():
    labels, probs = _binary(1000)
    auc, (low, high) = delong(labels, probs[:, 1])
    assert auc == pytest.approx(roc_auc_score(labels, probs[:, 1]), abs=1e-12)
    b_low, b_high = bootstrap(labels, probs, auroc_macro, n_boot=1000, seed=1)
    assert abs(low - b_low) < 0.01 and abs(high - b_high) < 0.01
    assert low < auc < high


def test_a_perfect_ranker_gets_one_to_one():
    labels = np.array([0] * 50 + [1] * 50)
    probs = np.stack([1 - labels * 0.9 - 0.05, labels * 0.9 + 0.05], 1)
    assert delong(labels, probs[:, 1]) == (1.0, (1.0, 1.0))
    assert bootstrap(labels, probs, auroc_macro, n_boot=200) == (1.0, 1.0)


def test_same_seed_same_interval_containing_the_estimate_and_shrinking_as_one_over_root_n():
    labels, probs = _binary(500, seed=3)
    a = ci95(labels, probs, n_boot=300, seed=7)
    assert a == ci95(labels, probs, n_boot=300, seed=7)
    for name, c in a.items():
        assert c["low"] <= c["value"] <= c["high"], name
    widths = []
    for n in (400, 1600):
        labels, probs = _binary(n, seed=5)
        low, high = bootstrap(labels, probs, accuracy, n_boot=600, seed=0)
        widths.append(high - low)
    assert 0.35 < widths[1] / widths[0] < 0.65  # 1 / sqrt(4) = 0.5


def test_macro_sensitivity_and_specificity_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[pred]
    # sensitivity: 2/3, 1/2, 1/1; specificity: 3/3, 3/4, 4/5
    assert sensitivity_macro(labels, probs) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert specificity_macro(labels, probs) == pytest.approx((1 + 3 / 4 + 4 / 5) / 3)
    assert np.isnan(auroc_macro(np.array([0, 0, 1]), np.eye(3)[[0, 1, 1]]))


@pytest.mark.parametrize("k", [2, 3])
def test_the_vectorised_bootstrap_equals_one_resample_at_a_time(k):
    from medtl_lib.intervals import METRICS, bootstrap_all

    rng = np.random.default_rng(k)
    labels = rng.integers(0, k, 120)
    probs = rng.dirichlet(np.ones(k), 120)
    probs[np.arange(120), labels] += 0.3  # better than chance
    probs /= probs.sum(1, keepdims=True)
    fast = bootstrap_all(labels, probs, n_boot=60, seed=2)
    idx = np.random.default_rng(2).integers(0, 120, (60, 120))
    for name, fn in METRICS.items():
        slow = np.array([fn(labels[i], probs[i]) for i in idx])
        np.testing.assert_allclose(fast[name], slow, rtol=1e-9, atol=1e-12, err_msg=name)


def test_every_run_records_its_intervals_and_the_cli_recomputes_them(synth_root, tmp_path,
                                                                     capsys):
    import json

    from medtl_lib.cli import main

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    out = tmp_path / "r"
    assert main(["train", "--dataset", "brain_tumor_mri", "--data-dir", str(data), "--model",
                 "test_resnet", "--weights", "none", "--img-size", "32", "--epochs", "1",
                 "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "metrics.json").read_text())["test"]["ci95"]
    assert saved["accuracy"]["value"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["test"]["accuracy"])
    capsys.readouterr()
    assert main(["report", "ci", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == saved  # recomputable from the predictions
    assert main(["report", "ci", str(tmp_path / "nothing")]) == 2


def test_run_metrics_carry_macro_sensitivity_and_specificity():
    from medtl_lib.metrics import classification_metrics

    labels = np.array([0, 0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    m = classification_metrics(labels, probs, ["a", "b", "c"])
    assert m["sensitivity_macro"] == pytest.approx(m["recall_macro"])
    assert m["specificity_macro"] == pytest.approx(specificity_macro(labels, probs))


def test_f1_macro_matches_sklearn():
    from sklearn.metrics import f1_score

    from medtl_lib.intervals import f1_macro

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 300)
    probs = rng.dirichlet(np.ones(4), 300)
    probs[np.arange(300), labels] += rng.random(300)  # better than chance, not perfect
    assert f1_macro(labels, probs) == pytest.approx(
        f1_score(labels, probs.argmax(1), average="macro", labels=range(4), zero_division=0))


def test_paired_difference_is_narrower_than_two_separate_intervals():
    """Two models that share most of their errors: the paired interval of the difference is far
    narrower than the separate intervals suggest; a model against itself gives exactly 0."""
    from medtl_lib.intervals import ci95, paired_difference

    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    base = labels + rng.normal(0, 0.8, n)  # shared difficulty per image
    a = np.stack([-base, base], 1)
    b = np.stack([-(base + rng.normal(0, 0.2, n)), base + rng.normal(0, 0.2, n)], 1)
    d = paired_difference(labels, a, b, "auroc_macro", n_boot=500, seed=1)
    assert d["low"] <= d["value"] <= d["high"]
    sep_a, sep_b = (ci95(labels, x, n_boot=500, seed=1)["auroc_macro"] for x in (a, b))
    assert d["high"] - d["low"] < 0.5 * ((sep_a["high"] - sep_a["low"]) + (sep_b["high"] - sep_b["low"]))
    same = paired_difference(labels, a, a, "accuracy", n_boot=100)
    assert same["value"] == same["low"] == same["high"] == 0.0
    with pytest.raises(ValueError, match="unknown metric"):
        paired_difference(labels, a, b, "auc")
