"""Run folders -> tables that set our numbers beside the paper's Table II (seed 000).

Every run row carries its dataset, model, strategy and seed (from the run's saved config; a
folder from before strategies counts as ``full``). :func:`table_ii` compares the ``full`` runs
with the paper, averaging over seeds; :func:`strategy_table` gives every (dataset, model,
strategy) the mean and the sample standard deviation of each metric over its seeds.

Pure pandas, no plotting, so a notebook or a script can build the comparison without a display.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from .. import run_folder as rf
from ..intervals import bootstrap_settings
from .ci import run_confusion_ci95

DATASETS: tuple[str, ...] = ("sarscov2_ct", "breakhis_400x", "brain_tumor_mri")  # Table II order
DATASET_NAMES: dict[str, str] = {"sarscov2_ct": "SARS-COV-2", "breakhis_400x": "BreaKHis",
                                 "brain_tumor_mri": "Brain Tumor"}
PAPER_MODELS: tuple[str, ...] = ("ResNet", "DenseNet", "ConvNeXt", "ViT", "ViT*")
METRICS: tuple[str, ...] = ("train_acc", "val_acc", "test_acc", "precision", "recall", "f1")
METRIC_NAMES: dict[str, str] = {"train_acc": "Train Acc", "val_acc": "Val Acc",
                                "test_acc": "Test Acc", "precision": "Precision",
                                "recall": "Recall", "f1": "F1-score"}
SOURCES: tuple[str, ...] = ("ours", "paper", "diff")  # diff = ours - paper
STATUS_COMPLETE = rf.STATUS_COMPLETE
DEFAULT_STRATEGY = "full"  # the paper's; what a run folder without a strategy was trained with
STRATEGY_ORDER: tuple[str, ...] = ("full", "linear_probe", "lp_ft")  # others follow, sorted
STATS: tuple[str, ...] = ("mean", "sd")  # sd: sample standard deviation over seeds (ddof 1)
# Table II metric -> its key in the run's test.ci95 (evaluation.ci). Train and val accuracy
# get no interval (only the test split is resampled). A run whose metrics lack one of these
# (recorded before ci95 held it) gets it from its test predictions on the same resamples.
CI_KEYS: dict[str, str] = {"test_acc": "accuracy", "precision": "precision_macro",
                           "recall": "sensitivity_macro", "f1": "f1_macro"}
CI_BOUNDS: tuple[str, ...] = ("low", "high")
# What a reader must know before reading any number trained on the kit's procedural stand-ins.
SYNTHETIC_NOTE = "synthetic stand-in data — numbers say nothing about the real task"
SYNTHETIC_MARK = rf.SYNTHETIC_MARKS[0]  # the stamp medtl_lib.data.synthetic writes into a stand-in
# How a run's test set was drawn (RunConfig.group_by), in the words the results tables use: the
# paper split image by image; the kit's default keeps duplicates (and patients) in one split.
PROTOCOLS: dict[str, str] = {"none": "image-level split, as the paper",
                             "duplicates": "grouped split, leakage-corrected",
                             "patient": "grouped split, leakage-corrected"}

# Table II copied cell by cell from the paper text (percent, as printed). Precision, recall and
# F1 are printed as whole percents there, so differences under 0.5 pp on them are rounding.
_PAPER_TABLE_II_TEXT = """\
SARS-COV-2	ResNet	100.0%	99.19%	96.79%	97%	97%	97%
SARS-COV-2	DenseNet	100.0%	98.39%	97.99%	98%	98%	98%
SARS-COV-2	ConvNeXt	99.65%	97.18%	97.19%	97%	97%	97%
SARS-COV-2	ViT	94.35%	86.69%	91.57%	93%	91%	91%
SARS-COV-2	ViT*	99.9%	93.55%	94.38%	94%	94%	94%
BreaKHis	ResNet	99.89%	90.87%	94.31%	93%	94%	94%
BreaKHis	DenseNet	100.0%	97.39%	94.50%	94%	93%	94%
BreaKHis	ConvNeXt	100.0%	95.65%	95.96%	95%	96%	95%
BreaKHis	ViT	93.46%	90.00%	84.59%	83%	81%	82%
BreaKHis	ViT*	99.89%	93.45%	92.29%	91%	91%	91%
Brain Tumor	ResNet	99.98%	97.32%	98.55%	98%	98%	98%
Brain Tumor	DenseNet	100.0%	99.42%	99.47%	99%	99%	99%
Brain Tumor	ConvNeXt	99.96%	99.53%	99.16%	99%	99%	99%
Brain Tumor	ViT	98.13%	92.53%	88.56%	89%	88%	88%
Brain Tumor	ViT*	100.0%	98.48%	98.4%	98%	98%	98%
"""


def _parse_paper_table(text: str) -> dict[str, dict[str, dict[str, float]]]:
    """Keep the table in the paper's own printed form so it can be checked against the text."""
    key_of = {v: k for k, v in DATASET_NAMES.items()}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for line in text.strip().splitlines():
        name, model, *cells = line.split("\t")
        values = [round(float(c.rstrip("%")) / 100, 6) for c in cells]
        table.setdefault(key_of[name], {})[model] = dict(zip(METRICS, values, strict=True))
    return table


