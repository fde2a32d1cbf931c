"""A profile's runs through the launchers: side by side on this machine and through submitit's
local executor give the same results table as one after another."""
from __future__ import annotations

import pandas as pd
import pytest

from medtl_lib import profiles
from medtl_lib.launchers import _slurm_parameters, split_plan

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
        from medtl_lib.launchers import launch
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
    from medtl_lib.launchers import GroupJob, Task

    tasks = [Task("a/03_train", "nb.ipynb", "out.ipynb", {"epochs": 2})]
    again = GroupJob(tasks, "python3").checkpoint()
    assert isinstance(again.function, GroupJob) and again.function.tasks == tasks
    assert again.function.kernel == "python3"
