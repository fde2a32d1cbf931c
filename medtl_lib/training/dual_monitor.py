"""The dual-monitoring learning-rate schedule and early stopping of seed 000 (Section III.B).

A pure state machine: it sees two numbers per epoch (training accuracy, validation loss) and
answers a :class:`Decision`. It never touches torch; the trainer applies the decisions. Keeping it
pure lets the tests drive it with hand-written traces and lets notebook 02 replay a run.

Sources, and where they disagree
--------------------------------
Three descriptions of this algorithm exist, and they do not agree:

* **The text of Section III.B** (rules a, b, c). This is what the kit follows, rule by rule.
* **Algorithm 1 (the boxed pseudo-code)** is garbled in the published version: it confuses the
  names (``A_train`` for validation accuracy, ``L_train`` for validation loss), uses a counter
  ``e`` that is compared with ``c`` (``if e >= c`` / ``if e = c + 1``) where the text compares
  ``c`` with ``p``, and compares a tracker with itself. It cannot be executed as printed; where it
  is readable (initial values, cut = ``alpha * phi``, ``s += 1``, stop when ``s >= P``, restore
  ``theta*``) it agrees with the text, and we take those parts from both.
* **The authors' released code** updates the best training accuracy only while in the
  training-accuracy phase. The text defines ``A_best^train`` as "the highest training accuracy
  observed in all epochs" and ``max{A_1, ..., A_{n-1}}``; we follow the text, so epochs of the
  validation-loss phase raise ``best_train_acc`` too (without touching ``c`` there).

Rule by rule (T threshold, p patience, P stop patience, phi factor):

* Initial state: ``best_train_acc = 0``, ``best_val_loss_in_acc_phase = inf``,
  ``best_val_loss = inf``, ``c = 0``, ``s = 0`` (text and box agree).
* Phase A, ``train_acc < T``: improvement means ``train_acc > best_train_acc`` strictly (the text
  writes the other branch as ``A_n < A_best``; a tie is neither, and we count it as no
  improvement). On improvement ``c = 0``, and theta* is saved only if ``val_loss`` is also below
  the phase-A tracker, which then takes it (text, rule a). Otherwise ``c += 1``.
* Phase B, ``train_acc >= T``: improvement means ``val_loss < best_val_loss`` strictly, a tracker
  that starts at inf and moves only in phase B. On improvement it takes ``val_loss``, ``c = 0``,
  theta* is saved. Otherwise ``c += 1`` (text, rule b).
* After an increment, in either phase: if ``c >= p`` the LR is multiplied by phi, ``c = 0``,
  ``s += 1`` (text; the box's ``e`` comparisons are read as this).
* Nothing is reset when the phase changes: the text never says so, and the box keeps one ``c``.
* Stop once ``s >= P``; the trainer then restores theta* (rule c). The text also writes
  ``k* = argmin_k L_val``; theta* is what is restored, and the trainer reports its epoch.
* NaN losses compare false, so a NaN validation loss is never an improvement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PHASE_TRAIN_ACC = "train_acc"
PHASE_VAL_LOSS = "val_loss"


@dataclass(frozen=True)
class Decision:
    """What the trainer must do after an epoch."""

    lr_factor: float  # multiply every LR by this (1.0: unchanged)
    save_best: bool  # the current weights become theta*
    stop: bool  # end training (s >= P) and restore theta*
    phase: str  # which metric this epoch was judged on
    improved: bool  # the monitored metric improved (c was reset)


class DualMonitor:
    """Algorithm 1 of seed 000 as a state machine; call :meth:`step` once per epoch."""

    def __init__(
        self,
        threshold: float = 0.9,
        patience: int = 2,
        stop_patience: int = 2,
        factor: float = 0.5,
    ) -> None:
        if not (0.0 < threshold <= 1.0):
            raise ValueError(f"threshold T must be in (0, 1], got {threshold!r}")
        if int(patience) != patience or patience < 1:
            raise ValueError(f"patience p must be an integer >= 1, got {patience!r}")
        if int(stop_patience) != stop_patience or stop_patience < 1:
            raise ValueError(f"stop_patience P must be an integer >= 1, got {stop_patience!r}")
        if not (0.0 < factor < 1.0):
            raise ValueError(f"factor phi must be in (0, 1), got {factor!r}")
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.stop_patience = int(stop_patience)
        self.factor = float(factor)
        self.phase: str = PHASE_TRAIN_ACC
        self.wait = 0  # c
        self.reductions = 0  # s
        self.best_train_acc = 0.0
        self.best_val_loss_in_acc_phase = math.inf
        self.best_val_loss = math.inf
        self.epochs_seen = 0

    @property
    def stopped(self) -> bool:
        return self.reductions >= self.stop_patience

    def step(self, train_acc: float, val_loss: float) -> Decision:
        """Judge one epoch and update the state."""
        train_acc = float(train_acc)
        val_loss = float(val_loss)
        save = False
        if train_acc < self.threshold:
            self.phase = PHASE_TRAIN_ACC
            improved = train_acc > self.best_train_acc
            if improved and val_loss < self.best_val_loss_in_acc_phase:
                self.best_val_loss_in_acc_phase = val_loss
                save = True
        else:
            self.phase = PHASE_VAL_LOSS
            improved = val_loss < self.best_val_loss
            if improved:
                self.best_val_loss = val_loss
                save = True
        # "the highest training accuracy observed in all epochs", whichever phase they were in.
        self.best_train_acc = max(self.best_train_acc, train_acc)

        lr_factor = 1.0
        if improved:
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                lr_factor = self.factor
                self.wait = 0
                self.reductions += 1
        self.epochs_seen += 1
        return Decision(lr_factor, save, self.stopped, self.phase, improved)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume mid-run (stored in the epoch checkpoint)."""
        keys = ("threshold", "patience", "stop_patience", "factor", "phase", "wait",
                "reductions", "best_train_acc", "best_val_loss_in_acc_phase", "best_val_loss",
                "epochs_seen")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if not hasattr(self, key):
                raise KeyError(f"unknown DualMonitor state key {key!r}")
            setattr(self, key, value)

    def __repr__(self) -> str:
        return (f"DualMonitor(T={self.threshold}, p={self.patience}, P={self.stop_patience}, "
                f"phi={self.factor}; phase={self.phase}, c={self.wait}, s={self.reductions})")