# PAPER_TABLE_II[dataset_key][model_label][metric] -> fraction (96.79% -> 0.9679).
PAPER_TABLE_II: dict[str, dict[str, dict[str, float]]] = _parse_paper_table(_PAPER_TABLE_II_TEXT)

RUN_COLUMNS: tuple[str, ...] = (
    "dataset", "model", "model_label", "strategy", "seed", "status", *METRICS,
    *(f"{m}_ci_{b}" for m in CI_KEYS for b in CI_BOUNDS), "ci_method", "epochs_run",
    "best_epoch", "stopped_early", "seconds", "weights_source", "lr", "group_by", "split",
    "data_root", "synthetic", "detail", "path")


def paper_table() -> pd.DataFrame:
    """The paper's Table II as a frame indexed (dataset, model) like :func:`table_ii`."""
    rows = {(d, m): vals for d, models in PAPER_TABLE_II.items() for m, vals in models.items()}
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(METRICS))
    df.index = pd.MultiIndex.from_tuples(df.index, names=["dataset", "model"])
    return df


@lru_cache(maxsize=1)
def _presets() -> tuple[dict, dict]:
    """Lazy: the factory imports timm/torch, which a report should only pay for when needed."""
    try:
        from ..models.factory import ALIASES, PRESETS
    except ImportError:  # a results-only install without timm: fall back to raw names
        return {}, {}
    return dict(PRESETS), dict(ALIASES)


def model_key(name: str) -> str:
    """Preset aliases (``ViT*``, ``lite0``) to their preset key; timm names stay as given."""
    presets, aliases = _presets()
    key = aliases.get(name.lower(), name.lower())
    return key if key in presets else name


def model_label(name: str) -> str:
    """The label the paper's tables use (``vit_star`` -> ``ViT*``); other models keep their name."""
    presets, _ = _presets()
    key = model_key(name)
    return presets[key].label if key in presets else name


def dataset_name(key: str) -> str:
    return DATASET_NAMES.get(key, key)


read_history = rf.read_history  # the run folder's readers (medtl_lib.run_folder)
run_status = rf.status
_names_from_folder = rf.names_from_folder


def _identity(run_dir: Path, config: dict, metrics: dict | None = None) -> dict[str, Any]:
    """dataset, model (preset key), model label, strategy and seed of a run folder."""
    folder = _names_from_folder(run_dir)
    model = model_key(str(config.get("model") or (metrics or {}).get("model") or folder["model"]))
    seed = config.get("seed", folder.get("seed", math.nan))
    return {"dataset": str(config.get("dataset") or folder["dataset"]), "model": model,
            "model_label": model_label(model),
            "strategy": str(config.get("strategy") or folder.get("strategy") or DEFAULT_STRATEGY),
            "seed": seed if seed is not None else math.nan}


