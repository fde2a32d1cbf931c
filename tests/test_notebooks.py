"""The course notebooks: committed clean, parameters in step with RunConfig, and the smoke
profile executed end to end through papermill (the kit's main path)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
from dataclasses import fields
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from medtl_lib import orchestration as profiles
from medtl_lib.config import RunConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_setup", "01_data_exploration", "02_dual_monitor_walkthrough", "03_train",
            "04_evaluate", "05_results", "06_leakage", "07_strategies", "08_strategy_comparison",
            "09_truncation", "10_representations", "11_cdtm", "12_cdtm_results", "13_init_settings",
            "14_confidence_intervals"]


def _parameters(path: Path) -> dict:
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {t.id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) for t in node.targets}


def _cells(path: Path) -> list:
    return nbformat.read(str(path), as_version=4).cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_teaches(path):
    """Course conventions: objectives and a time estimate up front, exercises with solutions that a
    teacher can withhold (cells tagged 'solution', or a collapsed <details> answer)."""
    cells = _cells(path)
    intro = cells[0].source
    assert cells[0].cell_type == "markdown" and intro.startswith("# ")
    assert "Learning objectives" in intro, f"{path.name}: no learning objectives in the first cell"
    assert "**Time:**" in intro, f"{path.name}: no time estimate in the first cell"
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "### Exercise" in text or "## Exercises" in text, f"{path.name}: no exercise"
    tagged = [c for c in cells if "solution" in c.metadata.get("tags", [])]
    for c in tagged:
        assert c.cell_type == "code" and c.metadata.get("jupyter", {}).get("source_hidden")
        assert c.source.startswith("# Solution")
    assert tagged or "<details><summary>Solution" in text, f"{path.name}: no solutions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_parses_for_papermill(path, caplog):
    """papermill reads each parameter's name, type and comment; a line it cannot parse drops that
    parameter from `papermill --help-notebook` (quotes and '=' inside comments do that)."""
    import papermill

    with caplog.at_level("WARNING", logger="papermill"):
        declared = papermill.inspect_notebook(str(path))
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    assert set(declared) == set(_parameters(path))


def test_all_course_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs(path):
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=REPO,
                             capture_output=True).returncode == 0
    text = subprocess.run(["git", "show", f"HEAD:{path.relative_to(REPO)}"], cwd=REPO,
                          capture_output=True, text=True).stdout if tracked else path.read_text()
    nb = nbformat.reads(text or path.read_text(), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{path.name} has execution counts"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_train_notebook_parameters_match_runconfig():
    params = _parameters(REPO / "notebooks" / "03_train.ipynb")
    names = [f.name for f in fields(RunConfig)]
    assert sorted(set(params) - {"synthetic_fallback", "plugins"}) == sorted(names), (
        f"missing: {set(names) - set(params)}, extra: {set(params) - set(names)}")
    from medtl_lib.teaching.lab import LAB_PRESET

    defaults = RunConfig()
    for name in names:
        if name in LAB_PRESET:  # the CPU lab preset; profiles pass the paper's values
            assert params[name] == LAB_PRESET[name], f"{name}: not the lab preset"
        elif name != "out":
            assert params[name] == getattr(defaults, name), f"{name}: notebook default differs"
    assert params["out"] == "" and params["synthetic_fallback"] is True and params["plugins"] == []


@pytest.mark.parametrize("name", sorted(p.stem for p in profiles.PROFILES.glob("*.yaml")))
def test_planned_parameters_exist_in_each_notebook(name):
    profile = profiles.load_profile(name, runs_dir="/tmp/unused", data_root="/tmp/unused")
    for step in profiles.plan(profile):
        declared = _parameters(step.notebook)
        unknown = set(step.parameters) - set(declared)
        assert not unknown, f"{step.name}: papermill would inject undeclared {unknown}"


# ---------------------------------------------------------------- the smoke profile, executed
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile, run once per session and shared with test_browser.py."""
    from smoke_once import run_smoke_once

    run = run_smoke_once(tmp_path_factory)
    return run.profile, run.steps, run.lines


