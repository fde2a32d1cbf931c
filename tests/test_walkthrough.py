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

from medtl_lib.teaching.walkthrough import (
    check_history,
    compare,
    find_disagreement,
    from_history,
    open_reading_cases,
    plateau_baseline,
    plateau_lrs_torch,
    reading_differences,
    recorded_runs,
    replay,
    replay_readings,
    run_label,
    schedule_history,
    simulated_run,
)
from medtl_lib.teaching.walkthrough_view import (
    NEVER_USED,
    full_table,
    headless_reason,
    plot_readings,
    plot_replay,
    state_table,
    step_through,
)
from medtl_lib.training.dual_monitor import DualMonitor, Readings

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
    # the cut of the stopping epoch ends training: it is listed, marked as never applied
    assert dual["LR cut after epochs"] == "4, 7 (stop: never applied)"
    # the LR after the last epoch is never used, so the table shows the last LR trained at
    assert "final LR" not in table.index
    assert dual["LR in the last epoch trained"] == pytest.approx(5e-4)
    assert dual["lowest val loss (epoch)"] == "0.4 (epoch 5)"
    # baseline on LOSS: best 0.40 at e5, bad e6..e8, cut at e8 (bad=3), e9 bad=1, no stop
    assert base["LR cut after epochs"] == "8" and base["stopped after epoch"] == "did not stop"
    assert base["theta* epoch (weights kept)"] == 5
    assert base["LR in the last epoch trained"] == pytest.approx(5e-4)  # e9 runs after the cut


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


# ----------------------------------------------------------------------------- open readings

def test_replay_records_readings_and_explains_the_other_ones() -> None:
    assert replay(ACC, LOSS).attrs["readings_label"] == "kit readings"
    # (a) the hand case of test_first_phase_b_epoch_is_saved_even_if_worse, other reading
    rep = replay([0.8, 0.95], [0.5, 0.7], readings=Readings(rule_b_best="all_epochs"))
    assert rep.attrs["readings"]["rule_b_best"] == "all_epochs"
    assert list(rep["theta_star_epoch"]) == [1, 1]
    assert "val loss 0.7 did not beat best of all epochs 0.5 -> c=1" in rep["why"].iloc[1]
    # (b) on ACC/LOSS epoch 3 (0.55) is no new low; epoch 5 (0.40) is the lowest of all
    rep = replay(ACC, LOSS, readings={"k_star": "argmin_val_loss"})
    assert list(rep["theta_star_epoch"]) == [1, 2, 2, 2, 5, 5, 5]
    assert "val loss 0.5 is the lowest so far (was 0.6) -> theta* = epoch 2 (k* = argmin)" in (
        rep["why"].iloc[1])
    assert "val loss not below the lowest 0.4 -> theta* stays epoch 5" in rep["why"].iloc[5]
    # (c) e5 of the case-2 table: a switch B -> A with c=1 carried over
    accs, losses = [0.80, 0.80, 0.91, 0.93, 0.89], [1.00, 0.90, 1.10, 1.20, 0.80]
    rep = replay(accs, losses, stop_patience=3, readings=Readings(c_at_switch="reset"))
    assert "phase switch -> c reset from 1 to 0; train acc did not beat 0.93 -> c=1" in (
        rep["why"].iloc[4])
    assert "phase switch -> c reset from 1 to 0" in rep["why"].iloc[2]  # progress anyway
    assert "phase switch" not in rep["why"].iloc[3]  # no switch
    assert list(replay(accs, losses, stop_patience=3)["lr_factor"]) == [1, 1, 1, 1, 0.5]
    assert list(rep["lr_factor"]) == [1, 1, 1, 1, 1]


def test_reading_differences_lists_each_changed_decision() -> None:
    kit = replay([0.8, 0.95], [0.5, 0.7])
    other = replay([0.8, 0.95], [0.5, 0.7], readings=Readings(rule_b_best="all_epochs"))
    diff = reading_differences(kit, other)
    assert list(diff["epoch"]) == [2]
    assert diff["differs"].iloc[0] == ("improved: True -> False; c: 0 -> 1; save_best: True -> "
                                       "False; theta_star_epoch: 2 -> 1")
    assert diff["why_kit"].iloc[0] == kit["why"].iloc[1]
    assert reading_differences(kit, kit).empty
    # an epoch only one replay reaches is a difference too: ACC/LOSS stop at e7 under the kit
    longer = replay(ACC, LOSS, stop_patience=3)
    tail = reading_differences(replay(ACC, LOSS), longer)
    assert list(tail["epoch"])[-2:] == [8, 9]
    assert "only the other reading trains this epoch" in tail["differs"].iloc[-1]


