"""Tests for ``medtl_lib.training.dual_monitor.DualMonitor``.

The dual monitor (seed paper, Section III.B) decides, once per epoch, whether
to cut the learning rate, whether to save the current weights as theta*, and
whether to stop.  It watches one of two quantities depending on the epoch's
training accuracy relative to the threshold T:

* Phase A (``'train_acc'``), train_acc < T.  Progress means a training
  accuracy *strictly* above the best training accuracy of ALL previous
  epochs (either phase).  Then c = 0, and the weights are saved only if the
  validation loss is also strictly below the phase-A validation tracker
  (which then takes that value).  Otherwise c += 1.
* Phase B (``'val_loss'``), train_acc >= T.  Progress means a validation
  loss strictly below the phase-B tracker ``best_val_loss``: it takes the
  value, c = 0, and the weights are saved.  Otherwise c += 1.
* After an increment, if c >= p: LR cut (lr_factor = factor), c = 0, s += 1.
* ``best_train_acc`` is the maximum training accuracy of all epochs so far;
  it is updated in both phases (in phase B without touching c).
* Nothing is reset at a phase change: c carries over, and the two
  validation-loss trackers are independent of each other.
* stop is True once s >= P (and on every later step).

Every expected value below was derived by hand from those rules; the comment
on each epoch gives the reasoning.  Column legend of the tables:

    (train_acc, val_loss) -> (lr_factor, save_best, stop, phase,
                              c, s, best_train_acc,
                              best_val_loss_in_acc_phase, best_val_loss)

All inputs are stored or compared without arithmetic, so exact equality is
used for floats (expected floats are the very literals fed in).
"""

import copy
import json
import math

import pytest

from medtl_lib.training.dual_monitor import DualMonitor

INF = float("inf")
NAN = float("nan")
A = "train_acc"  # phase A: monitoring training accuracy
B = "val_loss"  # phase B: monitoring validation loss

FIELDS = (
    "lr_factor",
    "save_best",
    "stop",
    "phase",
    "wait",
    "reductions",
    "best_train_acc",
    "best_val_loss_in_acc_phase",
    "best_val_loss",
)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _same(got, exp):
    """Exact comparison; NaN never expected, inf compares equal to inf."""
    if isinstance(exp, bool):
        return isinstance(got, bool) and got is exp
    if isinstance(exp, float):
        return isinstance(got, (int, float)) and not isinstance(got, bool) and got == exp
    return got == exp


def run_trace(monitor, rows):
    """Feed each row's (train_acc, val_loss) to ``monitor.step`` and compare
    the decision and the monitor's state with the rest of the row.

    Row layout: (train_acc, val_loss, lr_factor, save_best, stop, phase,
                 c, s, best_train_acc, best_val_loss_in_acc_phase,
                 best_val_loss)
    Returns the list of decisions.
    """
    decisions = []
    for epoch, row in enumerate(rows, start=1):
        assert len(row) == 2 + len(FIELDS), f"bad table row for epoch {epoch}"
        train_acc, val_loss = row[:2]
        expected = dict(zip(FIELDS, row[2:]))
        d = monitor.step(train_acc, val_loss)
        decisions.append(d)
        got = {
            "lr_factor": d.lr_factor,
            "save_best": d.save_best,
            "stop": d.stop,
            "phase": monitor.phase,
            "wait": monitor.wait,
            "reductions": monitor.reductions,
            "best_train_acc": monitor.best_train_acc,
            "best_val_loss_in_acc_phase": monitor.best_val_loss_in_acc_phase,
            "best_val_loss": monitor.best_val_loss,
        }
        bad = [
            f"{k}: expected {expected[k]!r}, got {got[k]!r}"
            for k in FIELDS
            if not _same(got[k], expected[k])
        ]
        assert not bad, (
            f"epoch {epoch} step(train_acc={train_acc!r}, val_loss={val_loss!r}) "
            "mismatch:\n  " + "\n  ".join(bad)
        )
        assert isinstance(d.lr_factor, float), f"epoch {epoch}: lr_factor not a float"
    return decisions


def snapshot(m):
    return {
        "phase": m.phase,
        "wait": m.wait,
        "reductions": m.reductions,
        "best_train_acc": m.best_train_acc,
        "best_val_loss_in_acc_phase": m.best_val_loss_in_acc_phase,
        "best_val_loss": m.best_val_loss,
    }


def decision_tuple(d):
    return (d.lr_factor, d.save_best, d.stop)


# --------------------------------------------------------------------------
# initial state
# --------------------------------------------------------------------------
def test_initial_state():
    m = DualMonitor()
    assert m.best_train_acc == 0
    assert m.best_val_loss_in_acc_phase == INF
    assert m.best_val_loss == INF
    assert m.wait == 0
    assert m.reductions == 0


