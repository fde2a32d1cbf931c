"""Hand-written run folders in the formats train_run writes, for the results tests
(test_results_files.py, test_results_page.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from medtl_lib.intervals import ci95
from medtl_lib.metrics import classification_metrics, predictions_frame

BRAIN = ["glioma", "meningioma", "notumor", "pituitary"]


def fake_predictions(n: int, k: int, accuracy: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities whose argmax is right for about ``accuracy`` of the images."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    pred = np.where(rng.random(n) < accuracy, labels, (labels + 1 + rng.integers(0, k - 1, n)) % k)
    probs = np.full((n, k), 0.1 / max(k - 1, 1))
    probs[np.arange(n), pred] = 0.9
    return labels, probs / probs.sum(1, keepdims=True)


def write_run(profile: Path, dataset: str, model: str, classes: list[str], accuracy: float,
              data_root: Path, group_by: str = "none", seed: int = 42, n_test: int = 80,
              folder: str | None = None) -> Path:
    """A run folder as train_run writes it: config, data identity, metrics with ci95, the test
    predictions and the split."""
    out = profile / (folder or f"{dataset}__{model}")
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": dataset, "model": model, "strategy": "full", "seed": seed, "lr": 1e-3,
         "group_by": group_by, "data_dir": str(data_root)}))
    (out / "data_identity.json").write_text(json.dumps(
        {"root": str(data_root), "images": 10 * n_test, "per_class": {}, "digest": "x"}))
    labels, probs = fake_predictions(n_test, len(classes), accuracy, seed)
    test = classification_metrics(labels, probs, classes)
    test["ci95"] = ci95(labels, probs)
    tl, tp = fake_predictions(4 * n_test, len(classes), min(1.0, accuracy + 0.05), seed + 1)
    metrics = {"train": classification_metrics(tl, tp, classes),
               "val": classification_metrics(labels, probs, classes), "test": test,
               "epochs_run": 3, "stopped_early": False, "best_epoch": 2, "class_names": classes,
               "model": model, "weights_source": "offline:x", "seconds": 5.0,
               "status": "complete"}
    (out / "metrics.json").write_text(json.dumps(metrics))
    predictions_frame([f"img{i}.png" for i in range(n_test)], labels, probs, classes).to_csv(
        out / "predictions_test.csv", index=False)
    split = pd.DataFrame({"path": [f"img{i}.png" for i in range(5 * n_test)],
                          "split": ["test"] * n_test + ["train"] * (4 * n_test)})
    split.to_csv(out / "split.csv", index=False)
    return out


def make_standin(data: Path) -> Path:
    """A stand-in data folder: stamped at its top as the generator does, the class root one
    level below (a run records the class root the kit located)."""
    top = data / "synthetic" / "brain_tumor_mri"
    (top / "Training").mkdir(parents=True)
    (top / "SYNTHETIC.txt").write_text("Procedural synthetic images made by medtl\n")
    return top / "Training"
