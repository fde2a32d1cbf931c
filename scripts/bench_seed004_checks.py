"""Seed 004's numbers that are not accuracies, measured: the intervals' properties, trainable
counts per setting, and (given finished runs) that frozen parts stayed bit for bit.

    python scripts/bench_seed004_checks.py                       # intervals + counts (~1 min)
    python scripts/bench_seed004_checks.py --runs runs/seed004_cpu   # + the runs' frozen tensors

Everything printed is computed here; nothing is compared against a stored figure except the
spec's ResNet-18 counts (Section 4.2, verified), which the script states beside its own.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl_lib.intervals import auroc_macro, ci95, delong  # noqa: E402


def scores(n: int, seed: int, separation: float = 1.0, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """n labelled cases and softmax probabilities of a model that is right more often than not."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += separation
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def interval_checks() -> None:
    print("== intervals (evaluation.ci, 2,000 resamples)")
    labels, probs = scores(500, 0, k=4)
    a, b = ci95(labels, probs, seed=3), ci95(labels, probs, seed=3)
    print(f"same seed twice, identical: {a == b}")
    inside = total = 0
    for s in range(20):
        lab, pr = scores(300, 100 + s, k=3)
        for entry in ci95(lab, pr, n_boot=500, seed=s).values():
            total += 1
            inside += entry["low"] <= entry["value"] <= entry["high"]
    print(f"point estimate inside its interval: {inside} of {total} (20 test sets x 7 intervals)")
    print("width against test-set size (accuracy, 4 classes; width x sqrt(n) ~ constant if 1/sqrt(n)):")
    for n in (125, 250, 500, 1000, 2000, 4000):
        lab, pr = scores(n, 7, k=4)
        acc = ci95(lab, pr, seed=0)["accuracy"]
        w = acc["high"] - acc["low"]
        print(f"  n={n:5d}  width {w:.4f}  width x sqrt(n) {w * math.sqrt(n):.3f}")
    lab, pr = scores(1000, 11)
    boot = ci95(lab, pr, seed=0)["auroc_macro"]
    auc, (dl, dh) = delong(lab, pr[:, 1])
    print(f"binary AUROC on 1,000 synthetic scores: {auc:.4f}; bootstrap [{boot['low']:.4f}, "
          f"{boot['high']:.4f}], DeLong [{dl:.4f}, {dh:.4f}]; largest bound gap "
          f"{max(abs(boot['low'] - dl), abs(boot['high'] - dh)):.4f}")
    perfect = np.eye(2)[lab] * 0.9 + 0.05
    p = ci95(lab, perfect, seed=0)
    print(f"perfect ranker: AUROC {auroc_macro(lab, perfect):.3f}, bootstrap "
          f"[{p['auroc_macro']['low']:.3f}, {p['auroc_macro']['high']:.3f}], DeLong "
          f"[{p['auroc_delong']['low']:.3f}, {p['auroc_delong']['high']:.3f}]")


def count_checks() -> None:
    import torch

    from medtl_lib.models.factory import create_model
    from medtl_lib.models.names import SEED004_MODELS
    from medtl_lib.training.strategies import get_strategy

    def trainable(model, strategy: str) -> int:
        s = get_strategy(strategy)
        s.on_epoch_start(model, s.stages(1)[0], 0)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    print("\n== trainable parameters per setting (frozen / top / all; presets: 2 classes, 256 px)")
    spec = {"linear_probe": 2_052, "top_layers": 8_395_780, "full": 11_178_564}
    model, _ = create_model("resnet18", 4, weights="none", img_size=64)
    got = {s: trainable(model, s) for s in spec}
    print(f"resnet18, 4 classes: {got}  spec Section 4.2: {spec}  equal: {got == spec}")
    for name in ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", *SEED004_MODELS]:
        counts = []
        for s in spec:
            with torch.device("meta"):
                m, _ = create_model(name, 2, weights="none", img_size=256)
            counts.append(trainable(m, s))
        print(f"  {name:24s} " + "  ".join(f"{c:>11,d}" for c in counts))


def frozen_checks(runs: Path) -> None:
    """For each pretrained frozen / top run: compare its best.pt with the ImageNet weights it
    started from; every tensor outside what the setting trains must be equal bit for bit."""
    import torch

    from medtl_lib.models.factory import create_model, load_run_model
    from medtl_lib.training.strategy_top_layers import head_names, top_layer_names

    print(f"\n== frozen tensors of the runs in {runs}")
    for run in sorted(runs.glob("*")):
        cfg_path = run / "config.yaml"
        if not (run / "metrics.json").is_file() or not cfg_path.is_file():  # finished runs only
            continue
        import yaml

        cfg = yaml.safe_load(cfg_path.read_text())
        if cfg.get("weights") == "none" or cfg.get("strategy") not in ("linear_probe", "top_layers"):
            continue
        trained, _, _ = load_run_model(run)
        start, _ = create_model(cfg["model"], len(json.loads((run / "metrics.json").read_text())
                                                  ["class_names"]),
                                weights=cfg.get("weights", "auto"), img_size=cfg["img_size"])
        opened = (head_names(start) if cfg["strategy"] == "linear_probe"
                  else top_layer_names(start))
        owners = {n.rsplit(".", 1)[0] for n in opened}
        same = changed = moved = trained_tensors = 0
        for key, before in start.state_dict().items():
            after = trained.state_dict()[key]
            if key.rsplit(".", 1)[0] in owners:
                trained_tensors += 1
                moved += not torch.equal(before, after)
            elif torch.equal(before, after):
                same += 1
            else:
                changed += 1
        print(f"  {run.name}: {same} frozen tensors equal bit for bit, {changed} changed; "
              f"{moved} of the {trained_tensors} trained tensors moved")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, help="a profile folder of finished seed-004 runs")
    args = ap.parse_args()
    interval_checks()
    count_checks()
    if args.runs:
        frozen_checks(args.runs)


if __name__ == "__main__":
    main()