# --------------------------------------------------------------------------
# Case 1: the paper's defaults (T=0.9, p=2, P=2, phi=0.5), a typical run
# --------------------------------------------------------------------------
CASE1_DEFAULTS_TYPICAL = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A (0.60<0.9); 0.60 > 0 -> c=0; 1.20 < inf -> phase-A tracker 1.20, save.
    (0.60, 1.20, 1.0, True, False, A, 0, 0, 0.60, 1.20, INF),
    # e2: A; 0.75 > 0.60 -> c=0; 0.90 < 1.20 -> tracker 0.90, save.
    (0.75, 0.90, 1.0, True, False, A, 0, 0, 0.75, 0.90, INF),
    # e3: A; 0.74 <= 0.75 -> c=1 (< p, no cut); no save although the val loss
    #     0.85 is lower: in phase A the val loss only matters on acc progress.
    (0.74, 0.85, 1.0, False, False, A, 1, 0, 0.75, 0.90, INF),
    # e4: A; 0.85 > 0.75 -> c=0; 0.70 < 0.90 -> tracker 0.70, save.
    (0.85, 0.70, 1.0, True, False, A, 0, 0, 0.85, 0.70, INF),
    # e5: B (0.92>=0.9); 0.65 < inf (phase-B tracker fresh) -> best_val_loss
    #     0.65, c=0, save.  Phase-A tracker keeps 0.70.
    (0.92, 0.65, 1.0, True, False, B, 0, 0, 0.92, 0.70, 0.65),
    # e6: B; 0.55 < 0.65 -> best_val_loss 0.55, save.
    (0.95, 0.55, 1.0, True, False, B, 0, 0, 0.95, 0.70, 0.55),
    # e7: B; 0.60 >= 0.55 -> c=1; best_train_acc still follows acc (0.96).
    (0.96, 0.60, 1.0, False, False, B, 1, 0, 0.96, 0.70, 0.55),
    # e8: B; 0.58 >= 0.55 -> c=2 >= p -> cut (0.5), c=0, s=1; 1 < P, no stop.
    (0.97, 0.58, 0.5, False, False, B, 0, 1, 0.97, 0.70, 0.55),
    # e9: B; 0.50 < 0.55 -> best_val_loss 0.50, c=0, save (after the cut).
    (0.97, 0.50, 1.0, True, False, B, 0, 1, 0.97, 0.70, 0.50),
    # e10: B; 0.52 >= 0.50 -> c=1.
    (0.98, 0.52, 1.0, False, False, B, 1, 1, 0.98, 0.70, 0.50),
    # e11: B; 0.51 >= 0.50 -> c=2 -> cut, c=0, s=2 >= P -> stop.
    (0.98, 0.51, 0.5, False, True, B, 0, 2, 0.98, 0.70, 0.50),
]


def test_case1_paper_defaults_typical_run():
    m = DualMonitor()  # defaults: threshold 0.9, patience 2, stop_patience 2, factor 0.5
    decisions = run_trace(m, CASE1_DEFAULTS_TYPICAL)
    # exactly two cuts, and stop only on the last epoch
    assert [d.lr_factor for d in decisions].count(0.5) == 2
    assert [d.stop for d in decisions] == [False] * 10 + [True]


def test_case1_explicit_defaults_match():
    m = DualMonitor(threshold=0.9, patience=2, stop_patience=2, factor=0.5)
    run_trace(m, CASE1_DEFAULTS_TYPICAL)


def test_stop_stays_true_after_reaching_P_and_rules_keep_running():
    m = DualMonitor()
    run_trace(m, CASE1_DEFAULTS_TYPICAL)
    run_trace(
        m,
        [
            # e12: B; 0.45 < 0.50 -> best_val_loss 0.45, c=0, save; s=2 >= P
            #      so stop is still True.
            (0.99, 0.45, 1.0, True, True, B, 0, 2, 0.99, 0.70, 0.45),
            # e13: B; 0.46 >= 0.45 -> c=1; still stop.
            (0.99, 0.46, 1.0, False, True, B, 1, 2, 0.99, 0.70, 0.45),
        ],
    )


# --------------------------------------------------------------------------
# Case 2: phases switching back and forth (T=0.9, p=2, P=3, phi=0.5)
# --------------------------------------------------------------------------
# Note: every phase-B accuracy is >= T > every phase-A accuracy, so once a
# phase-B epoch has happened no later phase-A epoch can beat best_train_acc:
# each such phase-A epoch counts as "no progress" (c += 1), even when its
# accuracy beats all earlier *phase-A* accuracies.
CASE2_BACK_AND_FORTH = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A; 0.80 > 0 -> c=0; 1.00 < inf -> phase-A tracker 1.00, save.
    (0.80, 1.00, 1.0, True, False, A, 0, 0, 0.80, 1.00, INF),
    # e2: A; 0.80 == 0.80 is not > -> c=1; no save (val loss ignored).
    (0.80, 0.90, 1.0, False, False, A, 1, 0, 0.80, 1.00, INF),
    # e3: B (0.91>=0.9); 1.10 < inf (phase-B tracker is its own, +inf, even
    #     though 1.10 is worse than the phase-A tracker 1.00) -> best_val_loss
    #     1.10, c=0 (the c=1 carried from A is reset by progress), save.
    (0.91, 1.10, 1.0, True, False, B, 0, 0, 0.91, 1.00, 1.10),
    # e4: B; 1.20 >= 1.10 -> c=1; best_train_acc -> 0.93.
    (0.93, 1.20, 1.0, False, False, B, 1, 0, 0.93, 1.00, 1.10),
    # e5: A (0.89<0.9); 0.89 > 0.80 (best phase-A acc) but 0.89 <= 0.93 (best
    #     over ALL epochs) -> no progress: c = 1 (carried from B) + 1 = 2 ->
    #     cut, c=0, s=1.  No save though 0.80 < phase-A tracker 1.00.
    (0.89, 0.80, 0.5, False, False, A, 0, 1, 0.93, 1.00, 1.10),
    # e6: A; 0.88 <= 0.93 -> c=1; phase-A tracker stays 1.00.
    (0.88, 0.70, 1.0, False, False, A, 1, 1, 0.93, 1.00, 1.10),
    # e7: B (0.90 == T counts as phase B); 1.15 >= 1.10 -> c = 1 (carried
    #     from A) + 1 = 2 -> cut, c=0, s=2; 2 < P=3, no stop.
    #     best_train_acc stays 0.93 (0.90 is lower).
    (0.90, 1.15, 0.5, False, False, B, 0, 2, 0.93, 1.00, 1.10),
    # e8: B; 1.05 < 1.10 -> best_val_loss 1.05, c=0, save (although 1.05 is
    #     above the phase-A tracker 1.00: the trackers are separate).
    (0.95, 1.05, 1.0, True, False, B, 0, 2, 0.95, 1.00, 1.05),
    # e9: A; 0.85 <= 0.95 -> c=1; no save despite 0.50 < 1.00.
    (0.85, 0.50, 1.0, False, False, A, 1, 2, 0.95, 1.00, 1.05),
    # e10: B; 1.05 == 1.05 is not < -> c=2 -> cut, c=0, s=3 >= P -> stop.
    (0.96, 1.05, 0.5, False, True, B, 0, 3, 0.96, 1.00, 1.05),
]


