"""A profile's runs through the launchers: side by side on this machine and through submitit's
local executor give the same results table as one after another."""
from __future__ import annotations

import pandas as pd
import pytest

from medtl_lib import orchestration as profiles
from medtl_lib.orchestration.launchers import _slurm_parameters, split_plan

TINY = """name: tiny
synthetic: {n_per_class: 16, size: 32, seed: 0}
walkthrough: simulated
datasets: [sarscov2_ct, brain_tumor_mri]
models: [test_resnet]
defaults: {weights: none, img_size: 32, epochs: 2, batch_size: 16}
"""
# what must agree between launchers (seconds, paths and the like may differ)
COLUMNS = ["run", "status", "train_acc", "val_acc", "test_acc", "precision", "recall", "f1",
           "test_auroc_macro", "epochs_run", "best_epoch"]


def test_the_plan_splits_into_course_steps_run_groups_and_reports(tmp_path):
    p = profiles.load_profile("smoke", runs_dir=tmp_path, data_root=tmp_path)
    before, groups, after = split_plan(profiles.plan(p))
    assert [s.name for s in before] == ["00_setup", "01_data_exploration"]
    assert [[s.name.split("/")[1] for s in g] for g in groups] == [["03_train", "04_evaluate"]] * 3
    assert [s.name for s in after] == ["02_dual_monitor_walkthrough", "06_leakage", "05_results"]
    params = _slurm_parameters({"partition": "gpu", "gpus_per_run": 2, "timeout_min": 90})
    assert params["slurm_partition"] == "gpu" and params["gpus_per_node"] == 2
    assert params["timeout_min"] == 90 and params["slurm_additional_parameters"] == {"requeue": True}
    with pytest.raises(ValueError, match="launcher must be one of"):
        from medtl_lib.orchestration.launchers import launch
        launch([[object()]], "kubernetes", "python3")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("launch")
    spec = base / "tiny.yaml"
    spec.write_text(TINY)
    return spec, base


def _results(spec, base, launcher: str) -> pd.DataFrame:
    p = profiles.load_profile(spec, runs_dir=base / launcher, data_root=base / "data")
    lines: list[str] = []
    steps = profiles.run_profile(p, log=lines.append, launcher=launcher, jobs=2,
                                 export_html=False)
    failed = [(s.name, s.error) for s in steps if s.status == "failed"]
    assert not failed, "\n".join(lines)
    assert all(s.status == "ok" for s in steps), [(s.name, s.status) for s in steps]
    frame = pd.read_csv(p.out_root / "results.csv")  # written by 05_results
    return frame[COLUMNS].sort_values("run").reset_index(drop=True)


@pytest.mark.parametrize("launcher", ["local", "submitit-local"])
def test_launchers_give_the_plain_runners_results(tiny, launcher):
    pytest.importorskip("submitit") if launcher.startswith("submitit") else None
    spec, base = tiny
    plain = _results(spec, base, "inline") if not (base / "inline" / "tiny" / "results.csv").is_file() \
        else pd.read_csv(base / "inline" / "tiny" / "results.csv")[COLUMNS].sort_values("run").reset_index(drop=True)
    other = _results(spec, base, launcher)
    assert len(other) == 2 and (other["status"] == "complete").all()
    pd.testing.assert_frame_equal(other, plain)


def test_a_preempted_job_resubmits_the_same_group():
    """submitit calls checkpoint() on preemption or timeout; the same runs go back in the queue
    and resume from their last epochs (what a run does when started again)."""
    pytest.importorskip("submitit")
    from medtl_lib.orchestration.launchers import GroupJob, Task

    tasks = [Task("a/03_train", "nb.ipynb", "out.ipynb", {"epochs": 2})]
    again = GroupJob(tasks, "python3").checkpoint()
    assert isinstance(again.function, GroupJob) and again.function.tasks == tasks
    assert again.function.kernel == "python3"


def test_direct_launcher_trains_the_runs_without_notebooks(tiny, capsys):
    """``--launcher direct``: every run trained in this process (no notebook executed), into the
    folders the notebooks use, so the notebook plan then sees them done; a second call skips."""
    spec, base = tiny
    p = profiles.load_profile(spec, runs_dir=base / "direct", data_root=base / "data")
    lines: list[str] = []
    assert profiles.run_profile(p, dry_run=True, launcher="direct", log=lines.append) == []
    assert [line.split()[-1] for line in lines[1:]] == ["run", "run"]  # 'would run'
    outcomes = profiles.run_profile(p, launcher="direct", log=lines.append)
    assert [(o.name, o.status) for o in outcomes] == [
        ("sarscov2_ct__test_resnet", "ok"), ("brain_tumor_mri__test_resnet", "ok")], lines
    assert "tiny: 2 of 2 run(s) = 2 datasets x 1 model x 1 strategy x 1 seed" in lines
    assert any(line.startswith("matrix: ") and line.endswith("0 failed []") for line in lines)
    assert not list(p.out_root.rglob("*.ipynb"))
    trains = [s for s in profiles.plan(p) if s.name.endswith("/03_train")]
    assert len(trains) == 2 and all(s.done() for s in trains)
    again = profiles.run_profile(p, launcher="direct", log=lambda *a: None)
    assert [o.status for o in again] == ["skipped", "skipped"]
    assert profiles.main([str(spec), "--launcher", "direct", "--dry-run", "--runs-dir",
                          str(base / "direct")]) == 0
    assert capsys.readouterr().out.count("done, would skip") == 2
