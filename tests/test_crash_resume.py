"""Killing a run at any moment and rerunning the same command gives exactly the numbers of an
uninterrupted run (CPU, same seed): a real subprocess, a real SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")


def _cmd(data, out):
    return [sys.executable, "-m", "medtl_lib", "train", "--dataset", "brain_tumor_mri",
            "--data-dir", str(data), "--model", "test_resnet", "--weights", "none",
            "--img-size", "48", "--epochs", "4", "--batch-size", "8", "--num-workers", "0",
            "--seed", "3", "--threshold", "0.5", "--patience", "1", "--stop-patience", "3",
            "--out", str(out), "--no-progress"]


def _epochs_done(out) -> int:
    try:
        return len(pd.read_csv(out / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_sigkill_then_rerun_matches_uninterrupted(synth_root, tmp_path):
    kill_after_epochs, delay = 1, 0.2  # killed somewhere in epoch 2 (or while it saves)
    data = synth_root("brain_tumor_mri", n_per_class=30, size=48)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ref = tmp_path / "ref"
    subprocess.run(_cmd(data, ref), check=True, env=env, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(data, run), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _epochs_done(run) < kill_after_epochs and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is not None:
        pytest.fail("the run finished before it could be killed; make it longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()
    done = _epochs_done(run)
    assert kill_after_epochs <= done < 4

    subprocess.run(_cmd(data, run), check=True, env=env, capture_output=True)
    a = json.loads((ref / "metrics.json").read_text())
    b = json.loads((run / "metrics.json").read_text())
    for part in ("train", "val", "test"):
        assert a[part] == b[part], part
    for key in ("epochs_run", "best_epoch", "stopped_early"):
        assert a[key] == b[key]
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "c", "s"]
    pd.testing.assert_frame_equal(pd.read_csv(ref / "history.csv")[cols],
                                  pd.read_csv(run / "history.csv")[cols])
    wa = torch.load(ref / "best.pt", weights_only=True)["model"]
    wb = torch.load(run / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not list(run.glob(".*.tmp"))