def test_case2_phase_changes_back_and_forth():
    m = DualMonitor(threshold=0.9, patience=2, stop_patience=3, factor=0.5)
    run_trace(m, CASE2_BACK_AND_FORTH)


def test_case2_phase_a_progress_needs_best_over_all_epochs():
    # A smaller, lower threshold run where a phase-A epoch *can* follow a
    # phase-B epoch with different accuracies: T=0.5, p=3, P=5.
    m = DualMonitor(threshold=0.5, patience=3, stop_patience=5, factor=0.5)
    run_trace(
        m,
        [
            # acc   vloss  lr   save   stop   ph  c  s  best_acc bvA  bvB
            # e1: A (0.40<0.5); 0.40 > 0 -> c=0; 2.0 < inf -> bvA 2.0, save.
            (0.40, 2.0, 1.0, True, False, A, 0, 0, 0.40, 2.0, INF),
            # e2: B (0.60>=0.5); 1.5 < inf -> bvB 1.5, c=0, save; best_acc 0.60.
            (0.60, 1.5, 1.0, True, False, B, 0, 0, 0.60, 2.0, 1.5),
            # e3: A; 0.45 > 0.40 (best phase-A acc) but <= 0.60 (best over all,
            #     set in phase B) -> c=1; no save though 1.0 < bvA 2.0.
            (0.45, 1.0, 1.0, False, False, A, 1, 0, 0.60, 2.0, 1.5),
            # e4: A; 0.49 <= 0.60 -> c=2.
            (0.49, 0.9, 1.0, False, False, A, 2, 0, 0.60, 2.0, 1.5),
            # e5: B; 1.5 == bvB -> c=3 >= p -> cut, c=0, s=1.
            (0.55, 1.5, 0.5, False, False, B, 0, 1, 0.60, 2.0, 1.5),
        ],
    )


# --------------------------------------------------------------------------
# Case 3: ties are never improvements (T=0.9, p=2, P=2, phi=0.5)
# --------------------------------------------------------------------------
CASE3_TIES = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A; 0.70 > 0 -> c=0; 0.80 < inf -> bvA 0.80, save.
    (0.70, 0.80, 1.0, True, False, A, 0, 0, 0.70, 0.80, INF),
    # e2: A; train acc tie 0.70 == 0.70 -> not an improvement: c=1, no save
    #     (even with a better val loss 0.60).
    (0.70, 0.60, 1.0, False, False, A, 1, 0, 0.70, 0.80, INF),
    # e3: A; 0.75 > 0.70 -> c=0; val loss tie 0.80 == bvA -> not saved,
    #     bvA unchanged.
    (0.75, 0.80, 1.0, False, False, A, 0, 0, 0.75, 0.80, INF),
    # e4: A; 0.80 > 0.75 -> c=0 (already 0); 0.85 > bvA 0.80 -> no save.
    (0.80, 0.85, 1.0, False, False, A, 0, 0, 0.80, 0.80, INF),
    # e5: A; tie 0.80 -> c=1.
    (0.80, 0.85, 1.0, False, False, A, 1, 0, 0.80, 0.80, INF),
    # e6: B; 0.50 < inf -> bvB 0.50, c=0, save.
    (0.92, 0.50, 1.0, True, False, B, 0, 0, 0.92, 0.80, 0.50),
    # e7: B; val loss tie 0.50 == bvB -> c=1, no save (acc 0.93 irrelevant
    #     for c in phase B, but best_train_acc follows it).
    (0.93, 0.50, 1.0, False, False, B, 1, 0, 0.93, 0.80, 0.50),
    # e8: B; tie again -> c=2 -> cut, c=0, s=1.
    (0.94, 0.50, 0.5, False, False, B, 0, 1, 0.94, 0.80, 0.50),
    # e9: B; 0.49 < 0.50 -> bvB 0.49, c=0, save.
    (0.95, 0.49, 1.0, True, False, B, 0, 1, 0.95, 0.80, 0.49),
]


