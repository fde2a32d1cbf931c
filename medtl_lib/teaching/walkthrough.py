"""Replay the dual monitor (seed 000, Section III.B, Algorithm 1) on recorded or simulated curves.

Notebook 02 teaches the algorithm by stepping through its decisions one epoch at a time. Everything
here is pure (numpy/pandas, no torch, no plotting) so that the same tables can be checked by tests,
printed headless under papermill, or drawn by :mod:`medtl_lib.teaching.walkthrough_view`.

Epochs are 1-based, as in a run's history. Columns ``lr`` is the learning rate *used during* that
epoch and ``lr_next`` the one the next epoch will use (after the decision's cut, if any).

Two schedules are replayed on the same curves:

* :func:`replay` drives the kit's :class:`~medtl_lib.training.dual_monitor.DualMonitor` (the rules
  of the paper's text; see that module's docstring for where Algorithm 1's box and the authors'
  code differ).
* :func:`plateau_baseline` is the usual alternative, PyTorch's ``ReduceLROnPlateau`` on validation
  loss plus early stopping after a number of cuts; its semantics are re-implemented here in plain
  Python (documented on the function) so that the walkthrough needs no torch;
  :func:`plateau_lrs_torch` drives torch's own scheduler on the same losses so the notebook can
  show that the two agree.

Three sentences of the paper allow two readings, and the authors' code departs from the text in a
fourth rule (see :class:`~medtl_lib.training.dual_monitor.Readings`). :func:`replay` takes
``readings=`` to replay a curve under the other one,
:func:`replay_readings` replays all of them, and :func:`reading_differences` lists the epochs whose
decisions differ, so the notebook can *show* what each reading changes instead of asserting one.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medtl_lib import run_folder as rf
from medtl_lib.paths import in_repo
from medtl_lib.training.dual_monitor import (
    PHASE_TRAIN_ACC,
    READING_VALUES,
    DualMonitor,
    Readings,
)
from medtl_lib.training.schedules import EpochStats, Plateau

REPLAY_COLUMNS = [
    "epoch", "train_acc", "val_loss", "phase", "improved", "c", "s", "lr", "lr_next", "lr_factor",
    "save_best", "theta_star_epoch", "stop", "best_train_acc", "best_val_loss_in_acc_phase",
    "best_val_loss", "why",
]
BASELINE_COLUMNS = [
    "epoch", "val_loss", "improved", "c", "s", "lr", "lr_next", "lr_factor", "save_best",
    "theta_star_epoch", "stop", "best_val_loss", "why",
]
SIM_KINDS = ("typical", "slow", "noisy")
# the decision columns compared between two replays of the same curve
DECISION_COLUMNS = ["phase", "improved", "c", "s", "lr", "lr_factor", "save_best",
                    "theta_star_epoch", "stop"]


def _num(x: float) -> str:
    """Short, stable number text for the ``why`` sentences (inf and nan stay readable)."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def _lr(x: float) -> str:
    return f"{float(x):.3g}"


def _as_floats(values: Sequence[float] | np.ndarray | pd.Series, name: str) -> list[float]:
    out = [float(v) for v in np.asarray(values, dtype=float).ravel()]
    if not out:
        raise ValueError(f"{name} is empty: nothing to replay")
    return out


def _frame(rows: list[dict], columns: list[str], attrs: dict) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    # object dtype keeps ``None`` (no theta* yet) instead of turning the column into NaN floats
    frame["theta_star_epoch"] = pd.Series([r["theta_star_epoch"] for r in rows], dtype=object)
    frame.attrs.update(attrs)
    return frame