def test_replay_readings_and_cases_fall_back_to_a_curve_that_shows_them() -> None:
    typical = simulated_run(kind="typical")
    frames = replay_readings(typical["train_acc"], typical["val_loss"])
    assert list(frames) == ["kit", "rule_b_best", "k_star", "c_at_switch", "best_train_acc"]
    # the default typical curve: no reading changes a decision ...
    for name in ("rule_b_best", "k_star", "c_at_switch", "best_train_acc"):
        assert reading_differences(frames["kit"], frames[name]).empty
    assert find_disagreement("k_star", kinds=["typical"], seeds=[0]) is None
    # ... so each case replays the first simulated curve where it does, and says which
    cases = open_reading_cases(typical["train_acc"], typical["val_loss"], "mine")
    assert [c.name for c in cases] == ["rule_b_best", "k_star", "c_at_switch", "best_train_acc"]
    for case in cases:
        assert not case.on_own_curve and case.curve.startswith("simulated '")
        assert len(case.differences) > 0
        assert case.other.attrs["readings_label"] == case.label
    # on a curve where a reading does matter, the student's own curve is used
    noisy = simulated_run(kind="noisy", seed=0)
    own = open_reading_cases(noisy["train_acc"], noisy["val_loss"], "noisy 0")[0]
    assert own.on_own_curve and own.curve == "noisy 0" and len(own.differences) == 3


def test_plot_readings_draws_two_panels_per_reading() -> None:
    noisy = simulated_run(kind="noisy", seed=1)
    frames = replay_readings(noisy["train_acc"], noisy["val_loss"])
    fig = plot_readings({n: (frames["kit"], frames[n]) for n in ("k_star", "c_at_switch")})
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert fig.axes[2].get_yscale() == "log" or fig.axes[3].get_yscale() == "log"


# ----------------------------------------------------------------------------- tables and view

def test_state_table_marks_the_unused_last_lr_and_shows_full_reasons() -> None:
    rep = replay(ACC, LOSS)
    table = state_table(rep)
    assert table["lr_next"].iloc[:-1].tolist() == pytest.approx(list(rep["lr_next"].iloc[:-1]))
    assert math.isnan(table["lr_next"].iloc[-1])  # the stopping epoch: never used
    html = full_table(table).to_html()
    longest = max(rep["why"], key=len)
    escaped = longest.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert len(longest) > 100 and escaped in html  # whole (not cut at 50) and escaped
    assert "never used (stopped)" in html


def test_slider_is_an_intslider_and_redraws_with_the_baseline(monkeypatch, capsys) -> None:
    W = pytest.importorskip("ipywidgets")
    import medtl_lib.teaching.walkthrough_view as view

    figures: list[Figure] = []
    monkeypatch.setattr(view, "_show_figure", figures.append)
    curves = simulated_run()
    rep, base = replay(curves["train_acc"], curves["val_loss"]), plateau_baseline(curves["val_loss"])
    shown = view._widget_view(rep, base, state_table(rep), "simulated")
    slider = shown.widget.children[0].children[1]
    assert isinstance(slider, W.IntSlider) and (slider.min, slider.max) == (1, 15)
    assert len(figures) == 1  # drawn once on display
    capsys.readouterr()
    slider.value = 12
    assert len(figures) == 2
    fig = figures[-1]
    assert "state after epoch 12" in fig._suptitle.get_text()
    labels = [line.get_label() for line in fig.axes[2].get_lines()]
    assert "ReduceLROnPlateau" in labels and "dual monitor" in labels  # both LR traces
    out = capsys.readouterr().out
    assert "epoch 12, dual monitor: phase B" in out
    assert "epoch 12, ReduceLROnPlateau: val loss 0.3099 did not beat 0.2948 -> bad=3" in out
    slider.value = 15  # the dual monitor stopped after 13; the baseline's last epoch
    out = capsys.readouterr().out
    assert "(the dual monitor stopped after epoch 13)" in out and NEVER_USED in out