def test_case3_ties_are_not_improvements():
    m = DualMonitor()
    run_trace(m, CASE3_TIES)


# --------------------------------------------------------------------------
# Case 4: never reaching T -- phase A throughout (defaults)
# --------------------------------------------------------------------------
CASE4_ALL_PHASE_A = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A; 0.50 > 0 -> c=0; 1.00 < inf -> bvA 1.00, save.
    (0.50, 1.00, 1.0, True, False, A, 0, 0, 0.50, 1.00, INF),
    # e2: A; 0.45 <= 0.50 -> c=1.
    (0.45, 0.90, 1.0, False, False, A, 1, 0, 0.50, 1.00, INF),
    # e3: A; 0.60 > 0.50 -> c=0 (reset); val loss worsens 1.10 >= 1.00 ->
    #     no save, bvA unchanged.
    (0.60, 1.10, 1.0, False, False, A, 0, 0, 0.60, 1.00, INF),
    # e4: A; tie 0.60 -> c=1.
    (0.60, 0.90, 1.0, False, False, A, 1, 0, 0.60, 1.00, INF),
    # e5: A; 0.55 <= 0.60 -> c=2 -> cut, c=0, s=1.
    (0.55, 0.80, 0.5, False, False, A, 0, 1, 0.60, 1.00, INF),
    # e6: A; 0.65 > 0.60 -> c=0; 0.95 < 1.00 -> bvA 0.95, save.
    (0.65, 0.95, 1.0, True, False, A, 0, 1, 0.65, 0.95, INF),
    # e7: A; 0.64 <= 0.65 -> c=1.
    (0.64, 0.70, 1.0, False, False, A, 1, 1, 0.65, 0.95, INF),
    # e8: A; tie 0.65 -> c=2 -> cut, c=0, s=2 >= P -> stop.
    #     The phase-B tracker never moved: still +inf.
    (0.65, 0.60, 0.5, False, True, A, 0, 2, 0.65, 0.95, INF),
]


def test_case4_never_reaches_threshold():
    m = DualMonitor()
    run_trace(m, CASE4_ALL_PHASE_A)


# --------------------------------------------------------------------------
# Case 5: non-default parameters
# --------------------------------------------------------------------------
CASE5_T1_P1_S3_F01 = [
    # threshold 1.0, patience 1, stop_patience 3, factor 0.1
    # acc    vloss  lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A (0.90<1.0); 0.90 > 0 -> c=0; 0.80 < inf -> bvA 0.80, save.
    (0.90, 0.80, 1.0, True, False, A, 0, 0, 0.90, 0.80, INF),
    # e2: A; tie 0.90 -> c=1 >= p=1 -> cut immediately (0.1), c=0, s=1.
    (0.90, 0.70, 0.1, False, False, A, 0, 1, 0.90, 0.80, INF),
    # e3: A; 0.99 > 0.90 -> c=0; 0.75 < bvA 0.80 (e2's 0.70 was not
    #     recorded) -> bvA 0.75, save.
    (0.99, 0.75, 1.0, True, False, A, 0, 1, 0.99, 0.75, INF),
    # e4: B, since 1.0 >= T=1.0; 0.90 < inf -> bvB 0.90, c=0, save.
    (1.00, 0.90, 1.0, True, False, B, 0, 1, 1.00, 0.75, 0.90),
    # e5: B; 0.95 >= 0.90 -> c=1 -> cut, c=0, s=2; 2 < P=3.
    (1.00, 0.95, 0.1, False, False, B, 0, 2, 1.00, 0.75, 0.90),
    # e6: A (0.995<1.0); 0.995 <= 1.00 -> c=1 -> cut, c=0, s=3 -> stop.
    (0.995, 0.60, 0.1, False, True, A, 0, 3, 1.00, 0.75, 0.90),
]


def test_case5_non_default_parameters():
    m = DualMonitor(threshold=1.0, patience=1, stop_patience=3, factor=0.1)
    run_trace(m, CASE5_T1_P1_S3_F01)


def test_case5_patience3_stop_patience1():
    # threshold 0.5, patience 3, stop_patience 1, factor 0.9:
    # the first cut already stops.
    m = DualMonitor(threshold=0.5, patience=3, stop_patience=1, factor=0.9)
    run_trace(
        m,
        [
            # acc  vloss  lr   save   stop   ph  c  s  best_acc bvA bvB
            # e1: A; 0.2 > 0 -> c=0; 1.0 < inf -> bvA 1.0, save.
            (0.2, 1.0, 1.0, True, False, A, 0, 0, 0.2, 1.0, INF),
            # e2: A; tie 0.2 -> c=1 (< 3).
            (0.2, 1.0, 1.0, False, False, A, 1, 0, 0.2, 1.0, INF),
            # e3: A; 0.1 <= 0.2 -> c=2 (< 3).
            (0.1, 1.0, 1.0, False, False, A, 2, 0, 0.2, 1.0, INF),
            # e4: A; tie 0.2 -> c=3 >= 3 -> cut (0.9), c=0, s=1 >= P=1 -> stop.
            (0.2, 0.5, 0.9, False, True, A, 0, 1, 0.2, 1.0, INF),
            # e5: B (0.5 == T); 0.7 < inf -> bvB 0.7, c=0, save; stop stays.
            (0.5, 0.7, 1.0, True, True, B, 0, 1, 0.5, 1.0, 0.7),
        ],
    )