def replay(
    train_acc: Sequence[float],
    val_loss: Sequence[float],
    threshold: float = 0.9,
    patience: int = 2,
    stop_patience: int = 2,
    factor: float = 0.5,
    lr: float = 1e-3,
    readings: Readings | dict[str, str] | None = None,
) -> pd.DataFrame:
    """Feed the curves through a :class:`DualMonitor` and explain every decision.

    One row per epoch, up to and including the epoch that stops (or the end of the curves). The
    parameters are kept in ``frame.attrs`` so the view can draw T, p and P without being told.
    ``readings`` (default: the kit's) replays the curve under another reading of the paper.
    """
    accs, losses = _as_floats(train_acc, "train_acc"), _as_floats(val_loss, "val_loss")
    if len(accs) != len(losses):
        raise ValueError(f"train_acc has {len(accs)} epochs but val_loss has {len(losses)}")
    mon = DualMonitor(threshold, patience, stop_patience, factor, readings=readings)
    rows: list[dict] = []
    theta: int | None = None
    lr_now = float(lr)
    for epoch, (acc, loss) in enumerate(zip(accs, losses), start=1):
        before = (mon.best_train_acc, mon.best_val_loss_in_acc_phase, mon.best_val_loss, mon.wait,
                  mon.min_val_loss, mon.phase if epoch > 1 else None)
        d = mon.step(acc, loss)
        if d.save_best:
            theta = epoch
        lr_next = lr_now * d.lr_factor
        why = _why_dual(mon, epoch, acc, loss, d.improved, d.save_best, d.lr_factor, d.stop,
                        before, theta, lr_now, lr_next)
        rows.append(dict(
            epoch=epoch, train_acc=acc, val_loss=loss, phase=d.phase, improved=d.improved,
            c=mon.wait, s=mon.reductions, lr=lr_now, lr_next=lr_next, lr_factor=d.lr_factor,
            save_best=d.save_best, theta_star_epoch=theta, stop=d.stop,
            best_train_acc=mon.best_train_acc,
            best_val_loss_in_acc_phase=mon.best_val_loss_in_acc_phase,
            best_val_loss=mon.best_val_loss, why=why,
        ))
        lr_now = lr_next
        if d.stop:
            break
    return _frame(rows, REPLAY_COLUMNS, dict(
        method="dual_monitor", threshold=float(threshold), patience=int(patience),
        stop_patience=int(stop_patience), factor=float(factor), lr=float(lr),
        readings=asdict(mon.readings), readings_label=mon.readings.label()))


def _why_dual(mon: DualMonitor, epoch: int, acc: float, loss: float, improved: bool, saved: bool,
              lr_factor: float, stop: bool, before: tuple, theta: int | None, lr_now: float,
              lr_next: float) -> str:
    """One sentence a student can check against the rules, in the order the monitor applies them.

    Under the kit's readings the sentence is the same as it always was; another reading adds or
    changes only the clause it affects (so a student can see *which* rule read differently).
    """
    best_acc, best_a_loss, best_b_loss, c_before, min_loss, prev_phase = before
    r = mon.readings
    argmin = r.k_star == "argmin_val_loss"
    T = mon.threshold
    reset = ""
    if r.c_at_switch == "reset" and prev_phase is not None and prev_phase != mon.phase:
        if c_before:
            reset = f"phase switch -> c reset from {c_before} to 0; "
        c_before = 0
    if mon.phase == PHASE_TRAIN_ACC:
        head = f"phase A (train acc {_num(acc)} < T={_num(T)})"
        if improved:
            body = f"train acc improved on {_num(best_acc)} -> c=0"
            if argmin:
                pass  # theta* follows the lowest val loss, see below
            elif saved:
                body += f"; val loss {_num(loss)} < {_num(best_a_loss)} -> theta* = epoch {epoch}"
            else:
                kept = f"epoch {theta}" if theta is not None else "unset"
                body += (f"; val loss {_num(loss)} not below phase-A best {_num(best_a_loss)} "
                         f"-> theta* stays {kept}")
        else:
            body = f"train acc did not beat {_num(best_acc)} -> c={c_before + 1}"
    else:
        head = f"phase B (train acc {_num(acc)} >= T={_num(T)})"
        if r.rule_b_best == "all_epochs":
            best = f"best of all epochs {_num(best_b_loss)}"
        else:
            best = _num(best_b_loss) + (" (first phase-B value)" if math.isinf(best_b_loss) else "")
        if improved:
            body = f"val loss {_num(loss)} < {best} -> c=0"
            if not argmin:
                body += f"; theta* = epoch {epoch}"
        else:
            body = f"val loss {_num(loss)} did not beat {best} -> c={c_before + 1}"
    if lr_factor != 1.0:
        body += (f" reaches p={mon.patience} -> LR x{_num(lr_factor)} ({_lr(lr_now)} -> {_lr(lr_next)}), "
                 f"c=0, s={mon.reductions}")
    if argmin:
        if saved:
            body += (f"; val loss {_num(loss)} is the lowest so far (was {_num(min_loss)}) "
                     f"-> theta* = epoch {epoch} (k* = argmin)")
        else:
            kept = f"epoch {theta}" if theta is not None else "unset"
            body += f"; val loss not below the lowest {_num(min_loss)} -> theta* stays {kept}"
    if stop:
        kept = (f"restore theta* = epoch {theta}" if theta is not None
                else "no theta* was saved, the last weights stay")
        body += f"; s={mon.reductions} >= P={mon.stop_patience} -> stop, {kept}"
    return f"{head}: {reset}{body}"


