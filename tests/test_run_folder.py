"""medtl_lib.run_folder: the one module that names and reads a run folder's files."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from medtl_lib import run_folder as rf

ROOT = Path(__file__).resolve().parents[1] / "medtl_lib"


class _Cfg:
    def __init__(self, data: dict) -> None:
        self.data = data

    def save(self, path: Path) -> Path:
        path.write_text("".join(f"{k}: {v}\n" for k, v in self.data.items()))
        return path


def _complete_run(run: Path) -> Path:
    run.mkdir(parents=True)
    rf.write_config(run, _Cfg({"dataset": "sarscov2_ct", "model": "resnet50", "seed": 3}))
    rf.write_history(run, pd.DataFrame({"epoch": [1, 2], "save_best": [True, False],
                                        "stop": ["False", "True"]}))
    rf.write_predictions(run, "test", pd.DataFrame({"path": ["a", "b"], "label": [0, 1],
                                                    "pred": [0, 0], "prob_x": [0.9, 0.6],
                                                    "prob_y": [0.1, 0.4]}))
    pd.DataFrame({"path": ["a", "b"], "split": ["train", "test"]}).to_csv(
        rf.path(run, rf.SPLIT), index=False)
    rf.write_metrics(run, {"status": rf.STATUS_COMPLETE, "class_names": ["x", "y"],
                           "test": {"accuracy": 0.5}})
    return run


def test_round_trip(tmp_path):
    run = _complete_run(tmp_path / "ds__model")
    assert rf.read_config(run) == {"dataset": "sarscov2_ct", "model": "resnet50", "seed": 3}
    assert rf.read_metrics(run)["test"] == {"accuracy": 0.5}
    assert rf.class_names(run) == ["x", "y"]
    hist = rf.read_history(run)
    assert hist["save_best"].tolist() == [True, False] and hist["stop"].tolist() == [False, True]
    assert rf.read_predictions(run, "test")["prob_y"].tolist() == [0.1, 0.4]
    assert rf.read_split(run)["split"].tolist() == ["train", "test"]
    assert rf.status(run) == (rf.STATUS_COMPLETE, "") and rf.is_complete(run)
    assert rf.has_progress(run)


@pytest.mark.parametrize("name,reader,text", [
    (rf.METRICS, rf.read_metrics, '{"status": "comp'),
    (rf.CONFIG, rf.read_config, "dataset: [unclosed\n"),
    (rf.HISTORY, rf.read_history, 'epoch,val\n1,"unterminated\n'),
])
def test_damaged_file_is_named(tmp_path, name, reader, text):
    run = _complete_run(tmp_path / "run")
    (run / name).write_text(text)
    with pytest.raises(ValueError, match=rf.path(run, name).name) as err:
        reader(run)
    assert str(run / name) in str(err.value) and "delete it and rerun" in str(err.value)


def test_completeness(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert rf.status(run)[0] == rf.STATUS_INCOMPLETE and not rf.has_progress(run)
    rf.write_config(run, _Cfg({"seed": 1}))
    assert not rf.has_progress(run)  # a config alone is an attempt, not progress
    (run / rf.best_stage_name("head")).write_bytes(b"")
    assert rf.has_progress(run)
    rf.write_metrics(run, {"status": "running"})
    assert rf.status(run) == (rf.STATUS_INCOMPLETE, f"{rf.METRICS} status is 'running'")
    (run / rf.METRICS).write_text("{")
    state, why = rf.status(run)
    assert state == rf.STATUS_INVALID and rf.METRICS in why
    rf.forget_attempt(run)
    assert not (run / rf.CONFIG).exists()


def test_collect_keeps_unfinished_and_damaged(tmp_path):
    _complete_run(tmp_path / "a__m1")
    (tmp_path / "b__m2").mkdir()
    bad = _complete_run(tmp_path / "c__m3")
    (bad / rf.CONFIG).write_text("model: [\n")
    (tmp_path / "search_cut__a__m1").mkdir()  # a cut search is not a run
    (tmp_path / ".hidden__x").mkdir()
    runs = {r.path.name: r for r in rf.collect(tmp_path)}
    assert sorted(runs) == ["a__m1", "b__m2", "c__m3"]
    assert runs["a__m1"].complete and runs["a__m1"].metrics["test"]["accuracy"] == 0.5
    assert not runs["b__m2"].complete and runs["b__m2"].metrics is None
    assert runs["c__m3"].complete and runs["c__m3"].config == {}
    assert rf.CONFIG in runs["c__m3"].config_error
    assert [r.path for r in rf.collect(tmp_path / "a__m1")] == [tmp_path / "a__m1"]
    assert rf.finished_runs(tmp_path) == [tmp_path / "a__m1", tmp_path / "c__m3"]
    with pytest.raises(FileNotFoundError):
        rf.collect(tmp_path / "absent")


def test_synthetic_or_real(tmp_path):
    data = tmp_path / "standin" / "classes"
    data.mkdir(parents=True)
    run = tmp_path / "run"
    run.mkdir()
    rf.write_config(run, _Cfg({"data_dir": str(data)}))
    assert rf.data_root(run) == str(data) and not rf.is_synthetic_data(rf.data_root(run))
    (tmp_path / "standin" / rf.SYNTHETIC_MARKS[0]).write_text("generated")
    assert rf.is_synthetic_data(rf.data_root(run))
    (run / rf.DATA_IDENTITY).write_text(json.dumps({"root": "/elsewhere"}))
    assert rf.data_root(run) == "/elsewhere"


def test_run_folder_imports_only_the_bottom_layer():
    tree = ast.parse((ROOT / "run_folder.py").read_text())
    inner = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert inner <= {"utils"}, inner


def test_file_names_live_in_run_folder_only():
    """The run folder's file names are spelled in run_folder.py alone (issue 28)."""
    names = ("metrics.json", "config.yaml", "history.csv", "split.csv", "predictions_test",
             "best.pt", "last.pt", "model.json", "search.json", "search.csv",
             "data_identity.json")
    mine = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.name != "run_folder.py"]
    offenders = [(f, n) for f in mine for n in names if n in (ROOT / f).read_text()]
    assert not offenders, offenders