# --------------------------------------------------------------------------
# Case 6a: constructor validation
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": -0.1},
        {"threshold": 1.0000001},
        {"threshold": 1.5},
        {"patience": 0},
        {"patience": -1},
        {"stop_patience": 0},
        {"stop_patience": -2},
        {"factor": 0.0},
        {"factor": 1.0},
        {"factor": 1.5},
        {"factor": -0.5},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_constructor_rejects_invalid(kwargs):
    with pytest.raises(ValueError):
        DualMonitor(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": NAN}, {"factor": NAN}],
    ids=["threshold=nan", "factor=nan"],
)
def test_constructor_rejects_nan(kwargs):
    # NaN is not in (0, 1] nor in (0, 1).
    with pytest.raises(ValueError):
        DualMonitor(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"threshold": 1.0},  # upper bound of (0, 1] is allowed
        {"threshold": 1e-9},
        {"patience": 1},
        {"stop_patience": 1},
        {"factor": 1e-6},
        {"factor": 0.999},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults",
)
def test_constructor_accepts_valid(kwargs):
    DualMonitor(**kwargs)


# --------------------------------------------------------------------------
# Case 6b: state_dict / load_state_dict
# --------------------------------------------------------------------------
CASE2_PARAMS = dict(threshold=0.9, patience=2, stop_patience=3, factor=0.5)


def test_state_dict_is_plain_and_json_serialisable():
    m = DualMonitor(**CASE2_PARAMS)
    for acc, vl, *_ in CASE2_BACK_AND_FORTH[:5]:
        m.step(acc, vl)
    sd = m.state_dict()
    assert isinstance(sd, dict)
    # json.dumps accepts float('inf') by default (as "Infinity"); we do not
    # require loading it back.
    json.dumps(sd)
    # a fresh monitor (best_val_loss etc. at +inf) must serialise too
    json.dumps(DualMonitor().state_dict())


@pytest.mark.parametrize("k", range(len(CASE2_BACK_AND_FORTH) + 1))
def test_state_dict_round_trip_continues_identically(k):
    """Run k steps, save, restore into a fresh monitor, continue both with
    the same inputs: decisions and states must be identical."""
    steps = [row[:2] for row in CASE2_BACK_AND_FORTH]
    # extra epochs after the table's end so that even k = len(table) continues
    steps += [(0.97, 1.00), (0.50, 0.40), (0.97, 1.01)]

    original = DualMonitor(**CASE2_PARAMS)
    for acc, vl in steps[:k]:
        original.step(acc, vl)

    sd = copy.deepcopy(original.state_dict())
    restored = DualMonitor(**CASE2_PARAMS)
    restored.load_state_dict(sd)
    if k > 0:
        assert snapshot(restored) == snapshot(original)
    assert restored.state_dict() == original.state_dict()

    for epoch, (acc, vl) in enumerate(steps[k:], start=k + 1):
        d_orig = original.step(acc, vl)
        d_rest = restored.step(acc, vl)
        assert decision_tuple(d_rest) == decision_tuple(d_orig), f"epoch {epoch}"
        assert snapshot(restored) == snapshot(original), f"epoch {epoch}"


def test_state_dict_round_trip_matches_hand_trace():
    # Restore after epoch 5 of the case-2 table, then check the restored
    # monitor against the hand-derived rows for epochs 6..10.
    m = DualMonitor(**CASE2_PARAMS)
    run_trace(m, CASE2_BACK_AND_FORTH[:5])
    restored = DualMonitor(**CASE2_PARAMS)
    restored.load_state_dict(copy.deepcopy(m.state_dict()))
    run_trace(restored, CASE2_BACK_AND_FORTH[5:])


def test_load_state_dict_restores_counters_and_trackers():
    # Restore a monitor that has already cut once and has c = 1 in phase B,
    # then check the very next decision (hand-derived) on the restored one.
    m = DualMonitor()
    run_trace(m, CASE1_DEFAULTS_TYPICAL[:7])  # after e7: B, c=1, s=0, bvB 0.55
    restored = DualMonitor()
    restored.load_state_dict(copy.deepcopy(m.state_dict()))
    run_trace(
        restored,
        [
            # e8 of case 1 replayed on the restored monitor: 0.58 >= 0.55 ->
            # c = 1 + 1 = 2 -> cut, c=0, s=1.
            (0.97, 0.58, 0.5, False, False, B, 0, 1, 0.97, 0.70, 0.55),
        ],
    )


# --------------------------------------------------------------------------
# Case 7: the first epoch
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, first, expected",
    [
        # phase A, any acc > 0 and finite loss: progress (> 0) and loss < inf
        # -> save, c=0, bvA takes the loss.
        ({}, (0.01, 5.0), (1.0, True, False, A, 0, 0, 0.01, 5.0, INF)),
        ({}, (0.50, 0.30), (1.0, True, False, A, 0, 0, 0.50, 0.30, INF)),
        # phase B first: loss < inf -> save, c=0, bvB takes the loss;
        # best_train_acc becomes 0.95; bvA untouched.
        ({}, (0.95, 100.0), (1.0, True, False, B, 0, 0, 0.95, INF, 100.0)),
        # T = 1.0 and acc exactly 1.0 -> phase B.
        (
            {"threshold": 1.0},
            (1.0, 0.2),
            (1.0, True, False, B, 0, 0, 1.0, INF, 0.2),
        ),
    ],
    ids=["A-small-acc", "A-typical", "B-first", "B-T1-acc1"],
)
def test_case7_first_epoch_saves(kwargs, first, expected):
    m = DualMonitor(**kwargs)
    run_trace(m, [first + expected])


