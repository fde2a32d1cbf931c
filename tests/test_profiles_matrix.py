"""Profiles as a datasets x models x strategies x seeds matrix: expansion, run names, override
precedence, and the strategy table (mean and sample SD over seeds) on hand-written run folders."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medtl_lib import orchestration as profiles
from medtl_lib.config import RunConfig
from medtl_lib.evaluation.report import (
    collect_runs,
    complete_runs,
    load_run,
    strategy_table,
    strategy_table_markdown,
    table_ii,
    varies_strategy_or_seed,
)


def profile(tmp_path: Path, text: str) -> profiles.Profile:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\n" + text)
    return profiles.load_profile(path, runs_dir=tmp_path / "runs")


def names(p: profiles.Profile) -> list[str]:
    return [p.run_name(r) for r in p.runs]


# --- expansion and names -------------------------------------------------------------------

def test_matrix_is_datasets_x_models_x_strategies_x_seeds(tmp_path):
    p = profile(tmp_path, "datasets: [sarscov2_ct, brain_tumor_mri]\n"
                          "models: [resnet, vit_star]\n"
                          "strategies: [full, linear_probe, lp_ft]\n"
                          "seeds: [0, 1]\n")
    assert len(p.runs) == 2 * 2 * 3 * 2
    assert (p.strategies, p.seeds, p.legacy_names) == (["full", "linear_probe", "lp_ft"], [0, 1],
                                                       False)
    assert names(p)[:3] == ["sarscov2_ct__resnet__full__s0", "sarscov2_ct__resnet__full__s1",
                            "sarscov2_ct__resnet__linear_probe__s0"]
    assert {(r.dataset, r.model, r.strategy, r.seed) for r in p.runs} == {
        (d, m, s, seed) for d in ("sarscov2_ct", "brain_tumor_mri") for m in ("resnet", "vit_star")
        for s in ("full", "linear_probe", "lp_ft") for seed in (0, 1)}
    outs = [Path(r.out) for r in p.runs]
    assert len(set(outs)) == len(outs)  # never two runs in one folder
    assert all(o.parent == p.out_root and o.name == n for o, n in zip(outs, names(p)))
    assert p.shape() == "24 run(s) = 2 datasets x 2 models x 3 strategies x 2 seeds"


def test_defaults_full_and_one_seed_keep_the_old_names(tmp_path):
    p = profile(tmp_path, "datasets: [brain_tumor_mri]\nmodels: [resnet, densenet]\n")
    assert (p.strategies, p.seeds, p.legacy_names) == (["full"], [42], True)
    assert names(p) == ["brain_tumor_mri__resnet", "brain_tumor_mri__densenet"]
    assert [Path(r.out).name for r in p.runs] == names(p)
    assert all(r.strategy == "full" and r.seed == 42 for r in p.runs)
    # the seed in defaults is the profile's one seed; still the old names
    p = profile(tmp_path, "datasets: [brain_tumor_mri]\nmodels: [resnet]\ndefaults: {seed: 7}\n")
    assert (p.seeds, names(p), p.runs[0].seed) == ([7], ["brain_tumor_mri__resnet"], 7)
    # the committed profiles without strategies keep resuming their folders
    smoke = profiles.load_profile("smoke", runs_dir=tmp_path / "r")
    assert smoke.legacy_names and "brain_tumor_mri__efficientnet_lite0" in names(smoke)


@pytest.mark.parametrize("axes, legacy", [
    ("strategies: [full]\nseeds: [3]\n", True),
    ("strategies: [full]\nseeds: [0, 1]\n", False),
    ("strategies: [linear_probe]\n", False),
    ("strategies: [full, lp_ft]\n", False),
])
def test_new_names_unless_full_with_one_seed(tmp_path, axes, legacy):
    p = profile(tmp_path, "datasets: [sarscov2_ct]\nmodels: [resnet]\n" + axes)
    assert p.legacy_names is legacy
    for r in p.runs:
        expected = ("sarscov2_ct__resnet" if legacy
                    else f"sarscov2_ct__resnet__{r.strategy}__s{r.seed}")
        assert p.run_name(r) == expected == Path(r.out).name


def test_run_name_both_forms_and_distinct_folders():
    a = RunConfig(dataset="sarscov2_ct", model="resnet", strategy="full", seed=0)
    b = RunConfig(dataset="sarscov2_ct", model="resnet", strategy="lp_ft", seed=0)
    c = RunConfig(dataset="sarscov2_ct", model="resnet", strategy="full", seed=1)
    assert profiles.run_name(a, legacy=True) == "sarscov2_ct__resnet"
    assert profiles.run_name(a, legacy=False) == "sarscov2_ct__resnet__full__s0"
    assert len({profiles.run_name(x, legacy=False) for x in (a, b, c)}) == 3


def test_smoke_strategies_profile(tmp_path):
    p = profiles.load_profile("smoke_strategies", runs_dir=tmp_path / "runs",
                                 data_root=tmp_path / "data")
    assert len(p.runs) == 16 and not p.legacy_names
    assert {r.strategy for r in p.runs} == {"full", "linear_probe", "gradual_lf", "gradual_fl",
                                            "lp_ft", "l1_sp", "l2_sp", "auto_rgn"}
    assert {r.seed for r in p.runs} == {0, 1} and {r.model for r in p.runs} == {"efficientnet_lite0"}
    assert all(r.epochs == 3 and r.img_size <= 64 for r in p.runs)
    expected = {"lp_ft": {"lp_epochs": 1}, "auto_rgn": {"rgn_batches": 2}}
    assert all(r.strategy_args == expected.get(r.strategy, {}) for r in p.runs)
    assert all(r.data_dir == str((tmp_path / "data" / "synthetic" / r.dataset).resolve())
               for r in p.runs)


# --- overrides -----------------------------------------------------------------------------

def test_override_precedence_more_specific_wins(tmp_path):
    # every level sets batch_size to its own value; each run must get its most specific one
    p = profile(tmp_path, """\