def test_step_through_static_with_baseline_labels_the_source(capsys) -> None:
    rep, base = replay(ACC, LOSS), plateau_baseline(LOSS)
    view = step_through(rep, base, static=True, source="hand-made curve")
    out = capsys.readouterr().out
    assert "ReduceLROnPlateau + early stopping on the same validation losses" in out
    assert "vs ReduceLROnPlateau" in view.figure._suptitle.get_text()
    assert "hand-made curve" in view.figure._suptitle.get_text()


# ----------------------------------------------------------------------------- torch, recorded runs

def test_plateau_lrs_torch_is_the_baseline() -> None:
    pytest.importorskip("torch")
    for kind in ("typical", "noisy", "slow"):
        losses = list(simulated_run(kind=kind, seed=2)["val_loss"])
        for patience in (1, 2):
            base = plateau_baseline(losses, patience=patience, stop_patience=99)
            assert plateau_lrs_torch(losses, patience=patience) == pytest.approx(list(base["lr"]))


def test_check_history_against_the_trainers_schedule() -> None:
    noisy = simulated_run(kind="noisy", seed=1)
    hist = schedule_history(noisy["train_acc"], noisy["val_loss"])
    table, verdict = check_history(hist)
    assert bool(table["agree"].all()) and "all 9 epochs agree" in verdict
    assert {"c (logged)", "c (replay)", "save_best (logged)", "lr (replay)"} <= set(table)
    broken = hist.copy()
    broken.loc[2, "c"] = 5
    table, verdict = check_history(broken)
    assert list(table.loc[~table["agree"], "epoch"]) == [3] and "1 of 9 epochs differ" in verdict
    # another schedule: nothing to check, and the verdict says so
    other = hist.drop(columns=["phase", "c", "s", "lr_factor"])
    other.attrs["config"] = {"schedule": "cosine"}
    assert "schedule 'cosine', not the dual monitor" in check_history(other)[1]
    # select_by="val_loss" keeps the lowest val loss: replayed under the k* = argmin reading
    argmin = hist.copy()
    argmin.attrs["config"] = dict(hist.attrs["config"], select_by="val_loss")
    assert "k_star=argmin_val_loss" in check_history(argmin)[1]


def test_recorded_runs_finds_dual_monitor_runs_first(tmp_path: Path) -> None:
    def write(rel: str, columns: str) -> Path:
        run = tmp_path / rel
        run.mkdir(parents=True)
        (run / "history.csv").write_text(columns + "\n")
        return run

    cosine = write("seed001/a_cosine", "epoch,train_acc,val_loss,lr")
    other_dual = write("paper/b_dual", "epoch,train_acc,val_loss,lr,phase,c,s")
    smoke_dual = write("smoke/z_dual", "epoch,train_acc,val_loss,lr,phase,c,s")
    top = write("mine", "epoch,train_acc,val_loss,lr,phase,c,s")
    (tmp_path / "empty").mkdir()
    assert recorded_runs(tmp_path) == [smoke_dual, top, other_dual, cosine]
    assert recorded_runs(tmp_path, dual_monitor_only=True) == [smoke_dual, top, other_dual]
    assert recorded_runs(tmp_path / "missing") == []


def test_check_history_on_a_real_training_run(tmp_path: Path) -> None:
    """The trainer's own history.csv agrees with the replay, epoch by epoch (T lowered to 0.4 so
    that this tiny model, near chance, crosses it: here epoch 3 is phase B, epochs 1-2 and 4 A)."""
    pytest.importorskip("torch")
    from medtl_lib.config import RunConfig
    from medtl_lib.data.synthetic import write_synthetic
    from medtl_lib.train_run import train_run

    data = write_synthetic("brain_tumor_mri", tmp_path / "data", n_per_class=8, size=32, seed=0)
    run = tmp_path / "runs" / "smoke" / "tiny"
    train_run(RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                        weights="none", img_size=32, epochs=4, batch_size=8, threshold=0.4,
                        out=str(run)), progress=False, log=lambda *a: None)
    assert recorded_runs(tmp_path / "runs", dual_monitor_only=True) == [run]
    table, verdict = check_history(run)
    assert bool(table["agree"].all()), table.to_string()
    assert "T=0.4" in verdict and "all 4 epochs agree" in verdict
    assert run_label(run).startswith("recorded run tiny - brain_tumor_mri, test_resnet")


# ----------------------------------------------------------------------------- notebook 02