def load_run(run_dir: str | Path) -> dict | None:
    """A complete run's config, metrics, history, paper label, strategy and seed; None if the
    run is not complete."""
    run_dir = Path(run_dir)
    if not rf.is_complete(run_dir):
        return None
    config = rf.read_config(run_dir)
    metrics = rf.read_metrics(run_dir)
    history = (rf.read_history(run_dir) if rf.path(run_dir, rf.HISTORY).is_file()
               else pd.DataFrame())
    ident = _identity(run_dir, config, metrics)
    return {"path": run_dir, "dataset": ident["dataset"], "model": ident["model"],
            "label": ident["model_label"], "strategy": ident["strategy"], "seed": ident["seed"],
            "config": config, "metrics": metrics, "history": history}


def split_protocol(group_by: Any) -> str:
    """'image-level split, as the paper' or 'grouped split, leakage-corrected' (a run folder
    from before group_by was recorded says so instead of guessing)."""
    if group_by is None or (isinstance(group_by, float) and math.isnan(group_by)):
        return "split not recorded"
    return PROTOCOLS.get(str(group_by), f"group_by={group_by}")


def is_synthetic_data(root: str | Path | None) -> bool:
    """Whether a data folder is one of the kit's procedural stand-ins: the generator stamps
    each with ``SYNTHETIC.txt``, which copies (notebook 06's planted duplicates) keep. The
    stamp may sit a level or two above: a run records the class root the kit located inside
    the dataset folder (BreaKHis' ``.../BreaKHis_v1/histology_slides/...``)."""
    if not root:
        return False
    from ..data.synthetic import is_standin  # the generator's own test

    return rf.is_synthetic_data(root, is_standin)


run_data_root = rf.data_root


def _ci_columns(test: dict, run_dir: Path | None = None) -> dict[str, Any]:
    """``<metric>_ci_low/high`` for the Table II metrics: from the run's recorded ci95, and where
    it lacks one, recomputed from the run's test predictions with the run's own bootstrap
    settings (the same resamples, so the bounds ci95 would have recorded)."""
    ci = dict(test.get("ci95") or {})
    missing = [k for k in CI_KEYS.values() if k not in ci]
    if missing and run_dir is not None:
        recorded = next((e.get("method") for e in ci.values() if "bootstrap" in
                         str(e.get("method"))), None)
        filled = run_confusion_ci95(run_dir, *bootstrap_settings(recorded))
        ci.update({k: filled[k] for k in missing if k in filled})
    out: dict[str, Any] = {}
    for metric, key in CI_KEYS.items():
        entry = ci.get(key) or {}
        for bound in CI_BOUNDS:
            value = entry.get(bound)
            out[f"{metric}_ci_{bound}"] = float(value) if value is not None else math.nan
    methods = sorted({str((ci.get(k) or {}).get("method")) for k in CI_KEYS.values()
                      if (ci.get(k) or {}).get("method")})
    out["ci_method"] = "; ".join(methods) if methods else None
    return out


def _split_value(metrics: dict, split: str, key: str) -> float:
    value = (metrics.get(split) or {}).get(key)
    return float(value) if value is not None else math.nan


def run_row(run: str | Path | rf.Run) -> dict[str, Any]:
    """One collect_runs row; an unfinished run gets NaN numbers and a reason in ``detail``."""
    run = run if isinstance(run, rf.Run) else rf.load(run)
    run_dir, status, detail, config = run.path, run.status, run.detail, run.config
    row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS, math.nan)
    data_root = run_data_root(run_dir, config)
    row.update(_identity(run_dir, config), status=status, detail=detail,
               lr=config.get("lr", math.nan), weights_source=None, stopped_early=None,
               group_by=config.get("group_by"), split=split_protocol(config.get("group_by")),
               data_root=data_root, synthetic=is_synthetic_data(data_root), ci_method=None,
               path=str(run_dir))
    if status != STATUS_COMPLETE:
        return row
    m = run.metrics
    row.update(_ci_columns(m.get("test") or {}, run_dir))
    row.update(
        train_acc=_split_value(m, "train", "accuracy"), val_acc=_split_value(m, "val", "accuracy"),
        test_acc=_split_value(m, "test", "accuracy"),
        precision=_split_value(m, "test", "precision_macro"),
        recall=_split_value(m, "test", "recall_macro"), f1=_split_value(m, "test", "f1_macro"),
        epochs_run=m.get("epochs_run", math.nan), best_epoch=m.get("best_epoch", math.nan),
        stopped_early=m.get("stopped_early"), seconds=m.get("seconds", math.nan),
        weights_source=m.get("weights_source"))
    return row


