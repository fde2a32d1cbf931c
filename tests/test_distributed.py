"""One run on two processes (torchrun, gloo on the CPU): shards, weights in sync under every
strategy, one run folder, and resuming after a kill with two processes or with one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from medtl_lib.data.loaders import per_rank_batch
from medtl_lib.distributed import ShardSampler

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or os.name != "posix",
                                reason="torch.distributed with gloo")


def _order(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (7, 3), (2, 4)])
def test_shards_split_one_order_and_cover_it(n, world):
    shards = [list(ShardSampler(n, torch.Generator().manual_seed(5), r, world)) for r in range(world)]
    assert all(len(s) == -(-n // world) for s in shards)  # equal lengths: no rank waits
    covered = sorted(i for s in shards for i in s)
    assert set(covered) == set(range(n)) and len(covered) - n < world  # padding < world
    interleaved = [shards[r][k] for k in range(len(shards[0])) for r in range(world)]
    assert interleaved[:n] == _order(n, 5)  # the order itself does not depend on the world size
    one = list(ShardSampler(n, torch.Generator().manual_seed(5), 0, 1))
    assert one == _order(n, 5)  # a world of one: exactly RandomSampler's order


def test_the_runs_batch_is_the_global_batch():
    assert per_rank_batch(64, 1) == 64 and per_rank_batch(64, 2) == 32 and per_rank_batch(96, 4) == 24
    with pytest.raises(ValueError, match="multiple of 3"):
        per_rank_batch(64, 3)


def _env(cache: Path, fault: str | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MEDTL_CACHE_DIR": str(cache)}
    env.pop("MEDTL_FAULT", None)
    if fault:
        env["MEDTL_FAULT"] = fault
    return env


def test_every_strategy_keeps_the_ranks_in_sync(synth_root, tmp_path):
    """Parameters and BatchNorm buffers equal on both ranks after two sharded epochs, for the
    strategies with stages, unfreezing, per-group LRs, penalties, surgery and data probes (a
    missing buffer broadcast or an un-reduced Auto-RGN probe makes this fail)."""
    data = synth_root("brain_tumor_mri", n_per_class=12, size=32)
    names = ["full", "linear_probe", "lp_ft", "gradual_lf", "gradual_fl", "auto_rgn", "l2_sp",
             "top_layers", "ttl", "lwft", "transfusion", "sft"]
    out = tmp_path / "sync.jsonl"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", str(REPO / "tests" / "ddp_worker.py"), str(data),
                        str(out), *names], env=_env(tmp_path / "cache"), capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["strategy"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == sorted(names)
    for name, row in rows.items():
        assert row["same_on_every_rank"], f"{name}: the ranks' weights differ"
        assert row["moved"], f"{name}: nothing trained"


def _train(data: Path, out: Path, cache: Path, nproc: int, fault: str | None = None
           ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "medtl_lib", "train", "--dataset", "brain_tumor_mri",
           "--data-dir", str(data), "--model", "test_resnet", "--weights", "none",
           "--img-size", "32", "--epochs", "4", "--batch-size", "8", "--seed", "2",
           "--strategy", "lp_ft", "--strategy-arg", "lp_epochs=2", "--optimizer", "adam",
           "--schedule", "none", "--select-by", "val_loss", "--out", str(out), "--no-progress"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    return subprocess.run(cmd, env=_env(cache, fault), capture_output=True, text=True, timeout=600)


def test_two_processes_write_one_run_that_resumes_with_two_or_one(synth_root, tmp_path):
    data = synth_root("brain_tumor_mri", n_per_class=12, size=32)
    cache = tmp_path / "cache"
    whole = tmp_path / "whole"
    r = _train(data, whole, cache, 2)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((whole / "metrics.json").read_text())
    assert m["status"] == "complete" and m["world_size"] == 2 and m["epochs_run"] == 4
    assert [s["name"] for s in m["stages"]] == ["lp", "ft"]
    assert "2 processes" in r.stdout
    assert not list(whole.glob("*.tmp")) and not (whole / "last.pt").exists()
    one = tmp_path / "one"
    assert _train(data, one, cache, 1).returncode == 0
    # the same split (rank 0 makes it; the others read it) as a single-process run
    assert (whole / "split.csv").read_text() == (one / "split.csv").read_text()
    assert json.loads((one / "metrics.json").read_text())["world_size"] == 1

    for resume_with in (2, 1):  # killed in the fine-tuning stage, then the same command
        run = tmp_path / f"killed_then_{resume_with}"
        r = _train(data, run, cache, 2, fault="train.epoch:3")
        assert r.returncode != 0 and not (run / "metrics.json").exists()
        before = pd.read_csv(run / "history.csv")
        assert len(before) == 3
        r = _train(data, run, cache, resume_with)
        assert r.returncode == 0, r.stderr[-3000:]
        after = pd.read_csv(run / "history.csv")
        assert len(after) == 4 and "resumed after epoch 3" in r.stdout
        cols = ["epoch", "stage", "train_loss", "val_loss"]
        pd.testing.assert_frame_equal(after[cols].iloc[:3], before[cols])
        done = json.loads((run / "metrics.json").read_text())
        assert done["status"] == "complete" and done["world_size"] == resume_with
