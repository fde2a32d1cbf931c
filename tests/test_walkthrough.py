"""Tests for the dual-monitor walkthrough (replay, ReduceLROnPlateau baseline, view, notebook 02).

Expected values in the hand-written cases are derived in the comments from the rules stated in
``medtl_lib/training/dual_monitor.py`` and in ``plateau_baseline``'s docstring.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from medtl_lib.teaching.walkthrough_view import (
    headless_reason,
    plot_replay,
    state_table,
    step_through,
)
from medtl_lib.training.dual_monitor import DualMonitor
from medtl_lib.teaching.walkthrough import (
    compare,
    from_history,
    plateau_baseline,
    replay,
    simulated_run,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "02_dual_monitor_walkthrough.ipynb"

# T=0.9, p=2, P=2, phi=0.5, lr=1e-3
ACC = [0.70, 0.80, 0.78, 0.79, 0.92, 0.93, 0.95, 0.96, 0.97]
LOSS = [0.60, 0.50, 0.55, 0.52, 0.40, 0.45, 0.46, 0.47, 0.48]
# e1 A: 0.70 > 0 improved, 0.60 < inf saved               -> theta*=1, c=0
# e2 A: 0.80 > 0.70 improved, 0.50 < 0.60 saved           -> theta*=2, c=0
# e3 A: 0.78 <= 0.80                                       -> c=1
# e4 A: 0.79 <= 0.80 -> c=2 >= p: cut 1e-3 -> 5e-4        -> c=0, s=1
# e5 B: 0.40 < inf (phase-B tracker) saved, runs at 5e-4  -> theta*=5, c=0
# e6 B: 0.45 >= 0.40                                       -> c=1
# e7 B: 0.46 >= 0.40 -> c=2: cut 5e-4 -> 2.5e-4, s=2 >= P -> stop; e8, e9 never replayed


def test_replay_hand_case() -> None:
    rep = replay(ACC, LOSS)
    assert list(rep["epoch"]) == [1, 2, 3, 4, 5, 6, 7]  # the stop row is the last row
    assert list(rep["stop"]) == [False] * 6 + [True]
    assert list(rep["phase"]) == ["train_acc"] * 4 + ["val_loss"] * 3
    assert list(rep["c"]) == [0, 0, 1, 0, 0, 1, 0]
    assert list(rep["s"]) == [0, 0, 0, 1, 1, 1, 2]
    assert list(rep["save_best"]) == [True, True, False, False, True, False, False]
    assert list(rep["theta_star_epoch"]) == [1, 2, 2, 2, 5, 5, 5]
    assert list(rep["lr"]) == pytest.approx([1e-3] * 4 + [5e-4] * 3)
    assert list(rep["lr_factor"]) == [1, 1, 1, 0.5, 1, 1, 0.5]
    assert rep["lr_next"].iloc[-1] == pytest.approx(2.5e-4)
    assert rep["best_val_loss_in_acc_phase"].iloc[-1] == 0.50
    assert rep["best_val_loss"].iloc[-1] == 0.40
    assert rep["best_train_acc"].iloc[-1] == 0.95  # raised in phase B too (the text's rule)
    assert rep.attrs["threshold"] == 0.9 and rep.attrs["patience"] == 2


def test_replay_agrees_with_stepping_the_monitor() -> None:
    mon = DualMonitor(0.9, 2, 2, 0.5)
    rep = replay(ACC, LOSS)
    lr = 1e-3
    for row, acc, loss in zip(rep.itertuples(), ACC, LOSS):
        d = mon.step(acc, loss)
        assert (row.phase, row.improved, row.save_best, row.stop) == (
            d.phase, d.improved, d.save_best, d.stop)
        assert (row.c, row.s) == (mon.wait, mon.reductions)
        assert row.lr == pytest.approx(lr)
        lr *= d.lr_factor
        assert row.lr_next == pytest.approx(lr)
    assert mon.stopped


def test_first_phase_b_epoch_is_saved_even_if_worse() -> None:
    # e1 A saved (0.5); e2 B: 0.7 is worse than 0.5 but the phase-B tracker starts at inf -> saved
    rep = replay([0.8, 0.95], [0.5, 0.7])
    assert list(rep["theta_star_epoch"]) == [1, 2]
    assert "first phase-B value" in rep["why"].iloc[1]
    # the baseline keeps epoch 1 on the same losses
    assert plateau_baseline([0.5, 0.7])["theta_star_epoch"].iloc[-1] == 1


def test_replay_without_stop_covers_all_epochs_and_none_theta() -> None:
    # phase A, train acc improves but val loss is nan: never saved, never cut
    rep = replay([0.1, 0.2, 0.3], [math.nan] * 3)
    assert len(rep) == 3 and not rep["stop"].any()
    assert list(rep["theta_star_epoch"]) == [None, None, None]
    assert "theta* stays unset" in rep["why"].iloc[1]
    with pytest.raises(ValueError):
        replay([0.1, 0.2], [0.5])


def test_why_mentions_phase_and_decision() -> None:
    why = list(replay(ACC, LOSS)["why"])
    assert why[1].startswith("phase A (train acc 0.8 < T=0.9)")
    assert "improved on 0.7" in why[1] and "theta* = epoch 2" in why[1]
    assert "did not beat 0.8 -> c=1" in why[2]
    assert "reaches p=2" in why[3] and "0.001 -> 0.0005" in why[3] and "s=1" in why[3]
    assert why[4].startswith("phase B (train acc 0.92 >= T=0.9)") and "theta* = epoch 5" in why[4]
    assert "stop" in why[6] and "restore theta* = epoch 5" in why[6]


# patience=2, factor=0.5, stop_patience=2, lr=1e-3; a cut needs bad epochs > 2
PLATEAU = [1.0, 0.8, 0.9, 0.85, 0.81, 0.7, 0.75, 0.72, 0.71, 0.74, 0.73]
# e1 1.0 < inf best, bad=0, theta*=1      e2 0.8 best, bad=0, theta*=2
# e3 0.9 bad=1                             e4 0.85 bad=2 (not > 2: no cut; the dual monitor would)
# e5 0.81 bad=3 > 2: cut 1e-3 -> 5e-4, bad=0, cuts=1
# e6 0.7 best, theta*=6 (runs at 5e-4)    e7 bad=1   e8 bad=2
# e9 0.71 bad=3: cut 5e-4 -> 2.5e-4, cuts=2 >= 2 -> stop (e10, e11 never replayed)


def test_plateau_baseline_hand_case() -> None:
    base = plateau_baseline(PLATEAU)
    assert list(base["epoch"]) == list(range(1, 10))
    assert [int(e) for e in base.loc[base["lr_factor"] != 1.0, "epoch"]] == [5, 9]
    assert list(base["c"]) == [0, 0, 1, 2, 0, 0, 1, 2, 0]
    assert list(base["s"]) == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert list(base["lr"]) == pytest.approx([1e-3] * 5 + [5e-4] * 4)
    assert base["theta_star_epoch"].iloc[-1] == 6
    assert list(base["stop"]) == [False] * 8 + [True]
    assert "bad=3 > patience=2" in base["why"].iloc[4]


def test_plateau_baseline_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    losses = [0.9, 0.8, 0.8, 0.85, 0.8, 0.79, 0.79, 0.79, 0.79, 0.7, 0.71, 0.72, 0.73, 0.74,
              0.75, 0.76]  # ties count as bad epochs
    for patience in (1, 2, 3):
        base = plateau_baseline(losses, patience=patience, factor=0.5, stop_patience=3)
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=1e-3)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=patience,
                                                           factor=0.5, threshold=0)
        for row, loss in zip(base.itertuples(), losses):
            assert opt.param_groups[0]["lr"] == pytest.approx(row.lr)
            sched.step(loss)
            assert opt.param_groups[0]["lr"] == pytest.approx(row.lr_next), (patience, row.epoch)


def test_simulated_run_kinds_and_determinism() -> None:
    a, b = simulated_run(seed=3), simulated_run(seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not simulated_run(seed=4).equals(a)
    assert list(a.columns) == ["epoch", "train_acc", "val_loss", "val_acc", "train_loss"]
    for seed in range(5):
        typical = simulated_run(seed=seed, kind="typical")
        first = int(typical.loc[typical["train_acc"] >= 0.9, "epoch"].min())
        assert first in (3, 4)
        assert typical["val_loss"].idxmin() < len(typical) - 3  # overfits later
        assert simulated_run(seed=seed, kind="slow")["train_acc"].max() < 0.9
        noisy = simulated_run(seed=seed, kind="noisy")["train_acc"].iloc[3:]
        assert (noisy >= 0.9).any() and (noisy < 0.9).any()
    assert len(simulated_run(epochs=7)) == 7
    with pytest.raises(ValueError):
        simulated_run(kind="weird")


def test_from_history(tmp_path: Path) -> None:
    hist = pd.DataFrame({"epoch": [1, 2, 2, 3], "train_acc": [0.5, 0.6, 0.65, 0.7],
                         "val_loss": [0.9, 0.8, 0.75, 0.7], "lr": [1e-3] * 4})
    hist.to_csv(tmp_path / "history.csv", index=False)
    expected = ([0.5, 0.65, 0.7], [0.9, 0.75, 0.7])  # the resumed epoch 2 wins
    assert from_history(tmp_path) == expected
    assert from_history(tmp_path / "history.csv") == expected
    assert from_history(hist) == expected
    with pytest.raises(FileNotFoundError):
        from_history(tmp_path / "missing")


def test_compare_on_hand_cases() -> None:
    table = compare(replay(ACC, LOSS), plateau_baseline(LOSS))
    dual, base = table["dual monitor"], table["ReduceLROnPlateau + early stop"]
    assert dual["theta* epoch (weights kept)"] == 5 and dual["stopped after epoch"] == 7
    assert dual["LR cut after epochs"] == "4, 7"
    # baseline on LOSS: best 0.40 at e5, bad e6..e8, cut at e8 (bad=3), e9 bad=1, no stop
    assert base["LR cut after epochs"] == "8" and base["stopped after epoch"] == "did not stop"
    assert base["theta* epoch (weights kept)"] == 5


def test_plot_replay_returns_figure() -> None:
    curves = simulated_run(kind="noisy")
    rep, base = replay(curves["train_acc"], curves["val_loss"]), plateau_baseline(curves["val_loss"])
    for fig in (plot_replay(rep), plot_replay(rep, base), plot_replay(rep, base, upto=3)):
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 4
        assert fig.axes[2].get_yscale() == "log"


def test_step_through_static(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    rep = replay(ACC, LOSS)
    view = step_through(rep, plateau_baseline(LOSS), static=True)
    out = capsys.readouterr().out
    assert view.mode == "static" and view.reason == "static=True"
    assert isinstance(view.figure, Figure)
    assert "theta_star_epoch" in out and "restore theta* = epoch 5" in out
    assert "plateau: val loss" in out  # the baseline table is rendered too
    pd.testing.assert_frame_equal(view.table, state_table(rep))
    # outside a kernel, and when forced by the environment, static is chosen without asking
    assert headless_reason() is not None
    monkeypatch.setenv("MEDTL_STATIC", "1")
    assert headless_reason() == "MEDTL_STATIC is set"
    assert step_through(rep).mode == "static"


def test_notebook_02_runs_headless(tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    source = nbformat.read(NOTEBOOK, as_version=4)
    for cell in source.cells:  # the committed notebook is clean
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert any("parameters" in c.metadata.get("tags", []) for c in source.cells)
    figure = tmp_path / "replay.png"
    out = tmp_path / "out02.ipynb"
    # kernel "python3" runs the interpreter running these tests (jupyter_client maps "python")
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(tmp_path),
        parameters={"static": True, "figure_out": str(figure)},
        progress_bar=False, execution_timeout=300,
    )
    ran = nbformat.read(out, as_version=4)
    code = [c for c in ran.cells if c.cell_type == "code"]
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert sum(1 for c in code if c.outputs) >= 5
    step = next(c for c in code if "step_through(" in c.source)
    kinds = {k for o in step.outputs for k in o.get("data", {})}
    assert "image/png" in kinds and "text/html" in kinds  # figure and styled table
    assert any("Static view" in o.get("text", "") for o in step.outputs)
    assert figure.is_file() and figure.stat().st_size > 10_000