_is_run_folder = rf.is_run_folder


def collect_runs(profile_dir: str | Path) -> pd.DataFrame:
    """One row per run folder under a profile (or the folder itself if it is one run).

    Unfinished runs are kept as rows with status != 'complete' so a report shows what is missing
    instead of silently dropping it.
    """
    rows = [run_row(run) for run in rf.collect(profile_dir)]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def run_label(label: str, strategy: str) -> str:
    """The label a figure uses: the model's, plus the strategy unless it is ``full``."""
    return label if strategy == DEFAULT_STRATEGY else f"{label} · {strategy}"


def complete_runs(runs: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(dataset, label) -> load_run dict for the complete rows: what the plots take.

    The label is the model's (``ResNet``), with the strategy appended when it is not ``full``
    (``ResNet · lp_ft``). Of several seeds of one (dataset, model, strategy) the lowest seed is
    kept: a figure shows one run's curves, the tables average over seeds.
    """
    done = with_identity(runs)
    done = done[done["status"] == STATUS_COMPLETE]
    done = done.assign(_seed=pd.to_numeric(done["seed"], errors="coerce")).sort_values(
        "_seed", kind="stable", na_position="last")
    out: dict[tuple[str, str], dict] = {}
    for row in done.itertuples():
        run = load_run(row.path)
        if run is not None:
            out.setdefault((run["dataset"], run_label(run["label"], run["strategy"])), run)
    return out


def with_identity(runs: pd.DataFrame) -> pd.DataFrame:
    """A runs frame from before strategies (no strategy / seed column) reads as full runs."""
    if "strategy" not in runs.columns:
        runs = runs.assign(strategy=DEFAULT_STRATEGY)
    if "seed" not in runs.columns:
        runs = runs.assign(seed=math.nan)
    return runs.assign(strategy=runs["strategy"].fillna(DEFAULT_STRATEGY))


def varies_strategy_or_seed(runs: pd.DataFrame) -> bool:
    """More than one strategy or seed among the runs: then :func:`strategy_table` says more
    than Table II."""
    runs = with_identity(runs)
    return runs["strategy"].nunique() > 1 or runs["seed"].nunique() > 1


def _ordered(values, first: tuple[str, ...]) -> list[str]:
    """The paper's order first, anything else after it, sorted for a stable table."""
    values = list(dict.fromkeys(values))
    return [v for v in first if v in values] + sorted(v for v in values if v not in first)


def _row_order(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    datasets = _ordered([d for d, _ in keys], DATASETS)
    models = _ordered([m for _, m in keys], PAPER_MODELS)
    present = set(keys)
    return [(d, m) for d in datasets for m in models if (d, m) in present]


def table_ii(runs: pd.DataFrame, all_paper_rows: bool = False,
             strategy: str = DEFAULT_STRATEGY) -> pd.DataFrame:
    """Our numbers beside the paper's, row per (dataset, model) in the paper's order.

    Columns are a MultiIndex (metric, source) with source in ours / paper / diff (ours - paper,
    as fractions). Rows come from the runs of ``strategy`` (the paper's ``full`` by default;
    unfinished runs appear with NaN ours); with ``all_paper_rows`` every Table II row appears
    too. Several complete runs of one (dataset, model), e.g. seeds, are averaged
    (:func:`strategy_table` has their spread).
    """
    runs = with_identity(runs)
    runs = runs[runs["strategy"] == strategy]
    keys = list(zip(runs["dataset"], runs["model_label"]))
    if all_paper_rows:
        keys += list(paper_table().index)
    order = _row_order(keys)
    index = pd.MultiIndex.from_tuples(order, names=["dataset", "model"])
    done = runs[runs["status"] == STATUS_COMPLETE]
    ours = (done.groupby(["dataset", "model_label"])[list(METRICS)].mean()
            if len(done) else pd.DataFrame(columns=list(METRICS)))
    ours = ours.reindex(index).astype(float)
    paper = paper_table().reindex(index).astype(float)
    parts = {"ours": ours, "paper": paper, "diff": ours - paper}
    out = pd.concat(parts, axis=1).swaplevel(axis=1)
    columns = pd.MultiIndex.from_product([METRICS, SOURCES], names=["metric", "source"])
    return out.reindex(columns=columns)


def table_ii_intervals(runs: pd.DataFrame, table: pd.DataFrame | None = None,
                       strategy: str = DEFAULT_STRATEGY) -> pd.DataFrame:
    """The 95% intervals behind our Table II cells: rows as ``table`` (default: ``table_ii``
    of these runs), columns (metric, low / high), for the metrics whose ``<metric>_ci_low``
    column the runs carry.

    Only a row with exactly one complete run gets an interval: a bootstrap interval is one
    run's test-set uncertainty, and a mean over seeds has none of its own (its spread over seeds
    is :func:`strategy_table`'s).
    """
    runs = with_identity(runs)
    table = table_ii(runs, strategy=strategy) if table is None else table
    metrics = [m for m in METRICS if f"{m}_ci_low" in runs.columns]
    columns = pd.MultiIndex.from_product([metrics, CI_BOUNDS], names=["metric", "bound"])
    out = pd.DataFrame(index=table.index, columns=columns, dtype=float)
    done = runs[(runs["strategy"] == strategy) & (runs["status"] == STATUS_COMPLETE)]
    for (dataset, label), group in done.groupby(["dataset", "model_label"]):
        if len(group) != 1 or (dataset, label) not in out.index:
            continue
        row = group.iloc[0]
        for m in metrics:
            for b in CI_BOUNDS:
                out.loc[(dataset, label), (m, b)] = float(row[f"{m}_ci_{b}"])
    return out


def ci_caption(runs: pd.DataFrame) -> str:
    """How the intervals were made, read from the runs themselves (their metrics say)."""
    methods = sorted({str(m) for m in runs.get("ci_method", pd.Series(dtype=object)).dropna()})
    if not methods:
        return f"No run carries 95% intervals ({rf.METRICS} without test.ci95).\n"
    settings = "; ".join(m.replace("percentile bootstrap, ", "") for m in methods)
    return ("Brackets: the 95% interval of one run's test metric, by a seeded percentile bootstrap "
            f"over the test images ({settings}; a run recorded without one gets it from its "
            f"{rf.predictions_name('test')} on the same resamples). Train and validation accuracy get "
            "none, and a mean over several seeds shows none (the strategy table has their "
            "spread beside the runs' intervals).\n")


def strategy_order(values) -> list[str]:
    return _ordered(values, STRATEGY_ORDER)


def strategy_table(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Mean and spread over seeds, a row per (dataset, model, strategy).

    Index (dataset, model, strategy), model as the paper labels it; columns ``n_seeds`` (the
    complete runs averaged, one per seed) then a MultiIndex (metric, stat) with stat ``mean``
    and ``sd``, the sample standard deviation over seeds (ddof 1): NaN for a single seed, which
    has no spread, rather than 0; for the metrics with intervals also ``ci_low`` and ``ci_high``,
    each run's 95% test-set bounds averaged over its seeds (one seed: its interval). A (dataset,
    model, strategy) whose runs are all unfinished stays as a row with n_seeds 0 and NaN values.
    """
    runs = with_identity(runs)
    keys = list(zip(runs["dataset"], runs["model_label"], runs["strategy"]))
    pairs = _row_order([(d, m) for d, m, _ in keys])
    strategies = strategy_order([s for _, _, s in keys])
    present = set(keys)
    order = [(d, m, s) for d, m in pairs for s in strategies if (d, m, s) in present]
    index = pd.MultiIndex.from_tuples(order, names=["dataset", "model", "strategy"])
    columns = pd.MultiIndex.from_tuples(
        [("n_seeds", "")] + [(m, st) for m in metrics for st in STATS], names=["metric", "stat"])
    done = runs[runs["status"] == STATUS_COMPLETE]
    out = pd.DataFrame(index=index, columns=columns, dtype=float)
    if len(done):
        grouped = done.groupby(["dataset", "model_label", "strategy"])[list(metrics)]
        stats = {"mean": grouped.mean(), "sd": grouped.std(ddof=1)}
        for m in metrics:
            for st in STATS:
                out[(m, st)] = stats[st][m].reindex(index).astype(float).to_numpy()
        counts = grouped.size().reindex(index).fillna(0)
    else:
        counts = pd.Series(0, index=index)
    out[("n_seeds", "")] = counts.astype(int).to_numpy()
    for m in metrics:  # each run's 95% test-set interval, bounds averaged over the seeds
        if f"{m}_ci_low" not in done.columns:
            continue
        bounds = done.groupby(["dataset", "model_label", "strategy"])[
            [f"{m}_ci_{b}" for b in CI_BOUNDS]].mean()
        for b in CI_BOUNDS:
            out[(m, f"ci_{b}")] = bounds[f"{m}_ci_{b}"].reindex(index).astype(float).to_numpy()
    return out


def _mean_sd(mean: float, sd: float, low: float = math.nan, high: float = math.nan) -> str:
    """'97.12% ± 0.53 [95.80, 98.30]' (sd and bounds in percent); a single seed shows no ±, a
    run without intervals no brackets."""
    if pd.isna(mean):
        return "—"
    return (f"{mean * 100:.2f}%" + ("" if pd.isna(sd) else f" ± {sd * 100:.2f}")
            + ("" if pd.isna(low) or pd.isna(high) else f" [{low * 100:.2f}, {high * 100:.2f}]"))


def _strategy_cell(row: pd.Series, m: str) -> str:
    get = lambda st: row.get((m, st), math.nan)  # noqa: E731
    return _mean_sd(get("mean"), get("sd"), get("ci_low"), get("ci_high"))


STRATEGY_NOTE = ("Cells: mean over seeds ± sample standard deviation over seeds (percentage "
                 "points; no ± with one seed), then in brackets each run's 95% test-set interval "
                 "(percentile bootstrap over the test images), its bounds averaged over the "
                 "seeds: the ± is what training randomness moves, the brackets what the test set's "
                 "size leaves open. — = no complete run.")


def strategy_table_markdown(df: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """Markdown of :func:`strategy_table`, one cell per metric as ``mean ± sd`` (``names``:
    column headers per metric, e.g. seed 001's 'macro accuracy' for ``recall``)."""
    metrics = [m for m in dict.fromkeys(c[0] for c in df.columns) if m != "n_seeds"]
    names = {**METRIC_NAMES, **(names or {})}
    headers = ["Dataset", "Model", "Strategy", "Seeds"] + [names.get(m, m) for m in metrics]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    previous: tuple = (None, None)
    for (dataset, model, strategy), row in df.iterrows():
        cells = [dataset_name(dataset) if dataset != previous[0] else "",
                 str(model) if (dataset, model) != previous else "", str(strategy),
                 str(int(row[("n_seeds", "")]))]
        previous = (dataset, model)
        cells += [_strategy_cell(row, m) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    note = STRATEGY_NOTE + " Precision, recall and F1 are macro averages on the test split."
    return "\n".join(lines) + "\n\n" + note + "\n"


def format_strategy_table(df: pd.DataFrame):
    """A notebook-ready Styler of :func:`strategy_table` (``mean ± sd`` per metric), or the
    markdown text when pandas' Styler is unavailable."""
    metrics = [m for m in dict.fromkeys(c[0] for c in df.columns) if m != "n_seeds"]
    shown = pd.DataFrame(
        {METRIC_NAMES.get(m, m): [_strategy_cell(r, m) for _, r in df.iterrows()]
         for m in metrics}, index=df.index)
    shown.insert(0, "Seeds", df[("n_seeds", "")].astype(int).to_numpy())
    shown.index = pd.MultiIndex.from_tuples([(dataset_name(d), m, s) for d, m, s in df.index],
                                            names=["Dataset", "Model", "Strategy"])
    try:
        styler = shown.style
    except ImportError:
        return strategy_table_markdown(df)
    return styler.set_caption(STRATEGY_NOTE)


def _pct(value: float) -> str:
    return "—" if pd.isna(value) else f"{value * 100:.2f}%"


def _pp(value: float) -> str:
    return "—" if pd.isna(value) else f"{value * 100:+.2f}"


def _interval(intervals: pd.DataFrame | None, key: tuple, metric: str) -> str:
    """' [95.10, 98.40]' (percent) when an interval exists for this cell, else ''."""
    if intervals is None or key not in intervals.index or (metric, "low") not in intervals.columns:
        return ""
    low, high = intervals.loc[key, (metric, "low")], intervals.loc[key, (metric, "high")]
    if pd.isna(low) or pd.isna(high):
        return ""
    return f" [{low * 100:.2f}, {high * 100:.2f}]"


def _display_frame(df: pd.DataFrame, intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """Readable labels: dataset names as the paper prints them, metric names as its headers;
    with ``intervals`` our cells become text ``'97.12% [95.10, 98.40]'``."""
    out = df.copy()
    if intervals is not None:
        out = out.astype(object)
        for key in df.index:
            for m in dict.fromkeys(c[0] for c in df.columns):
                out.loc[key, (m, "ours")] = _pct(df.loc[key, (m, "ours")]) + _interval(
                    intervals, key, m)
    out.index = pd.MultiIndex.from_tuples([(dataset_name(d), m) for d, m in df.index],
                                          names=["Dataset", "Model"])
    out.columns = pd.MultiIndex.from_tuples(
        [(METRIC_NAMES.get(m, m), "Δ (pp)" if s == "diff" else s) for m, s in df.columns],
        names=["metric", ""])
    return out


TABLE_II_CAPTION = "Table II: ours vs the paper (Δ = ours − paper, percentage points)"


def format_table_ii(df: pd.DataFrame, intervals: pd.DataFrame | None = None,
                    caption: str = TABLE_II_CAPTION):
    """A notebook-ready Styler (percent, 2 decimals; diff in percentage points; our cells with
    their 95% interval when ``intervals`` are given), or the markdown text when pandas' Styler
    is unavailable (it needs jinja2)."""
    shown = _display_frame(df, intervals)
    try:
        styler = shown.style
    except ImportError:
        return table_ii_markdown(df, intervals, caption)
    diff_cols = [c for c in shown.columns if c[1] == "Δ (pp)"]
    text_cols = [c for c in shown.columns if c[1] == "ours"] if intervals is not None else []
    value_cols = [c for c in shown.columns if c not in diff_cols and c not in text_cols]
    return (styler.format(_pct, subset=value_cols).format(_pp, subset=diff_cols)
            .set_caption(caption))


def table_ii_markdown(df: pd.DataFrame, intervals: pd.DataFrame | None = None,
                      caption: str = "") -> str:
    """Markdown, one cell per metric as ``ours / paper (Δ pp)``, so it fits a README or a log;
    with ``intervals`` (:func:`table_ii_intervals`) ``ours [low, high] / paper (Δ pp)``.
    ``caption`` goes above the table in bold."""
    headers = ["Dataset", "Model"] + [METRIC_NAMES.get(m, m) for m in METRICS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    previous = None
    for (dataset, model), row in df.iterrows():
        cells = [dataset_name(dataset) if dataset != previous else "", str(model)]
        previous = dataset
        for m in METRICS:
            ours, paper, diff = (row[(m, s)] for s in SOURCES)
            cells.append(f"{_pct(ours)}{_interval(intervals, (dataset, model), m)} / "
                         f"{_pct(paper)} ({_pp(diff)})")
        lines.append("| " + " | ".join(cells) + " |")
    note = ("Cells: ours" + (" [95% interval]" if intervals is not None else "")
            + " / paper (ours − paper, percentage points); — = no value. The paper prints "
            "precision, recall and F1 (macro here) as whole percents.")
    head = f"**{caption}**\n\n" if caption else ""
    return head + "\n".join(lines) + "\n\n" + note + "\n"