def plateau_baseline(
    val_loss: Sequence[float],
    patience: int = 2,
    factor: float = 0.5,
    stop_patience: int = 2,
    lr: float = 1e-3,
    min_lr: float = 0.0,
    eps: float = 1e-8,
) -> pd.DataFrame:
    """ReduceLROnPlateau on validation loss + early stopping, as most fine-tuning code does it.

    Semantics (those of ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode='min',
    patience=patience, factor=factor, threshold=0)``, default ``threshold_mode='rel'``,
    ``cooldown=0``), checked against torch by the tests:

    * ``best`` starts at +inf. An epoch is *better* when ``val_loss < best * (1 - 0)``, i.e.
      strictly lower (a tie or NaN is a bad epoch). Better: ``best = val_loss``, bad epochs = 0;
      otherwise bad epochs += 1.
    * The LR is cut when the number of bad epochs **exceeds** ``patience`` (``> patience``, not
      ``>=``): with patience 2 the cut comes on the 3rd consecutive bad epoch. Then bad epochs = 0.
      (The dual monitor cuts when ``c >= p``, one epoch earlier for the same p.)
    * The cut is ``new = max(lr * factor, min_lr)``, applied only if ``lr - new > eps``
      (torch's ``eps``); a cut at the floor changes nothing but still resets the count.

    Early stopping, the part torch does not provide: stop once ``stop_patience`` cuts have been
    made (counted in ``s``, the analogue of the dual monitor's s; ``c`` holds the bad-epoch
    count). theta* is the epoch of the lowest validation loss so far (first one on ties), the
    usual "save best val loss" checkpoint.
    """
    losses = _as_floats(val_loss, "val_loss")
    if int(patience) != patience or patience < 0:
        raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
    if int(stop_patience) != stop_patience or stop_patience < 1:
        raise ValueError(f"stop_patience must be an integer >= 1, got {stop_patience!r}")
    if not (0.0 < factor < 1.0):
        raise ValueError(f"factor must be in (0, 1), got {factor!r}")
    # the trainer's own schedule (schedule='plateau'), driven by the recorded losses
    sched = Plateau(factor=float(factor), patience=int(patience), min_lr_stop=0.0,
                    min_lr=float(min_lr), stop_after_cuts=int(stop_patience))
    sched.eps = eps
    sched.begin(float(lr), len(losses), 1)
    theta: int | None = None
    rows: list[dict] = []
    for epoch, loss in enumerate(losses, start=1):
        prev_best, lr_now, cuts_before = sched.best, sched.lr, sched.cuts
        d = sched.end_epoch(EpochStats(epoch - 1, math.nan, math.nan, loss, math.nan))
        best, bad, cuts, lr_next = sched.best, sched.bad, sched.cuts, sched.lr
        improved = best != prev_best
        if improved:
            theta = epoch
            why = f"val loss {_num(loss)} < best {_num(prev_best)} -> bad=0; theta* = epoch {epoch}"
        else:
            # a cut resets the count; the count that triggered it was patience + 1
            shown = bad if cuts == cuts_before else int(patience) + 1
            why = f"val loss {_num(loss)} did not beat {_num(prev_best)} -> bad={shown}"
        if cuts > cuts_before:
            if lr_next != lr_now:
                why += (f" > patience={patience} -> LR x{_num(factor)} ({_lr(lr_now)} -> "
                        f"{_lr(lr_next)}), bad=0, cuts={cuts}")
            else:
                why += f" > patience={patience} -> LR already at its floor, bad=0, cuts={cuts}"
        stop = d.stop
        if stop:
            kept = f"restore theta* = epoch {theta}" if theta is not None else "no theta* saved"
            why += f"; {cuts} cuts >= {stop_patience} -> stop, {kept}"
        rows.append(dict(
            epoch=epoch, val_loss=loss, improved=improved, c=bad, s=cuts, lr=lr_now,
            lr_next=lr_next, lr_factor=lr_next / lr_now if lr_now else 1.0, save_best=improved,
            theta_star_epoch=theta, stop=stop, best_val_loss=best, why=f"plateau: {why}",
        ))
        if stop:
            break
    return _frame(rows, BASELINE_COLUMNS, dict(
        method="plateau", patience=int(patience), stop_patience=int(stop_patience),
        factor=float(factor), lr=float(lr)))


