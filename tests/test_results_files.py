"""The results tables as files (results.csv, table_ii.csv), their intervals, the split protocol
and synthetic labels, and notebook 06's chart, from hand-written run folders."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from medtl_lib import orchestration as profiles
from medtl_lib.evaluation import plots
from medtl_lib.evaluation.leakage_table import (
    leakage_alt,
    leakage_markdown,
    leakage_table,
    read_leakage_table,
    write_leakage_table,
)
from medtl_lib.evaluation.report import (
    PROTOCOLS,
    SYNTHETIC_NOTE,
    collect_runs,
    is_synthetic_data,
    paper_table,
    split_protocol,
    strategy_table,
    strategy_table_markdown,
    table_ii,
    table_ii_intervals,
    table_ii_markdown,
)
from medtl_lib.evaluation.results_files import results_table, table_ii_file, write_results_files
from medtl_lib.intervals import bootstrap, ci95, confusion_ci95
from results_support import BRAIN, fake_predictions, make_standin, write_run


@pytest.fixture()
def standin(tmp_path: Path) -> Path:
    return make_standin(tmp_path / "data")


@pytest.fixture()
def real_root(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "brain_tumor_mri"
    root.mkdir(parents=True)
    return root


@pytest.fixture()
def profile(tmp_path: Path, real_root: Path) -> Path:
    root = tmp_path / "runs" / "paper"
    write_run(root, "brain_tumor_mri", "resnet", BRAIN, 0.95, real_root)
    write_run(root, "sarscov2_ct", "efficientnet_lite0", ["COVID", "non-COVID"], 0.8, real_root)
    return root


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --- identity of a run: split protocol, data, intervals -----------------------------------

def test_split_protocol_labels_say_which_split():
    assert split_protocol("none") == "image-level split, as the paper"
    assert split_protocol("duplicates") == "grouped split, leakage-corrected"
    assert split_protocol("patient") == PROTOCOLS["duplicates"]
    assert split_protocol(None) == "split not recorded"


def test_synthetic_data_is_recognised_by_its_stamp(standin: Path, real_root: Path):
    assert is_synthetic_data(standin.parent) and is_synthetic_data(standin)
    assert is_synthetic_data(standin / "glioma")  # BreaKHis' class root sits deeper still
    assert not is_synthetic_data(real_root) and not is_synthetic_data("")


def test_run_rows_carry_intervals_split_and_data(tmp_path: Path, standin: Path, real_root: Path):
    root = tmp_path / "runs" / "p"
    write_run(root, "brain_tumor_mri", "resnet", BRAIN, 0.9, standin, group_by="duplicates")
    write_run(root, "sarscov2_ct", "resnet", ["COVID", "non-COVID"], 0.9, real_root)
    runs = collect_runs(root).set_index("dataset")
    brain, ct = runs.loc["brain_tumor_mri"], runs.loc["sarscov2_ct"]
    assert brain["synthetic"] and not ct["synthetic"]
    assert brain["split"] == "grouped split, leakage-corrected"
    assert ct["split"] == "image-level split, as the paper"
    m = json.loads((root / "brain_tumor_mri__resnet" / "metrics.json").read_text())["test"]
    assert brain["test_acc_ci_low"] == m["ci95"]["accuracy"]["low"]
    assert brain["recall_ci_high"] == m["ci95"]["sensitivity_macro"]["high"]
    assert brain["precision_ci_low"] <= brain["precision"] <= brain["precision_ci_high"]
    assert "2000 resamples" in brain["ci_method"]


def test_confusion_intervals_are_ci95s_and_the_bootstrap_of_the_macro_f1():
    labels, probs = fake_predictions(90, 3, 0.7, seed=3)

    def macro_f1(y, p):
        return f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)

    expected = bootstrap(labels, probs, macro_f1, n_boot=300, seed=5)  # same resamples, by seed
    got = confusion_ci95(labels, probs.argmax(1), 3, n_boot=300, seed=5)
    assert (got["f1_macro"]["low"], got["f1_macro"]["high"]) == pytest.approx(expected)
    assert got["f1_macro"]["low"] < macro_f1(labels, probs) < got["f1_macro"]["high"]
    full = ci95(labels, probs, n_boot=300, seed=5)  # from predicted classes alone: the same
    for name, entry in got.items():
        for key in ("value", "low", "high", "method"):
            assert entry[key] == pytest.approx(full[name][key]) if key != "method" else \
                entry[key] == full[name][key]


def test_a_run_recorded_without_intervals_gets_them_from_its_predictions(profile: Path):
    run = profile / "brain_tumor_mri__resnet"
    before = collect_runs(profile).set_index("dataset").loc["brain_tumor_mri"]
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["test"]["ci95"]  # a run from before metrics.json kept ci95
    (run / "metrics.json").write_text(json.dumps(metrics))
    after = collect_runs(profile).set_index("dataset").loc["brain_tumor_mri"]
    for m in ("test_acc", "precision", "recall", "f1"):
        assert after[f"{m}_ci_low"] == pytest.approx(before[f"{m}_ci_low"])
        assert after[f"{m}_ci_high"] == pytest.approx(before[f"{m}_ci_high"])
        assert after[f"{m}_ci_low"] < after[m] < after[f"{m}_ci_high"]
    (run / "predictions_test.csv").unlink()  # nothing to recompute from: no interval, no error
    gone = collect_runs(profile).set_index("dataset").loc["brain_tumor_mri"]
    assert np.isnan(gone["test_acc_ci_low"]) and gone["test_acc"] == after["test_acc"]


# --- results.csv and table_ii.csv ---------------------------------------------------------

def test_results_csv_one_row_per_run_with_every_metric(profile: Path):
    files = write_results_files(profile)
    assert set(files) == {"results.csv", "table_ii.csv"}
    results = pd.read_csv(files["results.csv"])
    assert sorted(results["run"]) == ["brain_tumor_mri__resnet", "sarscov2_ct__efficientnet_lite0"]
    assert "path" not in results.columns  # the file names run folders, no machine paths
    row = results.set_index("run").loc["brain_tumor_mri__resnet"]
    m = json.loads((profile / "brain_tumor_mri__resnet" / "metrics.json").read_text())["test"]
    assert row["test_acc"] == pytest.approx(m["accuracy"], abs=1e-6)
    assert row["test_auroc_macro"] == pytest.approx(m["auroc_macro"], abs=1e-6)
    assert row["test_f1_weighted"] == pytest.approx(m["f1_weighted"], abs=1e-6)
    for name, entry in m["ci95"].items():  # every interval metrics.json holds
        assert row[f"test_{name}_ci_low"] == pytest.approx(entry["low"], abs=1e-6)
        assert row[f"test_{name}_ci_high"] == pytest.approx(entry["high"], abs=1e-6)
    assert row["f1_ci_low"] < row["f1"] < row["f1_ci_high"]
    assert row["split"] == "image-level split, as the paper" and not row["synthetic"]
    assert row["test_n"] == 80


def test_table_ii_csv_keeps_the_papers_layout_with_its_cells(profile: Path):
    t = pd.read_csv(write_results_files(profile)["table_ii.csv"])
    # the paper's 15 rows in its order, plus the model it did not train (Lite0)
    assert len(t) == 16
    assert list(t["model"][:5]) == ["ResNet", "DenseNet", "ConvNeXt", "ViT", "ViT*"]
    assert t["dataset_name"].iloc[0] == "SARS-COV-2"
    paper = paper_table()
    by = t.set_index(["dataset", "model"])
    # a model the profile did not run keeps the paper's cells and has none of ours
    densenet = by.loc[("breakhis_400x", "DenseNet")]
    expected = paper.loc[("breakhis_400x", "DenseNet"), "test_acc"]
    assert densenet["test_acc_paper"] == pytest.approx(expected)
    assert np.isnan(densenet["test_acc_ours"]) and densenet["n_runs"] == 0
    resnet = by.loc[("brain_tumor_mri", "ResNet")]
    assert resnet["n_runs"] == 1
    assert resnet["test_acc_diff"] == pytest.approx(resnet["test_acc_ours"] - 0.9855, abs=1e-5)
    assert (resnet["test_acc_ours_ci_low"] < resnet["test_acc_ours"]
            < resnet["test_acc_ours_ci_high"])
    assert resnet["f1_ours_ci_low"] < resnet["f1_ours"] < resnet["f1_ours_ci_high"]
    assert np.isnan(resnet["train_acc_ours_ci_low"])  # only the test split is resampled
    lite = by.loc[("sarscov2_ct", "EfficientNet-Lite0")]
    assert np.isnan(lite["test_acc_paper"]) and not np.isnan(lite["test_acc_ours"])


def test_seeds_averaged_get_no_interval_of_their_own(tmp_path: Path, real_root: Path):
    root = tmp_path / "runs" / "seeds"
    for seed in (1, 2):
        write_run(root, "brain_tumor_mri", "resnet", BRAIN, 0.9, real_root, seed=seed,
                  folder=f"brain_tumor_mri__resnet__full__s{seed}")
    t = table_ii_file(collect_runs(root)).set_index(["dataset", "model"])
    row = t.loc[("brain_tumor_mri", "ResNet")]
    assert row["n_runs"] == 2 and np.isnan(row["test_acc_ours_ci_low"])
    # the strategy table shows the seeds' spread beside their intervals, bounds averaged
    runs = collect_runs(root)
    st = strategy_table(runs).loc[("brain_tumor_mri", "ResNet", "full")]
    for b in ("low", "high"):
        assert st[("f1", f"ci_{b}")] == pytest.approx(runs[f"f1_ci_{b}"].mean())
    assert st[("test_acc", "ci_low")] < st[("test_acc", "mean")] < st[("test_acc", "ci_high")]
    md = strategy_table_markdown(strategy_table(runs))
    cell = (f"{st[('f1', 'mean')] * 100:.2f}% ± {st[('f1', 'sd')] * 100:.2f} "
            f"[{st[('f1', 'ci_low')] * 100:.2f}, {st[('f1', 'ci_high')] * 100:.2f}]")
    assert cell in md and "95% test-set interval" in md


def test_table_ii_markdown_shows_intervals_and_caption(profile: Path):
    runs = collect_runs(profile)
    t = table_ii(runs, all_paper_rows=True)
    iv = table_ii_intervals(runs, t)
    md = table_ii_markdown(t, iv, caption="Table II — image-level split, as the paper")
    assert md.startswith("**Table II — image-level split, as the paper**")
    r = runs.set_index("dataset").loc["brain_tumor_mri"]
    cell = (f"{r['test_acc'] * 100:.2f}% [{r['test_acc_ci_low'] * 100:.2f}, "
            f"{r['test_acc_ci_high'] * 100:.2f}] / 98.55% ({(r['test_acc'] - 0.9855) * 100:+.2f})")
    assert cell in md
    assert "| ConvNeXt | — / 99.96% (—) |" in md  # the paper's row for a model not run
    assert "[95% interval]" in md


def test_results_table_of_an_unfinished_run_keeps_its_row(profile: Path):
    (profile / "breakhis_400x__vit").mkdir()
    (profile / "breakhis_400x__vit" / "config.yaml").write_text(
        "dataset: breakhis_400x\nmodel: vit\n")
    results = results_table(collect_runs(profile)).set_index("run")
    assert results.loc["breakhis_400x__vit", "status"] == "incomplete"
    assert np.isnan(results.loc["breakhis_400x__vit", "test_acc"])


# --- notebook 06: the leakage table and its chart -----------------------------------------

def test_leakage_table_and_file(tmp_path: Path, standin: Path):
    out = tmp_path / "leakage"
    runs = {g: write_run(out, "brain_tumor_mri", "lite0", BRAIN, acc, standin, group_by=g,
                         folder=f"brain__{g}") for g, acc in (("none", 0.95), ("duplicates", 0.85))}
    dup = pd.DataFrame({"group": ["g1", "g1", "g2", "g2"],
                        "path": ["img0.png", "img100.png", "img1.png", "img2.png"]})
    table = leakage_table(runs, dup)
    assert list(table.index) == ["image-level split, as the paper",
                                 "grouped split, leakage-corrected"]
    # img0 (test) has a copy img100 (train); img1 and img2 are both test images
    assert list(table["leaked_test_images"]) == [1, 1]
    assert table["synthetic"].all() and (table["test_images"] == 80).all()
    write_leakage_table(table, out)
    back = read_leakage_table(out)
    pd.testing.assert_frame_equal(back[["test_acc", "test_acc_ci_low"]],
                                  table[["test_acc", "test_acc_ci_low"]], atol=1e-5)
    assert read_leakage_table(tmp_path / "nothing") is None
    assert "image-level split, as the paper | 0.9" in leakage_markdown(table)
    alt = leakage_alt(table)
    assert "from 0 to 100%" in alt and "95% interval" in alt


def test_leakage_chart_starts_at_zero_and_shows_the_intervals():
    table = pd.DataFrame({"test_acc": [0.91, 0.84], "test_acc_ci_low": [0.86, 0.78],
                          "test_acc_ci_high": [0.95, 0.89]},
                         index=["image-level split, as the paper",
                                "grouped split, leakage-corrected"])
    fig = plots.plot_leakage(table, title="Leakage", synthetic=True)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 1.0)
    bars = [p for p in ax.patches]
    assert [b.get_width() for b in bars] == pytest.approx([0.91, 0.84])
    assert all(b.get_x() == 0 for b in bars)
    segments = [s for c in ax.collections if c.get_gid() == plots.GID_CI for s in c.get_segments()]
    assert len(segments) == 2
    spans = sorted((min(s[:, 0]), max(s[:, 0])) for s in segments)
    assert spans == [pytest.approx((0.78, 0.89)), pytest.approx((0.86, 0.95))]
    assert SYNTHETIC_NOTE in fig._suptitle.get_text()
    assert [t.get_text() for t in ax.get_yticklabels()] == list(table.index)


def test_leakage_chart_without_intervals_and_empty():
    table = pd.DataFrame({"test_acc": [0.05]}, index=["image-level split, as the paper"])
    ax = plots.plot_leakage(table).axes[0]
    assert ax.get_xlim()[0] == 0 and not [c for c in ax.collections if c.get_gid() == plots.GID_CI]
    assert ax.texts[0].get_position()[0] > 0.05  # a short bar gets its value after it
    with pytest.raises(ValueError):
        plots.plot_leakage(table.iloc[:0])


def test_show_figure_needs_alt_text(tmp_path: Path):
    fig = plots.plot_leakage(pd.DataFrame({"test_acc": [0.5]}, index=["x"]))
    with pytest.raises(ValueError):
        plots.show_figure(fig, "  ")
    path = plots.show_figure(fig, "a bar", tmp_path / "leak.png")  # no IPython: saves only
    assert path.read_bytes()[:4] == b"\x89PNG"


# --- the paper profile and its twin --------------------------------------------------------

def test_paper_profile_runs_the_papers_split_and_its_twin_the_grouped_one(tmp_path: Path):
    paper = profiles.load_profile("paper", runs_dir=tmp_path, data_root=tmp_path)
    twin = profiles.load_profile(paper.twin, runs_dir=tmp_path, data_root=tmp_path)
    assert twin.name == "paper_grouped" and twin.twin == "paper"
    assert {r.group_by for r in paper.runs} == {"none"}
    assert {r.group_by for r in twin.runs} == {"duplicates"}
    # the same matrix and hyperparameters, the split protocol apart
    def strip(p):
        return [{**r.to_dict(), "group_by": None, "out": Path(r.out).name} for r in p.runs]
    assert strip(paper) == strip(twin)
    steps = {s.name: s for s in profiles.plan(paper)}
    assert steps["05_results"].parameters["twin_dir"] == str(tmp_path / "paper_grouped")
    assert steps["05_results"].parameters["profile_name"] == "paper"
    assert "06_leakage" in steps and "06_leakage" not in {s.name for s in profiles.plan(twin)}


def test_twin_must_name_another_profile(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(
        "name: p\ntwin: p\ndatasets: [sarscov2_ct]\nmodels: [resnet]\n")
    with pytest.raises(ValueError, match="twin"):
        profiles.load_profile(tmp_path / "p.yaml", runs_dir=tmp_path)
