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
  training-accuracy phase (DangKhoaAI/TransferlearningMedicalImage, ``training.py:102-103``:
  ``if epoch_train_acc > best_train_acc: best_train_acc = epoch_train_acc`` inside the
  ``epoch_train_acc < threshold`` branch). The text defines ``A_best^train`` as "the highest
  training accuracy observed in all epochs" and ``max{A_1, ..., A_{n-1}}``; we follow the text,
  so epochs of the validation-loss phase raise ``best_train_acc`` too (without touching ``c``
  there). ``Readings(best_train_acc="phase_a")`` runs the code's version (below).

Rule by rule (T threshold, p patience, P stop patience, phi factor):

* Initial state: ``best_train_acc = 0``, ``best_val_loss_in_acc_phase = inf``,
  ``best_val_loss = inf``, ``c = 0``, ``s = 0`` (text and box agree).
* Phase A, ``train_acc < T``: improvement means ``train_acc > best_train_acc`` strictly (the text
  writes the other branch as ``A_n < A_best``; a tie is neither, and we count it as no
  improvement). On improvement ``c = 0``, and theta* is saved only if ``val_loss`` is also below
  the phase-A tracker, which then takes it (text, rule a). Otherwise ``c += 1``.
* Phase B, ``train_acc >= T``: improvement means ``val_loss < best_val_loss`` strictly, a tracker
  that starts at inf and moves only in phase B (open reading (a), below). On improvement it takes
  ``val_loss``, ``c = 0``, theta* is saved. Otherwise ``c += 1`` (text, rule b).
* After an increment, in either phase: if ``c >= p`` the LR is multiplied by phi, ``c = 0``,
  ``s += 1`` (text; the box's ``e`` comparisons are read as this).
* Nothing is reset when the phase changes: the text never says so, and the box keeps one ``c``
  (open reading (c), below).
* Stop once ``s >= P``; the trainer then restores theta* (rule c). The text also writes
  ``k* = argmin_k L_val``; theta* is what is restored, and the trainer reports its epoch (open
  reading (b), below).
* NaN losses compare false, so a NaN validation loss is never an improvement.

Four readings, and the options that run the other one
-----------------------------------------------------
Three of the choices above are readings of sentences that allow two, not facts; the fourth is
where the text and the authors' code disagree. The kit's reading is the default of each field of
:class:`Readings`; the other value is offered so that notebook 02 can replay the same curve under
it and show where the decisions differ, and so that a run can train under it
(``RunConfig.dual_monitor_readings``, e.g. ``{best_train_acc: phase_a}`` for the code's). Without
``readings`` the monitor is bit-identical to the monitor before these options existed,
``state_dict`` included.

* ``rule_b_best``: rule b compares with ``L_best^val``, which the text defines twice: as "the
  lowest validation loss observed when validation loss itself is the monitoring metric" (a phase-B
  tracker, ``"phase_b"``, the default) and, inside rule b, as ``min{L_1^val, ..., L_{n-1}^val}``
  (every earlier epoch, phase A included, ``"all_epochs"``). Under ``"all_epochs"`` the first
  phase-B epoch is no longer saved automatically: it must beat every earlier validation loss.
* ``k_star``: rule c restores ``theta*`` and writes ``k* = argmin_k L_k^val``. Default
  ``"last_saved"``: ``theta*`` is what rules a and b saved last, and ``k*`` is its epoch. The other
  reading, ``"argmin_val_loss"``: the checkpoint kept is the epoch of the lowest validation loss
  over all epochs (first one on ties), so ``save_best`` is true exactly on a new lowest validation
  loss, whatever the phase (rules a and b then only steer ``c``, the cuts and the stop).
* ``c_at_switch``: the text never says that ``c`` is reset when the phase changes. Default
  ``"keep"``: ``c`` carries over. The other reading, ``"reset"``: an epoch whose phase differs from
  the previous epoch's starts from ``c = 0`` (epochs without progress in phase A do not count
  against phase B, and vice versa).
* ``best_train_acc``: default ``"all_epochs"`` (the text: the highest training accuracy of every
  epoch). The code's reading, ``"phase_a"``: only phase-A epochs raise it, so after a phase-B
  epoch with a high training accuracy, a later phase-A epoch can still count as an improvement.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

PHASE_TRAIN_ACC = "train_acc"
PHASE_VAL_LOSS = "val_loss"