def simulated_run(epochs: int = 20, seed: int = 0, kind: str = "typical") -> pd.DataFrame:
    """Plausible fine-tuning curves, so the walkthrough works before any real run exists.

    * ``typical``: training accuracy crosses 0.9 between epochs 3 and 4 and saturates near 0.99;
      validation loss bottoms out around epoch 8 and then creeps up (overfitting).
    * ``slow``: training accuracy saturates below 0.88, never reaching T=0.9; validation loss keeps
      falling slowly.
    * ``noisy``: training accuracy oscillates around 0.9 after a short ramp; noisy val loss.

    Deterministic for a given (epochs, seed, kind).
    """
    if kind not in SIM_KINDS:
        raise ValueError(f"kind must be one of {SIM_KINDS}, got {kind!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs!r}")
    rng = np.random.default_rng([int(seed), SIM_KINDS.index(kind)])
    t = np.arange(1, epochs + 1, dtype=float)
    if kind == "typical":
        # 0.99 - 0.39 exp(-(t-1)/1.7): 0.869 at epoch 3, 0.923 at epoch 4 (noise 0.004 keeps the
        # crossing between them)
        acc = 0.99 - 0.39 * np.exp(-(t - 1) / 1.7) + rng.normal(0, 0.004, epochs)
        acc = np.minimum(acc, 0.998)
        loss = (0.28 + 0.55 * np.exp(-(t - 1) / 2.2) + 0.004 * np.maximum(0, t - 8) ** 1.4
                + rng.normal(0, 0.008, epochs))
    elif kind == "slow":
        acc = 0.86 - 0.36 * np.exp(-(t - 1) / 5.0) + rng.normal(0, 0.006, epochs)
        acc = np.minimum(acc, 0.875)
        loss = 0.55 + 0.6 * np.exp(-(t - 1) / 7.0) + rng.normal(0, 0.01, epochs)
    else:
        ramp = np.minimum(1.0, t / 3.0)
        acc = (0.6 + 0.3 * ramp + 0.025 * ramp * np.sin(1.9 * t)
               + rng.normal(0, 0.012, epochs))
        loss = 0.38 + 0.35 * np.exp(-(t - 1) / 2.0) + rng.normal(0, 0.035, epochs)
    acc = np.clip(acc, 0.0, 1.0)
    loss = np.maximum(loss, 0.02)
    val_acc = np.clip(0.97 - 0.45 * (loss - 0.25) + rng.normal(0, 0.006, epochs), 0.0, 1.0)
    train_loss = np.maximum(0.01, 2.2 * (1.0 - acc) ** 1.1 + rng.normal(0, 0.005, epochs))
    return pd.DataFrame({
        "epoch": t.astype(int), "train_acc": acc.round(4), "val_loss": loss.round(4),
        "val_acc": val_acc.round(4), "train_loss": train_loss.round(4),
    })


def from_history(
    history: str | os.PathLike | pd.DataFrame,
) -> tuple[list[float], list[float]]:
    """(train_acc, val_loss) of a recorded run, for :func:`replay`.

    Accepts the history CSV written by the trainer, the run folder holding it, or the frame.
    A resumed run may repeat an epoch; the last record of each epoch wins.
    """
    if isinstance(history, pd.DataFrame):
        frame = history
    else:
        path = Path(history)
        if path.is_dir():
            path = path / rf.HISTORY
        if not path.is_file():
            raise FileNotFoundError(f"no {rf.HISTORY} at {path} (give a run folder or its CSV)")
        frame = rf.read_csv(path)
    missing = {"train_acc", "val_loss"} - set(frame.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}")
    if "epoch" in frame.columns:
        frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return ([float(v) for v in frame["train_acc"]], [float(v) for v in frame["val_loss"]])