def test_case7_first_epoch_with_zero_train_acc_is_not_progress():
    m = DualMonitor()
    run_trace(
        m,
        [
            # acc  vloss  lr   save   stop   ph  c  s  best_acc bvA  bvB
            # e1: A; 0.0 > 0 is false -> c=1, no save, bvA stays +inf.
            (0.0, 1.0, 1.0, False, False, A, 1, 0, 0.0, INF, INF),
            # e2: A; 0.0 again -> c=2 -> cut, c=0, s=1.
            (0.0, 0.9, 0.5, False, False, A, 0, 1, 0.0, INF, INF),
            # e3: A; 0.1 > 0 -> c=0; 2.0 < inf -> bvA 2.0, save (first save).
            (0.1, 2.0, 1.0, True, False, A, 0, 1, 0.1, 2.0, INF),
        ],
    )


# --------------------------------------------------------------------------
# NaN validation loss: never an improvement (NaN < x is False)
# --------------------------------------------------------------------------
def test_nan_val_loss_in_phase_b_increments_c():
    m = DualMonitor()
    run_trace(
        m,
        [
            # acc  vloss  lr   save   stop   ph  c  s  best_acc bvA bvB
            # e1: B; 0.5 < inf -> bvB 0.5, save.
            (0.95, 0.5, 1.0, True, False, B, 0, 0, 0.95, INF, 0.5),
            # e2: B; NaN < 0.5 is False -> c=1, no save, bvB unchanged.
            (0.95, NAN, 1.0, False, False, B, 1, 0, 0.95, INF, 0.5),
            # e3: B; NaN again -> c=2 -> cut, c=0, s=1.
            (0.95, NAN, 0.5, False, False, B, 0, 1, 0.95, INF, 0.5),
        ],
    )


def test_nan_val_loss_first_epoch_phase_b():
    m = DualMonitor()
    run_trace(
        m,
        [
            # e1: B; NaN < inf is False -> c=1, no save, bvB stays +inf.
            (0.95, NAN, 1.0, False, False, B, 1, 0, 0.95, INF, INF),
        ],
    )
    assert not math.isnan(m.best_val_loss)


def test_nan_val_loss_in_phase_a_with_acc_progress():
    m = DualMonitor()
    run_trace(
        m,
        [
            # e1: A; 0.5 > 0 -> c=0; NaN < inf is False -> no save, bvA +inf.
            (0.5, NAN, 1.0, False, False, A, 0, 0, 0.5, INF, INF),
            # e2: A; 0.6 > 0.5 -> c=0; 0.8 < inf -> bvA 0.8, save.
            (0.6, 0.8, 1.0, True, False, A, 0, 0, 0.6, 0.8, INF),
        ],
    )


# --------------------------------------------------------------------------
# The three open readings (Readings): the kit's default and each other one
# --------------------------------------------------------------------------
from medtl_lib.training.dual_monitor import READING_VALUES, Readings  # noqa: E402

DEFAULT_STATE_KEYS = ["threshold", "patience", "stop_patience", "factor", "phase", "wait",
                      "reductions", "best_train_acc", "best_val_loss_in_acc_phase",
                      "best_val_loss", "epochs_seen"]


def test_default_readings_leave_the_monitor_unchanged():
    # explicit default readings give the very traces above, and the checkpoint state keeps
    # exactly its old keys (the trainer's checkpoints must not change)
    for table, params in ((CASE1_DEFAULTS_TYPICAL, {}), (CASE2_BACK_AND_FORTH, CASE2_PARAMS),
                          (CASE3_TIES, {})):
        run_trace(DualMonitor(**params, readings=Readings()), table)
        run_trace(DualMonitor(**params, readings={}), table)
    m = DualMonitor(readings=Readings())
    run_trace(m, CASE1_DEFAULTS_TYPICAL)
    assert list(m.state_dict()) == DEFAULT_STATE_KEYS
    assert list(DualMonitor().state_dict()) == DEFAULT_STATE_KEYS
    assert "readings" not in repr(DualMonitor())


def test_readings_values_and_labels():
    assert Readings().is_default and Readings().label() == "kit readings"
    assert Readings().changed() == {}
    for name, (default, other) in READING_VALUES.items():
        r = Readings.other(name)
        assert getattr(r, name) == other and getattr(Readings(), name) == default
        assert r.changed() == {name: other} and r.label() == f"{name}={other}"
        assert not r.is_default
    with pytest.raises(ValueError, match="rule_b_best must be one of"):
        Readings(rule_b_best="phase_a")
    with pytest.raises(ValueError, match="no open reading"):
        Readings.other("threshold")
    with pytest.raises(TypeError):
        DualMonitor(0.9, 2, 2, 0.5, Readings())  # keyword only: positional stays T, p, P, phi


