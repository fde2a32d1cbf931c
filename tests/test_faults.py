"""Fault injection: a real `medtl train` process killed (SIGKILL) at named points of every phase,
or starved of disk, then the same command rerun. After each fault the run must finish with
exactly the metrics and history of an uninterrupted run (CPU), and nothing already computed may
be lost. The points are in ``medtl_lib/faults.py``; ``test_crash_resume.py`` adds kills at
random moments.

The run is a two-stage strategy (lp_ft: a probe stage, then fine-tuning) on the cached pipeline,
whose cache is built by two worker processes, so the kills land in: the cache build, the first
stage, the stage boundary, the second stage, the evaluation of each split and the moment before
the run is marked complete.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medtl_lib.checkpoint_files import sha256

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and resource limits")


def _cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "medtl_lib", "train", "--dataset", "brain_tumor_mri",
            "--data-dir", str(data), "--model", "test_resnet", "--weights", "none",
            "--img-size", "48", "--epochs", "4", "--batch-size", "16", "--seed", "5",
            "--strategy", "lp_ft", "--strategy-arg", "lp_epochs=2", "--optimizer", "adam",
            "--schedule", "cosine", "--select-by", "val_loss", "--out", str(out),
            "--no-progress"]


def _run(data, out, cache, fault: str | None = None, preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDTL_CACHE_DIR": str(cache)}
    env.pop("MEDTL_FAULT", None)
    if fault:
        env["MEDTL_FAULT"] = fault
    return subprocess.run(_cmd(data, out), env=env, capture_output=True, text=True,
                          preexec_fn=preexec, timeout=600)


@pytest.fixture(scope="module")
def reference(synth_root, tmp_path_factory):
    data = synth_root("brain_tumor_mri", n_per_class=40, size=48)
    base = tmp_path_factory.mktemp("faults")
    r = _run(data, base / "ref", base / "cache_ref")
    assert r.returncode == 0, r.stderr
    return data, base


def _same_as_reference(run: Path, ref: Path) -> None:
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    for part in ("train", "val", "test"):
        assert a[part] == b[part], part
    assert a["best_epoch"] == b["best_epoch"] and a["stages"] == b["stages"]
    cols = [c for c in pd.read_csv(ref / "history.csv").columns if c != "seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(ref / "history.csv")[cols],
                                  pd.read_csv(run / "history.csv")[cols], check_exact=True)
    for s in ("train", "val", "test"):
        assert (ref / f"predictions_{s}.csv").read_bytes() == \
            (run / f"predictions_{s}.csv").read_bytes()


def _steps_per_epoch(ref: Path) -> int:
    split = pd.read_csv(ref / "split.csv")
    return -(-int((split["split"] == "train").sum()) // 16)


FAULTS = [  # (point, n): killed the n-th time the run passes the point
    ("cache.chunk", 2),  # cache build, two decode workers running
    ("train.step", 3),  # inside the first epoch of the probe stage
    ("train.epoch", 2),  # right after the probe stage's last checkpoint: the stage boundary
    ("train.step", "ft"),  # inside the fine-tuning stage (resolved below)
    ("train.epoch", 4),  # after the last epoch, before the evaluation
    ("eval.split", 1),  # evaluation: train predictions written, val and test not
    ("eval.split", 3),  # evaluation: every split written, metrics not
    ("run.complete", 1),  # best.pt final, metrics.json about to be written
]


@pytest.mark.parametrize("point, n", FAULTS, ids=[f"{p}:{n}" for p, n in FAULTS])
def test_killed_at_a_fault_point_then_rerun_matches_an_uninterrupted_run(point, n, reference):
    data, base = reference
    ref = base / "ref"
    if n == "ft":
        n = 2 * _steps_per_epoch(ref) + 2  # two probe epochs, then two steps into stage ft
    run = base / f"{point}_{n}"
    cache = base / f"cache_{point}_{n}"
    killed = _run(data, run, cache, fault=f"{point}:{n}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "metrics.json").exists()
    before = {p.name: sha256(p) for p in run.glob("predictions_*.csv")}
    epochs_before = len(pd.read_csv(run / "history.csv")) if (run / "history.csv").exists() else 0
    resumed = _run(data, run, cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _same_as_reference(run, ref)
    history = pd.read_csv(run / "history.csv")
    assert len(history) >= epochs_before  # no finished epoch was lost
    for name, digest in before.items():  # evaluated splits were rewritten identically
        assert sha256(run / name) == digest
    assert not list(run.glob(".*.tmp")) and not list(cache.glob("**/.*.tmp"))


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failing write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_disk_keeps_the_last_checkpoint_and_the_rerun_resumes(reference):
    data, base = reference
    run, cache = base / "disk_full", base / "cache_disk_full"
    assert _run(data, run, cache, fault="train.epoch:1").returncode == -signal.SIGKILL
    last = run / "last.pt"
    kept = sha256(last)
    full = _run(data, run, cache, preexec=_limit_file_size(last.stat().st_size // 2))
    assert full.returncode == 2, full.stderr[-2000:]
    err = full.stderr.strip().splitlines()[-1]
    assert err.startswith("medtl: error:") and "is the disk full?" in err, err
    assert sha256(last) == kept and len(pd.read_csv(run / "history.csv")) == 1
    assert not list(run.glob(".*.tmp"))
    assert _run(data, run, cache).returncode == 0
    _same_as_reference(run, base / "ref")


def test_a_dataset_changed_between_runs_is_refused_and_nothing_is_lost(reference, tmp_path):
    import shutil

    data, base = reference
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    run, cache = base / "changed", base / "cache_changed"
    assert _run(copy, run, cache, fault="train.epoch:1").returncode == -signal.SIGKILL
    victim = next((copy / "Training" / "glioma").iterdir())
    victim.unlink()
    kept = sha256(run / "last.pt")
    refused = _run(copy, run, cache)
    assert refused.returncode == 2 and "trained on other data" in refused.stderr
    assert sha256(run / "last.pt") == kept
    shutil.copy(data / "Training" / "glioma" / victim.name, victim)  # the data restored
    assert _run(copy, run, cache).returncode == 0
    _same_as_reference(run, base / "ref")


def test_a_notebook_killed_mid_training_resumes_on_the_next_medtl_run(synth_root, tmp_path):
    """The profile runner: the kernel of 03_train dies mid-run (SIGKILL inside training), the
    other notebooks go on, `medtl run` says it failed; the same command again resumes the run
    from its last epoch, with the numbers of an uninterrupted run."""
    from medtl_lib.config import RunConfig
    from medtl_lib.train_run import train_run

    data = synth_root("brain_tumor_mri", n_per_class=40, size=48)
    fields = dict(model="test_resnet", weights="none", img_size=48, epochs=3, batch_size=16,
                  seed=5)
    (tmp_path / "p.yaml").write_text(
        f"name: nb\ndata_dirs: {{brain_tumor_mri: '{data}'}}\ndatasets: [brain_tumor_mri]\n"
        f"models: [test_resnet]\nwalkthrough: simulated\ndefaults: "
        + json.dumps({k: v for k, v in fields.items() if k != "model"}) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDTL_FAULT": "train.epoch:2"}
    cmd = [sys.executable, "-m", "medtl_lib", "run", str(tmp_path / "p.yaml"), "--runs-dir",
           str(tmp_path / "runs")]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    run = tmp_path / "runs" / "nb" / "brain_tumor_mri__test_resnet"
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-2000:]
    assert "03_train: failed" in first.stdout and not (run / "metrics.json").exists()
    assert len(pd.read_csv(run / "history.csv")) == 2  # two finished epochs kept
    env.pop("MEDTL_FAULT")
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-2000:]
    assert "resumed after epoch 2" in (run / "03_train.log").read_text()
    ref = train_run(RunConfig(dataset="brain_tumor_mri", data_dir=str(data),
                              out=str(tmp_path / "ref"), **fields),
                    progress=False, log=lambda *a: None)
    assert json.loads((run / "metrics.json").read_text())["test"] == ref.metrics["test"]