def summarize(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One column per replay: which epoch it keeps, when it cuts the LR, when it stops.

    The LR after the last epoch is left out on purpose: once training stops it is never used, so
    a "final LR" would describe nothing. A cut in the stopping epoch is listed, marked as never
    applied (it is the cut that made s reach P).
    """
    def one(df: pd.DataFrame) -> dict:
        last = df.iloc[-1]
        theta = last["theta_star_epoch"]
        kept = None if theta is None or pd.isna(theta) else int(theta)
        loss_at = (float(df.loc[df["epoch"] == kept, "val_loss"].iloc[0])
                   if kept is not None else float("nan"))
        stopped = bool(last["stop"])
        cuts = []
        for e in df.loc[df["lr_factor"] != 1.0, "epoch"]:
            cuts.append(f"{int(e)} (stop: never applied)" if stopped and int(e) == int(last["epoch"])
                        else str(int(e)))
        return {
            "theta* epoch (weights kept)": kept,
            "val loss at theta*": loss_at,
            "lowest val loss (epoch)": _argmin_text(df),
            "LR cut after epochs": ", ".join(cuts) or "none",
            "stopped after epoch": int(last["epoch"]) if stopped else "did not stop",
            "epochs trained": int(len(df)),
            "LR in the last epoch trained": float(last["lr"]),
        }
    return pd.DataFrame({name: one(df) for name, df in frames.items()})


def _argmin_text(df: pd.DataFrame) -> str:
    """The lowest validation loss and its epoch (first on ties, NaN skipped): what the k* =
    argmin reading and the baseline would keep, beside what the replay kept."""
    losses = df["val_loss"].astype(float).reset_index(drop=True)
    if not losses.notna().any():
        return "none (all nan)"
    i = int(losses.idxmin())
    return f"{_num(losses[i])} (epoch {int(df['epoch'].iloc[i])})"


def compare(replay_df: pd.DataFrame, baseline_df: pd.DataFrame) -> pd.DataFrame:
    """Side by side: the dual monitor and the ReduceLROnPlateau baseline (see :func:`summarize`)."""
    return summarize({"dual monitor": replay_df,
                      "ReduceLROnPlateau + early stop": baseline_df})


# ----------------------------------------------------------------------------- open readings

def replay_readings(train_acc: Sequence[float], val_loss: Sequence[float],
                    **params: float) -> dict[str, pd.DataFrame]:
    """The same curve under the kit's readings and under each other reading, one at a time.

    Keys: ``"kit"`` and the names of :data:`~medtl_lib.training.dual_monitor.READING_VALUES`
    (``rule_b_best``, ``k_star``, ``c_at_switch``, ``best_train_acc``). One reading at a time, so any difference from
    ``"kit"`` is caused by that reading alone. ``params`` go to :func:`replay` (T, p, P, phi, lr).
    """
    frames = {"kit": replay(train_acc, val_loss, **params)}
    for name in READING_VALUES:
        frames[name] = replay(train_acc, val_loss, readings=Readings.other(name), **params)
    return frames


def reading_differences(kit_df: pd.DataFrame, other_df: pd.DataFrame) -> pd.DataFrame:
    """The epochs whose decisions differ between two replays of the same curve.

    One row per such epoch: what differs ("c: 1 -> 0; save_best: False -> True"), then both
    ``why`` sentences in full. An epoch only one replay reached (the other had stopped) counts as
    a difference. Empty frame: both readings decide identically on this curve.
    """
    a, b = kit_df.set_index("epoch"), other_df.set_index("epoch")
    rows = []
    for epoch in sorted(set(a.index) | set(b.index)):
        if epoch not in a.index or epoch not in b.index:
            trained, stopped = ("other", "kit") if epoch not in a.index else ("kit", "other")
            rows.append(dict(epoch=int(epoch),
                             differs=f"only the {trained} reading trains this epoch "
                                     f"(the {stopped} one had stopped)",
                             why_kit=a.loc[epoch, "why"] if epoch in a.index else "-",
                             why_other=b.loc[epoch, "why"] if epoch in b.index else "-"))
            continue
        changes = []
        for col in DECISION_COLUMNS:
            x, y = a.loc[epoch, col], b.loc[epoch, col]
            same = (x == y) or (x is None and y is None) or (
                isinstance(x, float) and isinstance(y, float) and math.isclose(x, y))
            if not same:
                changes.append(f"{col}: {_cell(x)} -> {_cell(y)}")
        if changes:
            rows.append(dict(epoch=int(epoch), differs="; ".join(changes),
                             why_kit=a.loc[epoch, "why"], why_other=b.loc[epoch, "why"]))
    return pd.DataFrame(rows, columns=["epoch", "differs", "why_kit", "why_other"])


def _cell(x: object) -> str:
    if x is None:
        return "none"
    if isinstance(x, float):
        return _lr(x) if 0 < abs(x) < 1e-2 else _num(x)
    return str(x)


def find_disagreement(name: str, kinds: Iterable[str] = SIM_KINDS, seeds: Iterable[int] = range(20),
                      **params: float) -> tuple[str, int] | None:
    """The first simulated curve (kind, seed) on which reading ``name`` changes a decision.

    Lets the notebook show a difference even when the student's own curve happens not to have one.
    None when no curve in the search does (say so rather than pretend).
    """
    for kind in kinds:
        for seed in seeds:
            curves = simulated_run(seed=seed, kind=kind)
            kit = replay(curves["train_acc"], curves["val_loss"], **params)
            other = replay(curves["train_acc"], curves["val_loss"],
                           readings=Readings.other(name), **params)
            if len(reading_differences(kit, other)):
                return kind, int(seed)
    return None


@dataclass(frozen=True)
class ReadingCase:
    """One open reading replayed against the kit's: on the student's curve when it changes a
    decision there, otherwise on the first simulated curve where it does (``curve`` says which)."""

    name: str  # rule_b_best | k_star | c_at_switch | best_train_acc
    label: str  # e.g. "k_star=argmin_val_loss"
    curve: str  # which curve the two replays ran on
    on_own_curve: bool  # True: the student's curve; False: a simulated one chosen to show it
    kit: pd.DataFrame
    other: pd.DataFrame
    differences: pd.DataFrame  # reading_differences(kit, other); empty when none was found


def open_reading_cases(train_acc: Sequence[float], val_loss: Sequence[float], curve: str,
                       **params: float) -> list[ReadingCase]:
    """For each open reading, a pair of replays (kit, other reading) on which they differ, if any.

    Why fall back to a simulated curve: on many curves a reading changes nothing (on the default
    typical curve none does), and "no difference here" teaches less than seeing where it matters.
    The case says which curve it used, so the notebook never passes one off as the other.
    """
    own = replay_readings(train_acc, val_loss, **params)
    cases = []
    for name in READING_VALUES:
        label = Readings.other(name).label()
        kit, other = own["kit"], own[name]
        diff = reading_differences(kit, other)
        where, mine = curve, True
        if diff.empty:
            found = find_disagreement(name, **params)
            if found is not None:
                kind, seed = found
                sim = simulated_run(seed=seed, kind=kind)
                kit = replay(sim["train_acc"], sim["val_loss"], **params)
                other = replay(sim["train_acc"], sim["val_loss"], readings=Readings.other(name),
                               **params)
                diff = reading_differences(kit, other)
                where, mine = f"simulated '{kind}' curve, seed {seed}", False
        cases.append(ReadingCase(name, label, where, mine, kit, other, diff))
    return cases


# ----------------------------------------------------------------------------- torch's scheduler

def plateau_lrs_torch(val_loss: Sequence[float], patience: int = 2, factor: float = 0.5,
                      lr: float = 1e-3) -> list[float]:
    """The LR each epoch runs at under torch's own ``ReduceLROnPlateau`` (mode='min',
    threshold=0), stepped with the same validation losses: the check that
    :func:`plateau_baseline` is torch's rule and not a look-alike. Needs torch (imported here only).
    """
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=float(lr))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=int(patience),
                                                       factor=float(factor), threshold=0)
    lrs = []
    for loss in _as_floats(val_loss, "val_loss"):
        lrs.append(float(opt.param_groups[0]["lr"]))
        sched.step(loss)
    return lrs


# ----------------------------------------------------------------------------- recorded runs

def recorded_runs(root: str | os.PathLike = "runs", dual_monitor_only: bool = False) -> list[Path]:
    """Run folders under ``root`` (relative: the repository's ``runs/``) that hold a history.

    Runs trained with the dual monitor (a ``phase`` column in their history) come first, since only
    their decisions can be checked against a replay; ``dual_monitor_only`` drops the others. Within
    each group the smoke profile's runs come first, then by path. Looks one and two levels deep
    (``runs/<run>`` and ``runs/<profile>/<run>``).
    """
    base = in_repo(root)
    if not base.is_dir():
        return []
    found = {p.parent for pattern in ("*", "*/*") for p in base.glob(f"{pattern}/{rf.HISTORY}")}
    dual = {run: "phase" in _header(rf.path(run, rf.HISTORY)) for run in found}
    runs = [run for run in found if dual[run] or not dual_monitor_only]
    return sorted(runs, key=lambda run: (not dual[run], run.parent.name != "smoke", str(run)))


def _header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().strip().split(",")
    except OSError:
        return []


def schedule_history(train_acc: Sequence[float], val_loss: Sequence[float],
                     threshold: float = 0.9, patience: int = 2, stop_patience: int = 2,
                     factor: float = 0.5, lr: float = 1e-3) -> pd.DataFrame:
    """The history columns the trainer would log for these curves, written by the trainer's
    own :class:`~medtl_lib.training.schedules.DualMonitorSchedule` (not by :func:`replay`).

    The stand-in for a recorded run when none exists: :func:`check_history` can then compare two
    independent paths (the trainer's schedule object, the walkthrough's replay) on one curve.
    """
    from medtl_lib.training.schedules import DualMonitorSchedule

    accs, losses = _as_floats(train_acc, "train_acc"), _as_floats(val_loss, "val_loss")
    sched = DualMonitorSchedule(threshold, patience, stop_patience, factor)
    rows, lr_now = [], float(lr)
    for epoch, (acc, loss) in enumerate(zip(accs, losses), start=1):
        d = sched.end_epoch(EpochStats(epoch - 1, math.nan, acc, loss, math.nan))
        rows.append(dict(epoch=epoch, train_acc=acc, val_loss=loss, lr=lr_now, **d.columns,
                         save_best=bool(d.save_best), stop=d.stop))
        lr_now *= d.lr_factor
        if d.stop:
            break
    frame = pd.DataFrame(rows)
    frame.attrs["config"] = dict(schedule="dual_monitor", threshold=threshold, patience=patience,
                                 stop_patience=stop_patience, factor=factor, lr=lr)
    frame.attrs["name"] = "simulated history (the trainer's DualMonitorSchedule)"
    return frame


CHECKED_COLUMNS = ("phase", "c", "s", "lr", "save_best", "stop")


def check_history(run: str | os.PathLike | pd.DataFrame, **params: float
                  ) -> tuple[pd.DataFrame, str]:
    """Replay a recorded run and put its logged decisions beside the replay's.

    ``run``: a run folder, its history CSV, or a history frame (settings in ``frame.attrs
    ["config"]``, as :func:`schedule_history` writes them). Returns (table, verdict): per epoch the
    recorded and the replayed ``phase``, ``c``, ``s``, ``lr``, ``save_best``, ``stop`` and whether
    they all agree; the verdict is one sentence. T, p, P, phi and lr come from the run's
    saved config unless ``params`` override them. A run that did not use the dual monitor (no
    ``phase`` column) is replayed too, and the verdict says there is nothing to check it against.
    A run trained with ``select_by="val_loss"`` is replayed under the k* = argmin reading, which is
    what that setting does. Columns: ``<name> (logged)`` and ``<name> (replay)``.
    """
    if isinstance(run, pd.DataFrame):
        hist, cfg = run, dict(run.attrs.get("config", {}))
        name = str(run.attrs.get("name", "history frame"))
    else:
        path = in_repo(run)
        folder = path if path.is_dir() else path.parent
        hist = rf.read_csv(rf.path(folder, rf.HISTORY) if path.is_dir() else path)
        cfg, name = _run_config(folder), folder.name
    if "epoch" in hist.columns:
        hist = hist.drop_duplicates("epoch", keep="last").sort_values("epoch")
    settings: dict = {k: cfg[k] for k in SETTINGS if k in cfg}
    if cfg.get("select_by") == "val_loss":
        # the trainer kept the lowest val loss: that is the k* = argmin reading, replay it so
        settings["readings"] = Readings(k_star="argmin_val_loss")
    settings.update(params)
    rep = replay(hist["train_acc"], hist["val_loss"], **settings)
    n = min(len(rep), len(hist))
    rec, rp = hist.iloc[:n].reset_index(drop=True), rep.iloc[:n].reset_index(drop=True)
    table = pd.DataFrame({"epoch": rp["epoch"]})
    agree = pd.Series(True, index=table.index)
    for col in (c for c in CHECKED_COLUMNS if c in rec.columns):
        table[f"{col} (logged)"] = rec[col].values
        table[f"{col} (replay)"] = rp[col].values
        if col == "lr":
            same = np.isclose(rec[col].astype(float), rp[col].astype(float), rtol=1e-6, atol=0)
        else:
            same = rec[col].astype(str).str.lower().values == rp[col].astype(str).str.lower().values
        agree &= pd.Series(same, index=table.index)
    table["agree"] = agree
    schedule = cfg.get("schedule", "dual_monitor" if "phase" in hist.columns else "unknown")
    shown = (f"T={settings.get('threshold', 0.9)}, p={settings.get('patience', 2)}, "
             f"P={settings.get('stop_patience', 2)}, phi={settings.get('factor', 0.5)}, "
             f"{rep.attrs['readings_label']}")
    if "phase" not in hist.columns or schedule != "dual_monitor":
        verdict = (f"{name} was trained with schedule '{schedule}', not the dual monitor: nothing "
                   f"to check; its LR column is that schedule's, and the replay shows what the "
                   f"dual monitor would have decided on the same curves ({shown})")
    elif bool(agree.all()) and len(rep) == len(hist):
        verdict = (f"{name}: all {n} epochs agree with the replay (phase, c, s, lr, save_best, "
                   f"stop) at {shown}")
    else:
        bad = [int(e) for e in table.loc[~agree, "epoch"]]
        verdict = (f"{name}: {len(bad)} of {n} epochs differ (epochs {bad[:10]}) from the replay "
                   f"at {shown}; the run logged "
                   f"{len(hist)} epochs, the replay {len(rep)} (several stages, a resume with "
                   f"other settings, or select_by other than dual_monitor?)")
    return table, verdict


SETTINGS = ("threshold", "patience", "stop_patience", "factor", "lr")


def run_settings(run_dir: str | os.PathLike) -> dict[str, float]:
    """T, p, P, phi and lr a recorded run was trained with (from its saved config; {} if none), so
    a notebook can warn when it replays the run with other settings than the trainer used."""
    run = in_repo(run_dir)
    cfg = _run_config(run if run.is_dir() else run.parent)
    return {k: cfg[k] for k in SETTINGS if k in cfg}


def run_label(run_dir: str | os.PathLike) -> str:
    """What a figure or table should say about a recorded run: its folder, dataset and model, and
    "synthetic stand-in data" when it was trained on one (its numbers say nothing about the task)."""
    run = in_repo(run_dir)
    run = run if run.is_dir() else run.parent
    cfg = _run_config(run)
    parts = [f"recorded run {run.name}"]
    if cfg.get("dataset"):
        parts.append(f"{cfg['dataset']}, {cfg.get('model', '?')}")
    if cfg.get("data_dir") and _is_standin(cfg["data_dir"]):
        parts.append("synthetic stand-in data")
    return " - ".join(parts)


def _is_standin(data_dir: str) -> bool:
    try:  # the generator's own stamp, where the installed kit has it
        from medtl_lib.data.synthetic import is_standin

        return bool(is_standin(in_repo(data_dir)))
    except Exception:
        return "synthetic" in Path(str(data_dir)).parts


def _run_config(run: Path) -> dict:
    return rf.read_config(run)