# (a) rule b's best val loss over ALL epochs (T=0.9, p=2, P=2, phi=0.5).
# Column best_val_loss then holds min over every epoch so far, phase A included.
CASE_RULE_B_ALL_EPOCHS = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    # e1: A; 0.80 > 0 -> c=0; 0.50 < inf -> bvA 0.50, save; rule b's best also 0.50.
    (0.80, 0.50, 1.0, True, False, A, 0, 0, 0.80, 0.50, 0.50),
    # e2: B; 0.70 not < 0.50 (the kit's fresh phase-B tracker would save it) -> c=1, no save.
    (0.95, 0.70, 1.0, False, False, B, 1, 0, 0.95, 0.50, 0.50),
    # e3: B; 0.45 < 0.50 -> best 0.45, c=0, save.
    (0.96, 0.45, 1.0, True, False, B, 0, 0, 0.96, 0.50, 0.45),
    # e4: B; 0.46 >= 0.45 -> c=1.
    (0.97, 0.46, 1.0, False, False, B, 1, 0, 0.97, 0.50, 0.45),
    # e5: B; 0.47 -> c=2 >= p -> cut, c=0, s=1.
    (0.97, 0.47, 0.5, False, False, B, 0, 1, 0.97, 0.50, 0.45),
    # e6: A; 0.85 <= 0.97 -> c=1, no save; but its val loss 0.40 lowers rule b's best.
    (0.85, 0.40, 1.0, False, False, A, 1, 1, 0.97, 0.50, 0.40),
    # e7: B; 0.42 not < 0.40 (the kit: 0.42 < 0.45, progress and save) -> c=2 -> cut,
    #     s=2 >= P -> stop.
    (0.97, 0.42, 0.5, False, True, B, 0, 2, 0.97, 0.50, 0.40),
]


def test_reading_a_rule_b_best_over_all_epochs():
    run_trace(DualMonitor(readings=Readings(rule_b_best="all_epochs")), CASE_RULE_B_ALL_EPOCHS)
    # the kit on the same inputs: e2 is saved (first phase-B value, tracker 0.70), e3 beats
    # 0.70, and e7 (0.42 < 0.45) is progress, so no second cut and no stop
    kit = DualMonitor()
    saves = [kit.step(acc, vl).save_best for acc, vl, *_ in CASE_RULE_B_ALL_EPOCHS]
    assert saves == [True, True, True, False, False, False, True]
    assert not kit.stopped


# (c) c reset at a phase switch: the first 7 epochs of case 2 (T=0.9, p=2, P=3).
CASE_C_RESET = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    (0.80, 1.00, 1.0, True, False, A, 0, 0, 0.80, 1.00, INF),
    (0.80, 0.90, 1.0, False, False, A, 1, 0, 0.80, 1.00, INF),
    # e3: switch A -> B resets c (1 -> 0); 1.10 < inf -> progress anyway, save.
    (0.91, 1.10, 1.0, True, False, B, 0, 0, 0.91, 1.00, 1.10),
    # e4: B; 1.20 >= 1.10 -> c=1.
    (0.93, 1.20, 1.0, False, False, B, 1, 0, 0.93, 1.00, 1.10),
    # e5: switch B -> A resets c (1 -> 0); 0.89 <= 0.93 -> c=1 (the kit: c=2 and a cut here).
    (0.89, 0.80, 1.0, False, False, A, 1, 0, 0.93, 1.00, 1.10),
    # e6: A; 0.88 <= 0.93 -> c=2 -> cut, c=0, s=1 (one epoch after the kit's cut).
    (0.88, 0.70, 0.5, False, False, A, 0, 1, 0.93, 1.00, 1.10),
    # e7: switch A -> B (c already 0); 1.15 >= 1.10 -> c=1 (the kit: c=2 and its 2nd cut).
    (0.90, 1.15, 1.0, False, False, B, 1, 1, 0.93, 1.00, 1.10),
]


def test_reading_c_reset_at_phase_switch():
    run_trace(DualMonitor(**CASE2_PARAMS, readings=Readings(c_at_switch="reset")), CASE_C_RESET)


K_STAR_CURVES = [
    # (train_acc, val_loss); phase A epochs that do not improve acc but lower val loss, a NaN,
    # ties, and phase-B epochs below the phase-B tracker but above an earlier phase-A loss
    ([0.5, 0.6, 0.55, 0.58, 0.95, 0.96, 0.97, 0.6, 0.97, 0.98],
     [1.0, 0.9, 0.7, NAN, 0.8, 0.75, 0.7, 0.65, 0.66, 0.64]),
    ([0.3, 0.3, 0.4, 0.2, 0.1, 0.45, 0.5, 0.5, 0.5, 0.5],
     [2.0, 1.0, 1.5, 0.9, 0.9, 0.95, 0.8, 0.8, 0.85, 0.7]),
]


@pytest.mark.parametrize("accs, losses", K_STAR_CURVES)
def test_reading_b_k_star_keeps_the_lowest_val_loss_and_changes_nothing_else(accs, losses):
    from medtl_lib.training.schedules import EpochStats, ScheduleDecision, Selector

    kit = DualMonitor(0.9, 2, 10, 0.5)
    other = DualMonitor(0.9, 2, 10, 0.5, readings=Readings(k_star="argmin_val_loss"))
    selector = Selector("val_loss")  # what the trainer does with select_by="val_loss"
    lowest = INF
    for epoch, (acc, vl) in enumerate(zip(accs, losses)):
        d_kit, d_other = kit.step(acc, vl), other.step(acc, vl)
        # cuts, stop, phase and c are the kit's: only which weights are saved changes
        assert (d_kit.lr_factor, d_kit.stop, d_kit.phase, d_kit.improved) == (
            d_other.lr_factor, d_other.stop, d_other.phase, d_other.improved)
        assert kit.wait == other.wait and kit.reductions == other.reductions
        assert d_other.save_best == (vl < lowest), f"epoch {epoch + 1}"
        saved, _ = selector.step(EpochStats(epoch, NAN, acc, vl, NAN), ScheduleDecision())
        assert saved == d_other.save_best, f"epoch {epoch + 1}"
        lowest = min(lowest, vl) if vl == vl else lowest
    assert other.min_val_loss == min(v for v in losses if v == v)