datasets: [sarscov2_ct, brain_tumor_mri]
models: [resnet, densenet]
strategies: [full, lp_ft]
defaults: {batch_size: 1}
overrides:
  sarscov2_ct: {batch_size: 2}
  resnet: {batch_size: 3}
  lp_ft: {batch_size: 4}
  brain_tumor_mri__densenet: {batch_size: 5}
  sarscov2_ct__lp_ft: {batch_size: 6}
  densenet__lp_ft: {batch_size: 7}
  brain_tumor_mri__resnet__lp_ft: {batch_size: 8}
""")
    got = {(r.dataset, r.model, r.strategy): r.batch_size for r in p.runs}
    assert got == {
        ("sarscov2_ct", "resnet", "full"): 3,  # model beats dataset
        ("sarscov2_ct", "resnet", "lp_ft"): 6,  # dataset__strategy beats every single name
        ("sarscov2_ct", "densenet", "full"): 2,
        ("sarscov2_ct", "densenet", "lp_ft"): 7,  # model__strategy beats dataset__strategy
        ("brain_tumor_mri", "resnet", "full"): 3,
        ("brain_tumor_mri", "resnet", "lp_ft"): 8,  # the full key beats all
        ("brain_tumor_mri", "densenet", "full"): 5,  # dataset__model beats single names
        ("brain_tumor_mri", "densenet", "lp_ft"): 7,  # model__strategy beats dataset__model
    }


def test_strategy_args_merge_key_by_key(tmp_path):
    p = profile(tmp_path, """\
datasets: [sarscov2_ct, brain_tumor_mri]
models: [resnet]
strategies: [full, lp_ft]
defaults: {epochs: 4, schedule: cosine, select_by: val_loss, schedule_args: {t_max: 4}}
overrides:
  lp_ft: {strategy_args: {lp_epochs: 1, ft_lr_factor: 0.5}}
  brain_tumor_mri__resnet__lp_ft:
    strategy_args: {lp_epochs: 2}
    schedule_args: {eta_min_factor: 0.1}