def test_smoke_profile_runs_every_notebook(smoke):
    profile, steps, lines = smoke
    failed = [(s.name, s.error) for s in steps if s.status != "ok"]
    assert not failed, "\n".join(lines)
    assert len(steps) == 2 + 2 * len(profile.runs) + 3  # 00, 01; 03+04 per run; 02, 06, 05
    for s in steps:
        nb = nbformat.read(str(s.output), as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{s.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), s.name


def test_smoke_profile_writes_what_it_promises(smoke):
    profile, _, _ = smoke
    root = profile.out_root
    for cfg in profile.runs:
        run = Path(cfg.out)
        m = json.loads((run / "metrics.json").read_text())
        assert m["status"] == "complete" and m["weights_source"].startswith("offline:")
        assert 0.0 <= m["test"]["accuracy"] <= 1.0
        assert len(pd.read_csv(run / "history.csv")) == m["epochs_run"] >= 1
        assert (run / "03_train.ipynb").is_file() and (run / "04_evaluate.ipynb").is_file()
        assert (run / "03_train.log").read_text().count("epoch 1:") >= 1  # readable log lines
    for fig in ("fig3_curves.png", "confusion_grid.png", "walkthrough.png"):
        assert (root / "figures" / fig).stat().st_size > 5_000, fig
    html = (root / "results.html").read_text()
    assert "Table II" in html and "Brain Tumor" in html and "<img" in html
    leak = nbformat.read(str(root / "06_leakage.ipynb"), as_version=4)
    leak_text = json.dumps([c.get("outputs") for c in leak.cells if c.cell_type == "code"])
    assert "image-level split, as the paper" in leak_text
    assert "grouped split, leakage-corrected" in leak_text
    grouped = json.loads((root / "leakage" / "brain_tumor_mri__efficientnet_lite0__duplicates"
                          / "split_info.json").read_text())
    assert grouped["merged_groups"] > 0  # the planted copies were found and kept together
    results = nbformat.read(str(root / "05_results.ipynb"), as_version=4)
    text = json.dumps([c.get("outputs") for c in results.cells if c.cell_type == "code"])
    assert "SARS-COV-2" in text and "BreaKHis" in text and "Brain Tumor" in text


def test_rerun_skips_finished_runs(smoke):
    profile, _, _ = smoke
    lines: list[str] = []
    steps = profiles.run_profile(profile, dry_run=True, log=lines.append)
    runs = [s for s in steps if "/" in s.name]
    assert runs and all(s.done() for s in runs)
    assert sum("would skip" in line for line in lines) == len(runs)


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path, synth_root):
    data = synth_root("sarscov2_ct", n_per_class=10, size=32)
    (tmp_path / "p.yaml").write_text(
        "name: broken\n"
        f"data_dirs: {{sarscov2_ct: '{data}'}}\n"
        "datasets: [sarscov2_ct]\n"
        "models: [no_such_model, test_resnet]\n"
        "defaults: {weights: none, img_size: 32, epochs: 1, batch_size: 8}\n")
    profile = profiles.load_profile(tmp_path / "p.yaml", runs_dir=tmp_path / "runs")
    lines: list[str] = []
    steps = {s.name: s for s in profiles.run_profile(profile, log=lines.append)}
    bad = steps["sarscov2_ct__no_such_model/03_train"]
    assert bad.status == "failed" and "Unknown model 'no_such_model'" in bad.error
    assert steps["sarscov2_ct__no_such_model/04_evaluate"].status == "skipped"
    assert steps["sarscov2_ct__test_resnet/03_train"].status == "ok"
    assert steps["05_results"].status == "ok"
    # run again from the command line: the finished run is skipped, the broken one fails again
    # and the exit code says so
    assert profiles.main([str(tmp_path / "p.yaml"), "--runs-dir", str(tmp_path / "runs"),
                             "--only", "*no_such_model"]) == 1
    assert profiles.main([str(tmp_path / "p.yaml"), "--runs-dir", str(tmp_path / "runs"),
                             "--only", "*test_resnet", "--dry-run"]) == 0


# ---------------------------------------------------------------- seed 001's two notebooks
def _outputs(path: Path) -> tuple[str, int]:
    """(every text output of a executed notebook as one string, number of images)"""
    nb = nbformat.read(str(path), as_version=4)
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outs if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return json.dumps(outs), sum("image/png" in o.get("data", {}) for o in outs)


def test_strategy_notebooks_as_opened(tmp_path):
    """07 with its defaults trains one seed of smoke_strategies and draws it; 08 compares them."""
    runs, data = tmp_path / "runs", tmp_path / "data"
    profiles.execute(REPO / "notebooks" / "07_strategies.ipynb", tmp_path / "07.ipynb",
                     {"runs_dir": str(runs), "data_root": str(data),
                      "figures_dir": str(tmp_path / "fig")})
    text, images = _outputs(tmp_path / "07.ipynb")
    assert images >= 4 and "8 finished run(s)" in text
    assert "the grid says" in text and "0 of " in text  # solutions 1 and 4 ran
    for fig in ("strategies_schedule", "auto_rgn_weights", "sp_distance", "weight_movement"):
        assert (tmp_path / "fig" / f"{fig}.png").stat().st_size > 10_000, fig
    profiles.execute(REPO / "notebooks" / "08_strategy_comparison.ipynb", tmp_path / "08.ipynb",
                     {"profile_dir": str(runs / "smoke_strategies")})
    text, images = _outputs(tmp_path / "08.ipynb")
    assert images == 4  # seed scores and change heat map, for both metrics
    assert "LP-FT beats full fine-tuning" in text and "macro F1" in text