@pytest.mark.parametrize("name", list(READING_VALUES))
def test_state_dict_round_trip_under_other_readings(name):
    steps = [row[:2] for row in CASE2_BACK_AND_FORTH] + [(0.97, 1.00), (0.50, 0.40)]
    original = DualMonitor(**CASE2_PARAMS, readings=Readings.other(name))
    for acc, vl in steps[:5]:
        original.step(acc, vl)
    state = copy.deepcopy(original.state_dict())
    assert state["readings"][name] == READING_VALUES[name][1] and "min_val_loss" in state
    json.dumps(state)
    restored = DualMonitor(**CASE2_PARAMS)  # default readings: the state brings its own
    restored.load_state_dict(state)
    assert restored.readings == original.readings
    assert restored.state_dict() == original.state_dict()
    for acc, vl in steps[5:]:
        assert decision_tuple(restored.step(acc, vl)) == decision_tuple(original.step(acc, vl))
        assert snapshot(restored) == snapshot(original)
    assert name in repr(original)


# (d) the authors' code: best_train_acc moves only in phase A (training.py:102-103).
# T=0.9, p=2, P=2, phi=0.5. A phase-B epoch at 0.95 train accuracy, then phase A again at 0.85:
# under the text 0.85 < best 0.95 is no improvement (c=1); under the code best is still 0.80,
# so 0.85 improves (c=0) and, with a better phase-A val loss, theta* is saved.
CASE_BEST_TRAIN_ACC_PHASE_A = [
    # acc   vloss   lr   save   stop   ph  c  s  best_acc bvA   bvB
    (0.80, 0.50, 1.0, True, False, A, 0, 0, 0.80, 0.50, INF),
    # e2: B; 0.40 < inf -> save, c=0; best_acc stays 0.80 (phase B does not raise it)
    (0.95, 0.40, 1.0, True, False, B, 0, 0, 0.80, 0.50, 0.40),
    # e3: A; 0.85 > 0.80 -> improved, c=0; 0.45 < bvA 0.50 -> save
    (0.85, 0.45, 1.0, True, False, A, 0, 0, 0.85, 0.45, 0.40),
]
CASE_BEST_TRAIN_ACC_TEXT = [  # the same epochs under the kit's reading (the text)
    (0.80, 0.50, 1.0, True, False, A, 0, 0, 0.80, 0.50, INF),
    (0.95, 0.40, 1.0, True, False, B, 0, 0, 0.95, 0.50, 0.40),
    (0.85, 0.45, 1.0, False, False, A, 1, 0, 0.95, 0.50, 0.40),
]


def test_best_train_acc_reading_of_the_authors_code():
    run_trace(DualMonitor(readings=Readings(best_train_acc="phase_a")),
              CASE_BEST_TRAIN_ACC_PHASE_A)
    run_trace(DualMonitor(), CASE_BEST_TRAIN_ACC_TEXT)


def test_readings_reach_a_run_through_run_config():
    """Issue 27 (5): the readings are a RunConfig field that the trainer's schedule runs."""
    from medtl_lib.config import RunConfig
    from medtl_lib.training.schedules import EpochStats
    from medtl_lib.training.strategies import Stage
    from medtl_lib.training.trainer import schedule_factory

    cfg = RunConfig(dual_monitor_readings={"best_train_acc": "phase_a"})
    make = schedule_factory(cfg.schedule, cfg.schedule_args, threshold=cfg.threshold,
                            patience=cfg.patience, stop_patience=cfg.stop_patience,
                            factor=cfg.factor, dual_monitor_readings=cfg.dual_monitor_readings)
    sched = make(Stage("train", 3))
    saves = [sched.end_epoch(EpochStats(e, 0.0, acc, loss, 0.0)).save_best
             for e, (acc, loss) in enumerate([(0.80, 0.50), (0.95, 0.40), (0.85, 0.45)])]
    assert saves == [True, True, True]
    assert sched.state_dict()["readings"]["best_train_acc"] == "phase_a"
    default = schedule_factory("dual_monitor", {}, dual_monitor_readings={})(Stage("train", 3))
    assert "readings" not in default.state_dict()  # seed 000's checkpoints stay as they were
    with pytest.raises(ValueError, match="best_train_acc must be one of"):
        RunConfig(dual_monitor_readings={"best_train_acc": "sometimes"})
    with pytest.raises(ValueError, match="dual_monitor_readings: .*unexpected keyword"):
        RunConfig(dual_monitor_readings={"best_acc": "phase_a"})
    with pytest.raises(ValueError, match="applies to schedule='dual_monitor'"):
        RunConfig(schedule="cosine", select_by="val_acc",
                  dual_monitor_readings={"best_train_acc": "phase_a"})