""")
    got = {(r.dataset, r.strategy): (r.strategy_args, r.schedule_args) for r in p.runs}
    assert got[("sarscov2_ct", "full")] == ({}, {"t_max": 4})
    assert got[("sarscov2_ct", "lp_ft")] == ({"lp_epochs": 1, "ft_lr_factor": 0.5}, {"t_max": 4})
    assert got[("brain_tumor_mri", "lp_ft")] == ({"lp_epochs": 2, "ft_lr_factor": 0.5},
                                                 {"t_max": 4, "eta_min_factor": 0.1})
    assert profiles.merge_fields({"strategy_args": {"x": 1}, "lr": 1.0},
                                    {"strategy_args": {"y": 2}, "lr": 2.0}) == {
        "strategy_args": {"x": 1, "y": 2}, "lr": 2.0}


@pytest.mark.parametrize("text, match", [
    ("overrides: {resnett: {batch_size: 8}}\n", "did you mean 'resnet'"),
    ("overrides: {resnet__sarscov2_ct: {batch_size: 8}}\n", "names no run"),
    ("overrides: {resnet: {seed: 3}}\n", "matrix sets"),
    ("overrides: {resnet: {strategy: lp_ft}}\n", "matrix sets"),
    ("overrides: {resnet: 8}\n", "must map"),
    ("seeds: [0, 0]\n", "twice"),
    ("seeds: [a]\n", "integers"),
    ("seeds: []\n", "integers"),
    ("strategies: [full, full]\n", "twice"),
    ("strategies: [no_such_strategy]\n", "strategy"),
    ("seeds: [1]\ndefaults: {seed: 1}\n", "either"),
    ("strategies: [full]\ndefaults: {strategy: full}\n", "either"),
    ("defaults: {model: vit}\n", "matrix sets"),
])
def test_profile_mistakes_are_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        profile(tmp_path, "datasets: [sarscov2_ct]\nmodels: [resnet]\n" + text)


# --- plan ----------------------------------------------------------------------------------

def test_only_globs_on_the_run_name_and_dry_run_lists_runs(tmp_path):
    p = profile(tmp_path, "datasets: [sarscov2_ct, brain_tumor_mri]\nmodels: [resnet]\n"
                          "strategies: [full, lp_ft]\nseeds: [0, 1]\n")
    steps = profiles.plan(p, only="*__lp_ft__*")
    trained = [s.name for s in steps if s.name.endswith("/03_train")]
    assert trained == [f"{d}__resnet__lp_ft__s{s}/03_train"
                       for d in ("sarscov2_ct", "brain_tumor_mri") for s in (0, 1)]
    step = next(s for s in steps if s.name == "brain_tumor_mri__resnet__lp_ft__s1/03_train")
    assert step.parameters["strategy"] == "lp_ft" and step.parameters["seed"] == 1
    assert step.output == p.out_root / "brain_tumor_mri__resnet__lp_ft__s1" / "03_train.ipynb"
    assert len([s for s in profiles.plan(p, only="*__s0") if "/" in s.name]) == 2 * 2 * 2
    with pytest.raises(ValueError, match="matches no run"):
        profiles.plan(p, only="*__s7")
    lines: list[str] = []
    profiles.run_profile(p, dry_run=True, log=lines.append)
    assert "8 run(s) = 2 datasets x 1 model x 2 strategies x 2 seeds" in lines[0]
    assert sum("03_train" in line and "would run" in line for line in lines) == 8


# --- reports over strategies and seeds -------------------------------------------------------

CLASSES = ["COVID", "non-COVID"]
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "phase", "c",
                   "s", "lr_factor", "save_best", "stop", "seconds"]


def _split(acc: float, f1: float) -> dict:
    cm = [[8, 2], [1, 9]]
    return {"n": 20, "accuracy": acc, "precision_macro": f1, "recall_macro": f1, "f1_macro": f1,
            "precision_weighted": f1, "recall_weighted": f1, "f1_weighted": f1,
            "balanced_accuracy": f1, "auroc_macro": None, "confusion_matrix": cm,
            "per_class": {c: {"precision": f1, "recall": f1, "f1": f1, "support": 10}
                          for c in CLASSES}}


def write_run(root: Path, name: str, test_acc: float, strategy: str | None = "full",
              seed: int = 0, model: str = "resnet", dataset: str = "sarscov2_ct",
              complete: bool = True) -> Path:
    """A run folder as train_run leaves it: config.yaml (RunConfig.save), history.csv,
    predictions and metrics.json (written last, status complete). ``strategy=None`` writes a
    config from before strategies (no strategy key)."""
    out = root / name
    out.mkdir(parents=True)
    cfg = RunConfig(dataset=dataset, model=model, strategy=strategy or "full", seed=seed,
                    epochs=2, lr=1e-3, img_size=64, out=str(out))
    cfg.save(out / "config.yaml")
    if strategy is None:
        d = cfg.to_dict()
        d.pop("strategy")
        d.pop("strategy_args")
        (out / "config.yaml").write_text(json.dumps(d))  # JSON is YAML
    pd.DataFrame([(1, 0.6, 0.7, 0.55, 0.7, 1e-3, "train_acc", 0, 0, 1.0, True, False, 1.0),
                  (2, 0.4, 0.9, 0.50, 0.8, 1e-3, "val_loss", 0, 0, 1.0, True, False, 1.0)],
                 columns=HISTORY_COLUMNS).to_csv(out / "history.csv", index=False)
    if not complete:
        return out
    header = "path,label,pred," + ",".join(f"prob_{c}" for c in CLASSES)
    for s in ("train", "val", "test"):
        (out / f"predictions_{s}.csv").write_text(header + "\n")
    metrics = {"train": _split(0.9, 0.9), "val": _split(0.8, 0.8),
               "test": _split(test_acc, test_acc - 0.01),
               "epochs_run": 2, "stopped_early": False, "best_epoch": 2,
               "train_acc_at_best_epoch": 0.9, "class_names": CLASSES, "model": model,
               "timm_name": "x", "weights_source": "offline:pkg", "device": "CPU",
               "seconds": 5.0, "status": "complete"}
    (out / "metrics.json").write_text(json.dumps(metrics))
    return out


@pytest.fixture()
def seeds_profile(tmp_path: Path) -> Path:
    root = tmp_path / "runs" / "p"
    for seed, acc in enumerate((0.90, 0.94, 0.95)):
        write_run(root, f"sarscov2_ct__resnet__full__s{seed}", acc, "full", seed)
    for seed, acc in enumerate((0.80, 0.86)):
        write_run(root, f"sarscov2_ct__resnet__lp_ft__s{seed}", acc, "lp_ft", seed)
    write_run(root, "sarscov2_ct__resnet__lp_ft__s2", 0, "lp_ft", 2, complete=False)
    write_run(root, "sarscov2_ct__resnet__linear_probe__s0", 0.70, "linear_probe", 0)
    write_run(root, "sarscov2_ct__resnet__linear_probe__s1", 0, "linear_probe", 1,
              complete=False)
    write_run(root, "brain_tumor_mri__densenet__linear_probe__s0", 0, "linear_probe", 0,
              dataset="brain_tumor_mri", model="densenet", complete=False)
    return root


def test_run_rows_carry_strategy_and_seed(seeds_profile: Path, tmp_path: Path):
    runs = collect_runs(seeds_profile)
    assert len(runs) == 9
    row = runs.set_index("path").loc[str(seeds_profile / "sarscov2_ct__resnet__lp_ft__s1")]
    assert (row["strategy"], row["seed"], row["test_acc"]) == ("lp_ft", 1, 0.86)
    run = load_run(seeds_profile / "sarscov2_ct__resnet__lp_ft__s1")
    assert (run["strategy"], run["seed"], run["label"]) == ("lp_ft", 1, "ResNet")
    # a folder from before strategies: full, the seed from its config
    old = write_run(tmp_path / "old", "sarscov2_ct__resnet", 0.9, strategy=None, seed=42)
    row = collect_runs(old).iloc[0]
    assert (row["strategy"], row["seed"], row["status"]) == ("full", 42, "complete")
    # no config.yaml at all: the folder name says it
    bare = tmp_path / "bare"
    (bare / "breakhis_400x__vit__lp_ft__s3").mkdir(parents=True)
    (bare / "breakhis_400x__vit").mkdir()
    rows = collect_runs(bare).set_index("path")
    a = rows.loc[str(bare / "breakhis_400x__vit__lp_ft__s3")]
    assert (a["dataset"], a["model"], a["strategy"], a["seed"]) == ("breakhis_400x", "vit",
                                                                    "lp_ft", 3)
    b = rows.loc[str(bare / "breakhis_400x__vit")]
    assert (b["dataset"], b["model"], b["strategy"]) == ("breakhis_400x", "vit", "full")
    assert math.isnan(b["seed"])


def test_strategy_table_mean_and_sample_sd(seeds_profile: Path):
    runs = collect_runs(seeds_profile)
    t = strategy_table(runs)
    assert list(t.index) == [("sarscov2_ct", "ResNet", "full"),
                             ("sarscov2_ct", "ResNet", "linear_probe"),
                             ("sarscov2_ct", "ResNet", "lp_ft"),
                             ("brain_tumor_mri", "DenseNet", "linear_probe")]
    full = t.loc[("sarscov2_ct", "ResNet", "full")]
    assert full[("n_seeds", "")] == 3
    assert full[("test_acc", "mean")] == pytest.approx(statistics.mean([0.90, 0.94, 0.95]))
    assert full[("test_acc", "sd")] == pytest.approx(statistics.stdev([0.90, 0.94, 0.95]))
    assert full[("f1", "mean")] == pytest.approx(statistics.mean([0.89, 0.93, 0.94]))
    assert full[("train_acc", "sd")] == pytest.approx(0.0)  # equal seeds: a real 0
    lpft = t.loc[("sarscov2_ct", "ResNet", "lp_ft")]  # the unfinished third seed is left out
    assert lpft[("n_seeds", "")] == 2
    assert lpft[("test_acc", "mean")] == pytest.approx(0.83)
    assert lpft[("test_acc", "sd")] == pytest.approx(statistics.stdev([0.80, 0.86]))
    one = t.loc[("sarscov2_ct", "ResNet", "linear_probe")]
    assert one[("n_seeds", "")] == 1 and one[("test_acc", "mean")] == pytest.approx(0.70)
    assert np.isnan(one[("test_acc", "sd")])  # one seed: no spread, not 0
    none = t.loc[("brain_tumor_mri", "DenseNet", "linear_probe")]
    assert none[("n_seeds", "")] == 0 and np.isnan(none[("test_acc", "mean")])
    md = strategy_table_markdown(t)
    sd = statistics.stdev([0.90, 0.94, 0.95]) * 100
    assert (f"| SARS-COV-2 | ResNet | full | 3 | 90.00% ± 0.00 | 80.00% ± 0.00 | "
            f"93.00% ± {sd:.2f} |") in md
    assert "|  |  | linear_probe | 1 | 90.00% | 80.00% | 70.00% | 69.00% | 69.00% | 69.00% |" in md
    assert "| Brain Tumor | DenseNet | linear_probe | 0 | — |" in md
    assert strategy_table(runs.iloc[:0]).empty


def test_table_ii_takes_full_runs_averaged_over_seeds(seeds_profile: Path):
    runs = collect_runs(seeds_profile)
    t = table_ii(runs)
    assert list(t.index) == [("sarscov2_ct", "ResNet")]  # the lp_ft / linear_probe rows are not
    ours = t.loc[("sarscov2_ct", "ResNet")]
    assert ours[("test_acc", "ours")] == pytest.approx(statistics.mean([0.90, 0.94, 0.95]))
    assert ours[("test_acc", "diff")] == pytest.approx(statistics.mean([0.90, 0.94, 0.95])
                                                       - 0.9679)
    lp = table_ii(runs, strategy="lp_ft").loc[("sarscov2_ct", "ResNet")]
    assert lp[("test_acc", "ours")] == pytest.approx(0.83)
    # a frame from before strategies (no strategy column) still reads as full runs
    legacy = runs[runs["strategy"] == "full"].drop(columns=["strategy"])
    assert table_ii(legacy).loc[("sarscov2_ct", "ResNet"), ("test_acc", "ours")] == (
        pytest.approx(ours[("test_acc", "ours")]))


def test_figures_get_one_run_per_strategy_and_the_switch(seeds_profile: Path, tmp_path: Path):
    runs = collect_runs(seeds_profile)
    loaded = complete_runs(runs)
    assert set(loaded) == {("sarscov2_ct", "ResNet"), ("sarscov2_ct", "ResNet · lp_ft"),
                           ("sarscov2_ct", "ResNet · linear_probe")}
    assert loaded[("sarscov2_ct", "ResNet")]["seed"] == 0  # the lowest seed
    assert varies_strategy_or_seed(runs)
    one = tmp_path / "one"
    write_run(one, "sarscov2_ct__resnet", 0.9)
    write_run(one, "sarscov2_ct__densenet", 0.9, model="densenet")
    assert not varies_strategy_or_seed(collect_runs(one))
    seeds = tmp_path / "seeds"
    write_run(seeds, "sarscov2_ct__resnet__full__s0", 0.9, seed=0)
    write_run(seeds, "sarscov2_ct__resnet__full__s1", 0.9, seed=1)
    assert varies_strategy_or_seed(collect_runs(seeds))


def test_plugins_key_loads_the_plugins_before_the_runs(tmp_path):
    """``plugins:`` loads each plugin (medtl_lib.plugins) when the profile is read; a missing one
    is a one-line error of ``medtl run`` (exit code 2)."""
    from medtl_lib.plugins import loaded_plugins

    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("LOADED = True\n")
    path = tmp_path / "p.yaml"
    path.write_text(f"datasets: [brain_tumor_mri]\nmodels: [resnet]\nplugins: [{plugin}]\n")
    p = profiles.load_profile(path, runs_dir=tmp_path / "runs")
    assert p.plugins == [str(plugin)] and str(plugin.resolve()) in loaded_plugins()
    assert len(p.runs) == 1
    # the notebooks' kernels load them too: 03 trains with them, 04 rebuilds the model with them
    steps = {step.name.rsplit("/", 1)[-1]: step for step in profiles.plan(p)}
    assert steps["03_train"].parameters["plugins"] == [str(plugin)]
    assert steps["04_evaluate"].parameters["plugins"] == [str(plugin)]
    assert "plugins" not in steps["00_setup"].parameters
    missing = tmp_path / "q.yaml"
    missing.write_text("datasets: [brain_tumor_mri]\nmodels: [resnet]\n"
                       "plugins: [no_such_module_for_medtl]\n")
    with pytest.raises(ImportError, match="no_such_module_for_medtl"):
        profiles.load_profile(missing, runs_dir=tmp_path / "runs")
    assert profiles.main([str(missing), "--dry-run", "--runs-dir", str(tmp_path)]) == 2
    with pytest.raises(ValueError, match="'plugins' must be a list of names"):
        bad = tmp_path / "r.yaml"
        bad.write_text("datasets: [brain_tumor_mri]\nmodels: [resnet]\nplugins: {a: 1}\n")
        profiles.load_profile(bad, runs_dir=tmp_path / "runs")
