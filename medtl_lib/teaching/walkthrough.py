"""Replay the dual monitor (seed 000, Section III.B, Algorithm 1) on recorded or simulated curves.

Notebook 02 teaches the algorithm by stepping through its decisions one epoch at a time. Everything
here is pure (numpy/pandas, no torch, no plotting) so that the same tables can be checked by tests,
printed headless under papermill, or drawn by :mod:`medtl_lib.teaching.walkthrough_view`.

Epochs are 1-based, as in ``history.csv``. Columns ``lr`` is the learning rate *used during* that
epoch and ``lr_next`` the one the next epoch will use (after the decision's cut, if any).

Two schedules are replayed on the same curves:

* :func:`replay` drives the kit's :class:`~medtl_lib.training.dual_monitor.DualMonitor` (the rules
  of the paper's text; see that module's docstring for where Algorithm 1's box and the authors'
  code differ).
* :func:`plateau_baseline` is the usual alternative, PyTorch's ``ReduceLROnPlateau`` on validation
  loss plus early stopping after a number of cuts; its semantics are re-implemented here in plain
  Python (documented on the function) so that the walkthrough needs no torch.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from medtl_lib.training.dual_monitor import PHASE_TRAIN_ACC, DualMonitor
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
) -> pd.DataFrame:
    """Feed the curves through a :class:`DualMonitor` and explain every decision.

    One row per epoch, up to and including the epoch that stops (or the end of the curves). The
    parameters are kept in ``frame.attrs`` so the view can draw T, p and P without being told.
    """
    accs, losses = _as_floats(train_acc, "train_acc"), _as_floats(val_loss, "val_loss")
    if len(accs) != len(losses):
        raise ValueError(f"train_acc has {len(accs)} epochs but val_loss has {len(losses)}")
    mon = DualMonitor(threshold, patience, stop_patience, factor)
    rows: list[dict] = []
    theta: int | None = None
    lr_now = float(lr)
    for epoch, (acc, loss) in enumerate(zip(accs, losses), start=1):
        before = (mon.best_train_acc, mon.best_val_loss_in_acc_phase, mon.best_val_loss, mon.wait)
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
        stop_patience=int(stop_patience), factor=float(factor), lr=float(lr)))


def _why_dual(mon: DualMonitor, epoch: int, acc: float, loss: float, improved: bool, saved: bool,
              lr_factor: float, stop: bool, before: tuple, theta: int | None, lr_now: float,
              lr_next: float) -> str:
    """One sentence a student can check against the rules, in the order the monitor applies them."""
    best_acc, best_a_loss, best_b_loss, c_before = before
    T = mon.threshold
    if mon.phase == PHASE_TRAIN_ACC:
        head = f"phase A (train acc {_num(acc)} < T={_num(T)})"
        if improved:
            body = f"train acc improved on {_num(best_acc)} -> c=0; "
            if saved:
                body += f"val loss {_num(loss)} < {_num(best_a_loss)} -> theta* = epoch {epoch}"
            else:
                kept = f"epoch {theta}" if theta is not None else "unset"
                body += (f"val loss {_num(loss)} not below phase-A best {_num(best_a_loss)} "
                         f"-> theta* stays {kept}")
        else:
            body = f"train acc did not beat {_num(best_acc)} -> c={c_before + 1}"
    else:
        head = f"phase B (train acc {_num(acc)} >= T={_num(T)})"
        if improved:
            first = " (first phase-B value)" if math.isinf(best_b_loss) else ""
            body = (f"val loss {_num(loss)} < {_num(best_b_loss)}{first} -> c=0; "
                    f"theta* = epoch {epoch}")
        else:
            body = f"val loss {_num(loss)} did not beat {_num(best_b_loss)} -> c={c_before + 1}"
    if lr_factor != 1.0:
        body += (f" reaches p={mon.patience} -> LR x{_num(lr_factor)} ({_lr(lr_now)} -> {_lr(lr_next)}), "
                 f"c=0, s={mon.reductions}")
    if stop:
        kept = (f"restore theta* = epoch {theta}" if theta is not None
                else "no theta* was saved, the last weights stay")
        body += f"; s={mon.reductions} >= P={mon.stop_patience} -> stop, {kept}"
    return f"{head}: {body}"


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

    Accepts the ``history.csv`` written by the trainer, the run folder holding it, or the frame.
    A resumed run may repeat an epoch; the last record of each epoch wins.
    """
    if isinstance(history, pd.DataFrame):
        frame = history
    else:
        path = Path(history)
        if path.is_dir():
            path = path / "history.csv"
        if not path.is_file():
            raise FileNotFoundError(f"no history.csv at {path} (give a run folder or its CSV)")
        frame = pd.read_csv(path)
    missing = {"train_acc", "val_loss"} - set(frame.columns)
    if missing:
        raise ValueError(f"history lacks columns {sorted(missing)}")
    if "epoch" in frame.columns:
        frame = frame.drop_duplicates("epoch", keep="last").sort_values("epoch")
    return ([float(v) for v in frame["train_acc"]], [float(v) for v in frame["val_loss"]])


def compare(replay_df: pd.DataFrame, baseline_df: pd.DataFrame) -> pd.DataFrame:
    """Side by side: which epoch each schedule keeps, when it cuts the LR, when it stops."""
    def summary(df: pd.DataFrame) -> dict:
        last = df.iloc[-1]
        theta = last["theta_star_epoch"]
        kept = None if theta is None or pd.isna(theta) else int(theta)
        loss_at = (float(df.loc[df["epoch"] == kept, "val_loss"].iloc[0])
                   if kept is not None else float("nan"))
        cuts = [int(e) for e in df.loc[df["lr_factor"] != 1.0, "epoch"]]
        return {
            "theta* epoch (weights kept)": kept,
            "val loss at theta*": loss_at,
            "LR cut after epochs": ", ".join(map(str, cuts)) or "none",
            "stopped after epoch": int(last["epoch"]) if bool(last["stop"]) else "did not stop",
            "epochs trained": int(len(df)),
            "final LR": float(last["lr_next"]),
        }
    return pd.DataFrame({
        "dual monitor": summary(replay_df),
        "ReduceLROnPlateau + early stop": summary(baseline_df),
    })
