"""Seed 002's tables (Li et al., CDTM): the paper's cells as data (copied from its Tables IV-VIII,
spec Section 2.6), the kit's runs laid out the same way beside them, and Table VII measured.

Cells are percentages as printed. "F1" in this paper is 2PR / (P + R) of the macro precision and
recall (:func:`~medtl_lib.metrics.f1_of_macro_pr`), so the kit's F1 column is computed
that way too, from each run's macro P and R.
"""
from __future__ import annotations

import pandas as pd

from ..metrics import f1_of_macro_pr
from .report import STATUS_COMPLETE

COLUMNS = ("Pre", "Rec", "Acc", "F1")
#: the paper's columns that get the kit's 95% interval (collect_runs' bootstrap columns); the
#: paper's F1 (of the macro P and R) has none
INTERVALS = {"Pre": "precision", "Rec": "recall", "Acc": "test_acc"}
CI_NOTE = ("kit low / high: each run's 95% test-set interval (percentile bootstrap over the test "
           "images), bounds averaged over the seeds; the paper reports none.")

#: Table VI (BreakHis 200X malignant): backbone x pretraining x {LP+CDTM, SFT+CDTM}; Tables IV
#: (LAION-2B rows) and VIII's CDTM rows repeat these cells.
TABLE_VI = {
    ("convnext_b_in21k", "cdtm_lp"): (82.98, 79.06, 85.61, 80.97),
    ("convnext_b_laion400m", "cdtm_lp"): (84.76, 76.87, 85.61, 80.62),
    ("convnext_b_laion2b", "cdtm_lp"): (80.78, 75.09, 84.17, 77.83),
    ("vit_b_in21k", "cdtm_lp"): (80.02, 80.73, 84.89, 80.37),
    ("vit_b_laion400m", "cdtm_lp"): (85.86, 79.33, 87.05, 82.47),
    ("vit_b_laion2b", "cdtm_lp"): (84.31, 78.33, 87.41, 81.21),
    ("convnext_b_in21k", "sft"): (88.76, 87.60, 91.01, 88.18),
    ("convnext_b_laion400m", "sft"): (88.18, 88.63, 91.37, 88.41),
    ("convnext_b_laion2b", "sft"): (93.09, 87.14, 92.45, 90.02),
    ("vit_b_in21k", "sft"): (88.99, 88.01, 91.37, 88.50),
    ("vit_b_laion400m", "sft"): (93.15, 90.89, 93.88, 92.01),
    ("vit_b_laion2b", "sft"): (92.74, 91.08, 94.24, 91.91),
}

#: Table V (HCRF gastric, LAION-2B): the CDTM rows (its other rows are quoted by the paper)
TABLE_V = {
    ("convnext_b_laion2b", "cdtm_lp"): (92.89, 92.86, 92.86, 92.88),
    ("convnext_b_laion2b", "sft"): (99.30, 99.29, 99.29, 99.29),
    ("vit_b_laion2b", "cdtm_lp"): (87.17, 87.14, 87.14, 87.16),
    ("vit_b_laion2b", "sft"): (94.32, 94.29, 94.29, 94.30),
}

#: Table VIII (LAION-2B -> BreakHis), Acc / F1 of the five ways to train
TABLE_VIII = {
    ("convnext_b_laion2b", "scratch"): (65.47, 33.26), ("convnext_b_laion2b", "linear_probe"):
    (72.66, 55.97), ("convnext_b_laion2b", "cdtm_lp"): (84.17, 77.83),
    ("convnext_b_laion2b", "full"): (89.93, 86.01), ("convnext_b_laion2b", "sft"): (92.45, 90.02),
    ("vit_b_laion2b", "scratch"): (74.10, 61.87), ("vit_b_laion2b", "linear_probe"): (64.75, 31.60),
    ("vit_b_laion2b", "cdtm_lp"): (87.41, 81.21), ("vit_b_laion2b", "full"): (89.93, 86.39),
    ("vit_b_laion2b", "sft"): (94.24, 91.91),
}

#: Table VII (224 px): Params (M), FLOPs (G) as the paper counts them, trainable share (%)
TABLE_VII = {
    "ResNet-50": (25.56, 4.12, 100.0), "VGG-16": (138.36, 15.50, 100.0),
    "VGG-19": (143.67, 19.67, 100.0), "ConvNeXt-B": (88.85, 15.42, 100.0),
    "ConvNeXt-B-CDTM-LP": (99.32, 15.88, 10.5), "ViT-B": (85.77, 16.86, 100.0),
    "ViT-B-CDTM-LP": (102.84, 17.90, 16.6),
}
#: how the kit builds each Table VII row: (timm name, pool, head, strategy, classes)
TABLE_VII_MODELS = {
    "ResNet-50": ("resnet50", "avg", "linear", "full", 1000),
    "VGG-16": ("vgg16", "avg", "linear", "full", 1000),
    "VGG-19": ("vgg19", "avg", "linear", "full", 1000),
    "ConvNeXt-B": ("convnext_base", "avg", "linear", "full", 4),
    "ConvNeXt-B-CDTM-LP": ("convnext_base", "tokens", "cdtm", "cdtm_lp", 4),
    "ViT-B": ("vit_base_patch16_224", "token", "linear", "full", 4),
    "ViT-B-CDTM-LP": ("vit_base_patch16_224", "tokens", "cdtm", "cdtm_lp", 4),
}