# the values of each open reading: (the kit's default, the other reading)
READING_VALUES: dict[str, tuple[str, str]] = {
    "rule_b_best": ("phase_b", "all_epochs"),
    "k_star": ("last_saved", "argmin_val_loss"),
    "c_at_switch": ("keep", "reset"),
    "best_train_acc": ("all_epochs", "phase_a"),
}


@dataclass(frozen=True)
class Readings:
    """How the monitor reads the three sentences of Section III.B that allow two readings, and
    the rule where the authors' code departs from the text.

    The defaults are the kit's readings (what the trainer runs); see the module docstring for what
    the paper says and what each value means. A frozen value object, so a replay can record which
    readings produced it and two monitors can be compared.
    """

    rule_b_best: str = "phase_b"  # or "all_epochs": rule b's best val loss over every epoch
    k_star: str = "last_saved"  # or "argmin_val_loss": keep the epoch of the lowest val loss
    c_at_switch: str = "keep"  # or "reset": c = 0 when the phase changes
    best_train_acc: str = "all_epochs"  # or "phase_a": the authors' code (phase A raises it only)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, allowed = getattr(self, f.name), READING_VALUES[f.name]
            if value not in allowed:
                raise ValueError(f"{f.name} must be one of {allowed}, got {value!r}")

    @property
    def is_default(self) -> bool:
        return self == Readings()

    def changed(self) -> dict[str, str]:
        """The fields that differ from the kit's readings (empty for the defaults)."""
        default = Readings()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    def label(self) -> str:
        """Short text for tables and legends: "kit readings" or e.g. "k_star=argmin_val_loss"."""
        changed = self.changed()
        return ", ".join(f"{k}={v}" for k, v in changed.items()) if changed else "kit readings"

    @classmethod
    def other(cls, name: str) -> "Readings":
        """The kit's readings with only ``name`` switched to its other value."""
        if name not in READING_VALUES:
            raise ValueError(f"no open reading {name!r}; there are {tuple(READING_VALUES)}")
        return replace(cls(), **{name: READING_VALUES[name][1]})


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
        *,
        readings: Readings | dict[str, str] | None = None,
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
        if isinstance(readings, dict):
            readings = Readings(**readings)
        self.readings: Readings = readings or Readings()
        # lowest validation loss of every epoch so far; only the k* = argmin reading decides on it
        # (and only then is it part of state_dict), the kit's readings just report it
        self.min_val_loss = math.inf

    @property
    def stopped(self) -> bool:
        return self.reductions >= self.stop_patience

    def step(self, train_acc: float, val_loss: float) -> Decision:
        """Judge one epoch and update the state."""
        train_acc = float(train_acc)
        val_loss = float(val_loss)
        r = self.readings
        phase = PHASE_TRAIN_ACC if train_acc < self.threshold else PHASE_VAL_LOSS
        if r.c_at_switch == "reset" and self.epochs_seen > 0 and phase != self.phase:
            self.wait = 0  # open reading (c): the other reading starts each phase afresh
        save = False
        if phase == PHASE_TRAIN_ACC:
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
        # "the highest training accuracy observed in all epochs", whichever phase they were in
        # (the authors' code: only in phase A)
        if r.best_train_acc == "all_epochs" or phase == PHASE_TRAIN_ACC:
            self.best_train_acc = max(self.best_train_acc, train_acc)
        if r.rule_b_best == "all_epochs" and val_loss < self.best_val_loss:
            self.best_val_loss = val_loss  # open reading (a): phase-A epochs set rule b's best too
        if r.k_star == "argmin_val_loss":
            save = val_loss < self.min_val_loss  # open reading (b): keep the lowest val loss
        if val_loss < self.min_val_loss:
            self.min_val_loss = val_loss

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
        state = {k: getattr(self, k) for k in keys}
        if not self.readings.is_default:
            # only other readings add keys: the trainer's checkpoints stay exactly as they were
            state["readings"] = asdict(self.readings)
            state["min_val_loss"] = self.min_val_loss
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key == "readings":
                value = Readings(**value)
            elif not hasattr(self, key):
                raise KeyError(f"unknown DualMonitor state key {key!r}")
            setattr(self, key, value)

    def __repr__(self) -> str:
        extra = "" if self.readings.is_default else f", readings: {self.readings.label()}"
        return (f"DualMonitor(T={self.threshold}, p={self.patience}, P={self.stop_patience}, "
                f"phi={self.factor}{extra}; phase={self.phase}, c={self.wait}, "
                f"s={self.reductions})")