def _notebook_structure(nb) -> None:
    """The course conventions of issue 16, checked on the committed notebook."""
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# 02 ")
    for needle in ("**Learning objectives.** After this notebook you can", "**Time:** about",
                   "on a CPU", "**Prerequisites:**"):
        assert needle in first.source, needle
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "'" not in params[0].source.split("#", 1)[-1]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for reading in ("(a)", "(b)", "(c)"):
        assert f"Open reading {reading}" in text
    assert text.count("**We read it as**") == 3 and text.count("**Under the other reading**") == 3
    exercises = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "markdown" and c.source.startswith("### Exercise ")]
    assert len(exercises) == 6
    for k, i in enumerate(exercises, start=1):
        assert nb.cells[i].source.startswith(f"### Exercise {k}: ")
        sol = nb.cells[i + 1]
        assert sol.cell_type == "code" and sol.metadata.get("tags") == ["solution"]
        assert sol.metadata.get("jupyter") == {"source_hidden": True}
        assert sol.source.splitlines()[0] == f"# Solution to exercise {k}"


def test_notebook_02_runs_headless(tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    nbformat = pytest.importorskip("nbformat")
    source = nbformat.read(NOTEBOOK, as_version=4)
    for cell in source.cells:  # the committed notebook is clean
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    _notebook_structure(source)
    figure = tmp_path / "replay.png"
    out = tmp_path / "out02.ipynb"
    # From notebooks/ as a student opens it; run_dir is relative, so it must resolve against the
    # repository (not notebooks/) and, as there is no such run, fall back loudly to a simulation.
    # kernel "python3" runs the interpreter running these tests (jupyter_client maps "python")
    papermill.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(REPO / "notebooks"),
        parameters={"static": True, "figure_out": str(figure), "run_dir": "runs/no_such_run"},
        progress_bar=False, execution_timeout=300,
    )
    ran = nbformat.read(out, as_version=4)
    code = [c for c in ran.cells if c.cell_type == "code"]
    assert not any(o.output_type == "error" for c in code for o in c.outputs)

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs)

    def html(cell) -> str:
        return "".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)

    by_id = {c.id: c for c in code}
    from medtl_lib.paths import in_repo  # the repository (or $MEDTL_WORKDIR), not notebooks/

    assert f"No history.csv in {in_repo('runs/no_such_run')}" in text(by_id["nb02-05"])
    assert in_repo("runs/no_such_run") != REPO / "notebooks" / "runs" / "no_such_run"
    assert ">>> FALLING BACK TO A SIMULATED CURVE ('typical', seed 0)" in text(by_id["nb02-05"])
    # full reasons, and the unused LR of the stopping epoch marked
    assert "s=2 &gt;= P=2 -&gt; stop, restore theta* = epoch 9" in html(by_id["nb02-07"])
    assert "never used (stopped)" in html(by_id["nb02-07"])
    assert "ReduceLROnPlateau(patience=2) gives the same LR as plateau_baseline in all 15 " \
           "epochs: True" in text(by_id["nb02-11"])
    step = by_id["nb02-09"]
    kinds = {k for o in step.outputs for k in o.get("data", {})}
    assert "image/png" in kinds and "text/html" in kinds  # figure and styled table
    assert "Static view" in text(step) and "ReduceLROnPlateau + early stopping" in text(step)
    readings = text(by_id["nb02-18"])
    for label in ("rule_b_best=all_epochs", "k_star=argmin_val_loss", "c_at_switch=reset"):
        assert f"=== {label}: " in readings
    assert "image/png" in {k for o in by_id["nb02-19"].outputs for k in o.get("data", {})}
    sol = {k: by_id[f"nb02-sol{k}"] for k in range(1, 7)}
    assert "T=0.95: phase B starts in epoch 5, theta* = epoch 9" in text(sol[1])
    assert "lower validation loss kept: baseline" in text(sol[2])
    assert "under rule_b_best=all_epochs the dual monitor keeps epoch 2" in text(sol[4])
    six = text(sol[6])
    assert "agree with the replay" in six  # a recorded run of this checkout, or ...
    if "FALLING BACK TO A SIMULATION" in six:  # ... said loudly when there is none
        assert "No run trained with the dual monitor under" in six
    else:
        assert "checking " in six
    assert figure.is_file() and figure.stat().st_size > 10_000
