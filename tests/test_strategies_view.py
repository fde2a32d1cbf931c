"""Notebook 07's pictures are the trainer's truth: the 'what trains when' grid comes from the
strategies' own hooks and must match what a run records; movement is measured from the run's
real starting weights."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from medtl_lib.config import RunConfig
from medtl_lib.evaluation.comparison import claims_table
from medtl_lib.models.factory import create_model
from medtl_lib.teaching.strategies_view import (
    rgn_weights,
    total_distance,
    trainable_grid,
    weight_movement,
)
from medtl_lib.train_run import train_run
from test_strategies_seed001 import _model, _trainer


@pytest.mark.parametrize("name", ["gradual_lf", "gradual_fl"])
def test_grid_matches_the_blocks_a_run_trains(name, loaders):
    train, val = loaders
    args = {"unfreeze_every": 1}
    t = _trainer(name, args, epochs=4)
    flags = {n: p.requires_grad for n, p in t.model.named_parameters()}
    grid = trainable_grid(t.model, name, 4, args)
    assert {n: p.requires_grad for n, p in t.model.named_parameters()} == flags  # put back
    history = t.fit(train, val).history
    assert list(grid.columns) == ["1", "2", "3", "4"]
    for e, row in history.iterrows():
        column = grid.iloc[:, e]
        assert set(column.index[column == 1.0]) == set(row["trainable_blocks"].split("+"))
        assert set(column[(column > 0) & (column < 1)]) == set()  # a block trains whole or not


def test_grid_of_lp_ft_and_linear_probe():
    model = _model()
    grid = trainable_grid(model, "lp_ft", 5, {"lp_epochs": 2})
    assert list(grid.columns) == ["lp 1", "lp 2", "ft 1", "ft 2", "ft 3"]
    assert grid.index[-1] == "head" and grid.iloc[-1].eq(1).all()
    assert grid.iloc[:-1, :2].eq(0).all().all() and grid.iloc[:, 2:].eq(1).all().all()
    probe = trainable_grid(model, "linear_probe", 3)
    assert probe.iloc[:-1].eq(0).all().all() and probe.loc["head"].eq(1).all()


def test_rgn_weights_read_back_from_history():
    h = pd.DataFrame({"epoch": [1, 2], "rgn_groups": ["stem=0.5 stage1=1 head=0.25",
                                                      "stem=0.125 stage1=0.75 head=1"]})
    w = rgn_weights(h)
    assert list(w.columns) == [1, 2] and list(w.index) == ["stem", "stage1", "head"]
    assert w.loc["stem", 2] == 0.125 and w.loc["head", 1] == 0.25
    with pytest.raises(ValueError, match="not an auto_rgn run"):
        rgn_weights(h.drop(columns="rgn_groups"))


def test_weight_movement_from_the_runs_pretrained_weights(tmp_path, synth_root):
    torch.manual_seed(3)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    start = tmp_path / "start.pth"  # stands in for ImageNet weights: a file the run loads
    torch.save(model.state_dict(), start)
    data = synth_root("brain_tumor_mri")
    moved = {}
    for strategy in ("linear_probe", "full"):
        cfg = RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                        weights=str(start), img_size=32, epochs=1, batch_size=16,
                        strategy=strategy, out=str(tmp_path / strategy))
        train_run(cfg, progress=False, log=lambda *a: None)
        moved[strategy] = weight_movement(tmp_path / strategy)
    assert "head" not in moved["full"].index
    assert (moved["linear_probe"]["distance"] == 0).all()  # the probe's backbone never moves
    assert (moved["full"]["relative"] > 0).all() and total_distance(moved["full"]) > 0
    none_run = RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                         weights="none", img_size=32, epochs=1, batch_size=16,
                         out=str(tmp_path / "scratch"))
    train_run(none_run, progress=False, log=lambda *a: None)
    with pytest.raises(ValueError, match="no pretrained"):
        weight_movement(tmp_path / "scratch")


def test_claims_table_verdicts_say_only_what_the_runs_can():
    one_cell = {"metric": "macro accuracy", "cells": 1, "lp_ft_beats_full": 1, "lp_ft_cells": 1,
                "lp_ft_share": 1.0, "auto_rgn_max_gain_pct": -2.0,
                "auto_rgn_max_gain_cell": "brain / Lite0", "linear_probe_below_full": 1,
                "distinct_best": 1, "share_of_alternatives_beating_full_by_model": {"Lite0": 0.3}}
    t = claims_table(one_cell).set_index("claim (seed 001 abstract)")["verdict"]
    assert t["LP-FT beats full fine-tuning in over 50% of the cases"] == "holds here"
    assert t["Auto-RGN gains up to 11% on some modalities"] == "no gain here"
    assert t["no single strategy is best everywhere"] == "cannot tell from one cell"
    assert "DenseNet profits most from alternatives to full fine-tuning" not in t.index
    three = {**one_cell, "cells": 3, "lp_ft_beats_full": 1, "lp_ft_cells": 3, "lp_ft_share": 1 / 3,
             "distinct_best": 2,
             "share_of_alternatives_beating_full_by_model": {"ResNet-50": 0.5, "DenseNet-121": 0.2}}
    t = claims_table(three).set_index("claim (seed 001 abstract)")["verdict"]
    assert t["LP-FT beats full fine-tuning in over 50% of the cases"] == "does not hold here"
    assert t["no single strategy is best everywhere"] == "holds here"
    assert t["DenseNet profits most from alternatives to full fine-tuning"] == \
        "ResNet-50 profits most here"