def test_profiles_with_several_strategies_plan_07_and_08(tmp_path):
    p = profiles.load_profile("smoke_strategies", runs_dir=tmp_path)
    steps = {s.name: s for s in profiles.plan(p)}
    assert steps["07_strategies"].parameters["train_missing"] is False
    assert Path(steps["07_strategies"].parameters["profile"]).name == "smoke_strategies.yaml"
    assert steps["08_strategy_comparison"].parameters["profile_dir"] == str(p.out_root)
    assert "07_strategies" not in {s.name for s in profiles.plan(profiles.load_profile("smoke"))}


def test_cdtm_notebook_as_opened(tmp_path, monkeypatch):
    """11 with its defaults: without the real data it trains cdtm_lp on the synthetic stand-in
    (written into the kit's data/ as every offline profile does) and opens the module up."""
    monkeypatch.delenv("MEDTL_DATA_DIR", raising=False)
    profiles.execute(REPO / "notebooks" / "11_cdtm.ipynb", tmp_path / "11.ipynb",
                     {"runs_dir": str(tmp_path / "runs"), "figures_dir": str(tmp_path / "fig"),
                      "img_size": 64, "epochs": 1})
    text, images = _outputs(tmp_path / "11.ipynb")
    assert images >= 3 and "CDTM variant **code** with 300 centres" in text
    assert "entropy over 300 centres" in text and "total:  17,074,368" in text
    for fig in ("cdtm_scores", "cdtm_centres_by_class", "cdtm_mixed"):
        assert (tmp_path / "fig" / f"{fig}.png").stat().st_size > 5_000, fig


def test_cdtm_results_notebook_on_a_profile(tmp_path, synth_root):
    """12 lays a profile's runs beside the paper's cells: here one tiny cdtm_lp run, which the
    paper's tables do not contain, so they show the paper alone and Fig. 6 shows the run."""
    from medtl_lib.config import RunConfig
    from medtl_lib.train_run import train_run

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    train_run(RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                        weights="none", img_size=32, epochs=1, pool="tokens", head="cdtm",
                        head_args={"centers": 4}, strategy="cdtm_lp",
                        out=str(tmp_path / "p" / "brain_tumor_mri__test_resnet__cdtm_lp__s1")),
              progress=False, log=lambda *a: None)
    profiles.execute(REPO / "notebooks" / "12_cdtm_results.ipynb", tmp_path / "12.ipynb",
                     {"profile_dir": str(tmp_path / "p"), "measure_table_vii": False,
                      "figures_dir": str(tmp_path / "fig")})
    text, images = _outputs(tmp_path / "12.ipynb")
    assert "1 complete run(s)" in text and "Table VI (BreakHis 200X" in text and "80.02" in text
    assert images == 1 and (tmp_path / "fig" / "fig6_confusion.png").is_file()
    assert "paper's F1" in text


# ---------------------------------------------------------------- the course as a student opens it
# With their default parameters, in course order, alternating the working directory between
# notebooks/ (jupyter lab notebooks/) and the repository root (jupyter lab); relative paths in the
# notebooks go to MEDTL_WORKDIR, never into the checkout. 06, 07, 09 and 11 train several models
# with their defaults (minutes each): they run as opened in their own tests with smaller settings
# (08 with the runs 07 trains), and scripts/check_notebooks.py runs all of them with their defaults.
AS_OPENED = ["00_setup", "01_data_exploration", "02_dual_monitor_walkthrough", "03_train",
             "04_evaluate", "05_results", "10_representations",
             "12_cdtm_results", "13_init_settings", "14_confidence_intervals"]


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    import papermill as pm

    work = tmp_path_factory.mktemp("workdir")
    env = {"MEDTL_WORKDIR": str(work), "MEDTL_DATA_DIR": None}
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    results = {}
    try:
        for i, name in enumerate(AS_OPENED):
            out = work / "executed" / f"{name}.ipynb"
            out.parent.mkdir(exist_ok=True)
            cwd = REPO / "notebooks" if i % 2 == 0 else REPO
            try:
                pm.execute_notebook(str(REPO / "notebooks" / f"{name}.ipynb"), str(out),
                                    cwd=str(cwd), kernel_name="python3", progress_bar=False,
                                    kernel_manager_class=profiles.kernel_manager())
                results[name] = (out, "")
            except Exception as exc:  # every notebook is reported, not just the first failure
                results[name] = (out, f"{getattr(exc, 'ename', type(exc).__name__)}: "
                                      f"{getattr(exc, 'evalue', exc)}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return work, results


@pytest.mark.parametrize("name", AS_OPENED)
def test_notebook_runs_as_opened_with_its_defaults(opened, name):
    work, results = opened
    out, error = results[name]
    assert not error, f"{name}: {error}"
    text, _ = _outputs(out)
    if name in ("01_data_exploration", "03_train", "04_evaluate"):
        assert "synthetic stand-in" in text  # no real data here: it says so
    if name == "03_train":
        assert (work / "runs" / "lab" / "brain_tumor_mri__efficientnet_lite0__128px__synthetic"
                / "metrics.json").is_file()
    assert not any((REPO / "notebooks").glob("runs")), "a notebook wrote into notebooks/runs"