def kit_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the kit's complete runs as the paper's columns, indexed by (model,
    strategy); F1 is 2PR / (P + R) of the macro P and R, as the paper's."""
    done = runs[runs["status"] == STATUS_COMPLETE]
    if done.empty:
        return pd.DataFrame(columns=list(COLUMNS) + ["seeds"])
    rows = {}
    for (model, strategy), g in done.groupby(["model", "strategy"]):
        p, r = g["precision"].mean(), g["recall"].mean()
        row = {"Pre": 100 * p, "Rec": 100 * r, "Acc": 100 * g["test_acc"].mean(),
               "F1": 100 * f1_of_macro_pr(p, r), "seeds": len(g)}
        for column, metric in INTERVALS.items():  # each run's 95% bounds, averaged over seeds
            for bound in ("low", "high"):
                name = f"{metric}_ci_{bound}"
                row[f"{column} {bound}"] = 100 * g[name].mean() if name in g else float("nan")
        rows[(model, strategy)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def side_by_side(paper: dict, runs: pd.DataFrame, columns: tuple[str, ...] = COLUMNS,
                 dataset: str | None = None) -> pd.DataFrame:
    """Paper cells, the kit's cells with their 95% bounds (:data:`CI_NOTE`) and the difference
    (kit - paper, points) per row; rows the kit has not run show the paper alone. ``dataset``:
    only that dataset's runs (seed002 holds BreaKHis for Tables VI and VIII, HCRF for V)."""
    if dataset is not None and "dataset" in runs.columns:
        runs = runs[runs["dataset"] == dataset]
    ours = kit_cells(runs)
    out = []
    for key, cells in paper.items():
        row = {"model": key[0], "strategy": key[1]}
        for c, v in zip(columns, cells):
            row[f"{c} paper"] = v
            have = key in ours.index
            row[f"{c} kit"] = ours.loc[key, c] if have else float("nan")
            if c in INTERVALS:
                for bound in ("low", "high"):
                    row[f"{c} kit {bound}"] = ours.loc[key, f"{c} {bound}"] if have else float("nan")
            row[f"{c} diff"] = row[f"{c} kit"] - v
        row["seeds"] = int(ours.loc[key, "seeds"]) if key in ours.index else 0
        out.append(row)
    return pd.DataFrame(out).set_index(["model", "strategy"])


def table_vii_measured(rows: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Params (M), MACs of conv and linear layers (G) and the trainable share of each Table VII
    row, built here without weights, next to the paper's."""
    import torch

    from ..models.factory import create_model
    from ..models.info import count_macs
    from ..training.strategies import count_params, get_strategy

    out = {}
    for name in rows or tuple(TABLE_VII_MODELS):
        timm_name, pool, head, strategy, classes = TABLE_VII_MODELS[name]
        with torch.random.fork_rng(devices=[]):
            model, _ = create_model(timm_name, classes, weights="none", img_size=224, pool=pool,
                                    head=head)
        total = sum(p.numel() for p in model.parameters())
        strat = get_strategy(strategy)
        trainable = count_params(strat.param_groups(model, 1.0, strat.stages(1)[0]))
        paper = TABLE_VII[name]
        out[name] = {"Params (M) paper": paper[0], "Params (M) kit": total / 1e6,
                     "FLOPs (G) paper": paper[1], "MACs (G) kit": count_macs(model, 224) / 1e9,
                     "Train % paper": paper[2], "Train % kit": 100 * trainable / total}
        del model
    return pd.DataFrame.from_dict(out, orient="index")


#: the orderings seed 002's Table VIII implies, each (better, worse): the CDTM probe beats the
#: plain linear probe, and staged fine-tuning beats the CDTM probe it starts from
ORDERINGS: tuple[tuple[str, str], ...] = (("cdtm_lp", "linear_probe"), ("sft", "cdtm_lp"))
#: collect_runs' column of each metric that has a paired bootstrap
_COLUMN = {"accuracy": "test_acc", "f1_macro": "f1"}


def orderings(runs: pd.DataFrame, metric: str = "accuracy", n_boot: int = 2000,
              pairs: tuple[tuple[str, str], ...] = ORDERINGS) -> pd.DataFrame:
    """Whether each ordering holds on the kit's own runs, per (dataset, model).

    Both arms as mean and sample SD over seeds, the difference of the means, in how many seeds
    the better arm is at least as good, and per seed the paired bootstrap interval of the
    difference (both runs scored on the same test images: :func:`~.ci.run_paired_difference`).
    A seed missing either arm is left out of the pairing and counted as missing."""
    from .ci import run_paired_difference

    if metric not in _COLUMN:
        raise ValueError(f"metric must be one of {', '.join(_COLUMN)}, got '{metric}'")
    column = _COLUMN[metric]
    done = runs[runs["status"] == STATUS_COMPLETE]
    rows = []
    for (dataset, model), g in done.groupby(["dataset", "model"], sort=False):
        for better, worse in pairs:
            a = g[g["strategy"] == better].set_index("seed")
            b = g[g["strategy"] == worse].set_index("seed")
            if a.empty or b.empty:
                continue
            seeds = sorted(set(a.index) & set(b.index))
            per_seed = [run_paired_difference(a.loc[s, "path"], b.loc[s, "path"], metric, n_boot)
                        for s in seeds]
            difference = a.loc[seeds, column].mean() - b.loc[seeds, column].mean()
            rows.append({
                "dataset": dataset, "model": model, "ordering": f"{better} ≥ {worse}",
                f"{better} mean": a[column].mean(), f"{better} sd": a[column].std(ddof=1),
                f"{worse} mean": b[column].mean(), f"{worse} sd": b[column].std(ddof=1),
                "difference": difference,
                "seeds holding": sum(d["value"] >= 0 for d in per_seed), "seeds paired": len(seeds),
                "per-seed paired 95% CI": "; ".join(
                    f"s{s}: {d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
                    for s, d in zip(seeds, per_seed)),
                "holds": bool(per_seed) and difference >= 0})
    return pd.DataFrame(rows)
