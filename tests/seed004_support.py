"""Finished seed-004 run folders without training: config, metrics with intervals, predictions."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import yaml

SETTINGS = {"pretrained_frozen": ("auto", "linear_probe", 0.8), "pretrained_top": ("auto", "top_layers", 1.5),
            "pretrained_all": ("auto", "full", 2.5), "random_top": ("none", "top_layers", 0.3),
            "random_all": ("none", "full", 1.0)}


def fake_run(folder, model, weights, strategy, probs, labels, seed=1,
             dataset="chest_xray_pneumonia", classes=("NORMAL", "PNEUMONIA")):
    from medtl_lib.intervals import ci95

    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": dataset, "model": model, "weights": weights, "strategy": strategy,
         "seed": seed}))
    (folder / "metrics.json").write_text(json.dumps(
        {"status": "complete", "class_names": list(classes),
         "test": {"n": len(labels), "ci95": ci95(labels, probs, n_boot=200, seed=0)}}))
    frame = pd.DataFrame({"path": [f"test/img{i}.jpeg" for i in range(len(labels))],
                          "label": labels, "pred": probs.argmax(1),
                          **{f"prob_{c}": probs[:, k] for k, c in enumerate(classes)}})
    frame.sample(frac=1, random_state=seed).to_csv(folder / "predictions_test.csv", index=False)


def fake_profile(root, models=("resnet50_tv", "resnet101_tv"), n=300, seed=0):
    """Five settings x ``models`` on one binary test set; better settings rank the test images
    better (skill), and the second model a little better than the first."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    for m, model in enumerate(models):
        for name, (weights, strategy, skill) in SETTINGS.items():
            s = skill + 0.5 * m
            score = labels * s + rng.normal(0, 1, n)
            p1 = 1 / (1 + np.exp(-score + s / 2))
            fake_run(root / f"chest_xray_pneumonia__{model}__{name}__s1", model, weights, strategy,
                     np.stack([1 - p1, p1], 1), labels)
    return labels
