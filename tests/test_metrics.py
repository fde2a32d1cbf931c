"""Metrics from saved predictions, checked against values worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from medtl_lib.metrics import (
    classification_metrics,
    metrics_from_predictions,
    predictions_frame,
)


def test_macro_metrics_by_hand():
    # labels: a a a b b c ; preds: a a b b c c
    labels = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[pred] * 0.7 + 0.1
    m = classification_metrics(labels, probs, ["a", "b", "c"])
    # precision a=2/2, b=1/2, c=1/2 ; recall a=2/3, b=1/2, c=1/1
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision_macro"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert m["f1_macro"] == pytest.approx(sum(f1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["a"]["support"] == 3
    assert m["precision_weighted"] == pytest.approx((3 * 1 + 2 * 0.5 + 1 * 0.5) / 6)


def test_binary_auroc_and_one_class_present():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]])
    m = classification_metrics(labels, probs, ["neg", "pos"])
    assert m["auroc_macro"] == pytest.approx(0.75)  # 3 of 4 positive/negative pairs ordered
    assert classification_metrics(np.array([1, 1]), probs[:2], ["neg", "pos"])["auroc_macro"] is None


def test_predictions_roundtrip():
    labels = np.array([0, 1, 1])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    frame = predictions_frame(["x", "y", "z"], labels, probs, ["n", "p"])
    assert frame["pred"].tolist() == [0, 1, 0]
    assert metrics_from_predictions(frame, ["n", "p"]) == classification_metrics(labels, probs, ["n", "p"])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        classification_metrics(np.array([0, 1]), np.ones((3, 2)) / 2, ["a", "b"])
