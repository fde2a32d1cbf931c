"""Learning-rate schedules as one protocol, and model selection.

A schedule sees the epochs of one stage. It may set the LR at the start (``begin``), before every
optimizer step (``per_step`` schedules) and after every epoch (:class:`ScheduleDecision`), and it
may end the stage early. Each owns its history columns. The LR is expressed relative to the
stage's base LR of each parameter group, so groups with their own LRs (discriminative LRs, a head
at 10x) keep their ratios:

* ``lr_factor`` multiplies every group's current LR (dual monitor, plateau, exp), exactly as the
  seed-000 trainer always did, so its numbers stay bit-identical;
* ``lr_scale`` sets every group's LR to base x scale (cosine, warm-up + cosine).

Model selection (:class:`Selector`) is separate: ``select_by`` names the validation number whose
best epoch is kept (theta*), and ``early_stop_patience`` ends a stage after that many epochs
without a better one. ``select_by='dual_monitor'`` keeps the seed-000 rule (the monitor decides).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..registry import Arg, Registry
from .dual_monitor import DualMonitor

SCHEDULES: Registry["Schedule"] = Registry("schedule", "learning-rate schedule (--schedule)",
                                            flag="--schedule-arg",
                                            lazy=(__package__, "schedule_"))


@dataclass(frozen=True)
class EpochStats:
    """What a schedule or selector may look at after an epoch."""

    epoch: int  # 0-based within the stage
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    val_macro_acc: float | None = None
    val_auroc: float | None = None


@dataclass(frozen=True)
class ScheduleDecision:
    lr_factor: float = 1.0  # multiply every group's current LR
    lr_scale: float | None = None  # or: every group's LR = its stage base LR x this
    stop: bool = False  # the schedule's own stopping rule ends the stage
    save_best: bool | None = None  # the dual monitor's theta* rule; None for other schedules
    columns: dict[str, Any] = field(default_factory=dict)  # this schedule's history columns


class Schedule:
    name = "none"
    description = "constant LR"
    args: tuple[Arg, ...] = ()
    columns: tuple[str, ...] = ()
    per_step = False
    #: RunConfig fields the schedule takes as constructor arguments (not schedule_args)
    run_fields: tuple[str, ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        for k, v in kwargs.items():
            setattr(self, k, v)

    def begin(self, base_lr: float, epochs: int, steps_per_epoch: int) -> float | None:
        """Start of a stage; returns the LR scale of its first epoch (None: base LR)."""
        self.base_lr, self.epochs, self.steps_per_epoch = base_lr, epochs, steps_per_epoch
        return None

    def scale_at_step(self, step: int) -> float | None:
        """Per-step schedules: the LR scale for optimizer step ``step`` (0-based in the stage)."""
        return None

    def end_epoch(self, stats: EpochStats) -> ScheduleDecision:
        return ScheduleDecision()

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@SCHEDULES.register
class NoSchedule(Schedule):
    name = "none"
    description = "constant LR; stops only by epochs or early_stop_patience"


@SCHEDULES.register
class DualMonitorSchedule(Schedule):
    """Seed 000's Algorithm 1; T, p, P, phi are the run's threshold/patience/stop_patience/factor,
    and ``dual_monitor_readings`` picks the readings of its ambiguous rules (dual_monitor.Readings)."""

    name = "dual_monitor"
    description = ("seed 000: train accuracy below T, else val loss; LR x phi after p bad epochs, "
                   "stop after P cuts (threshold, patience, stop_patience, factor)")
    columns = ("phase", "c", "s", "lr_factor")
    run_fields = ("threshold", "patience", "stop_patience", "factor", "dual_monitor_readings")

    def __init__(self, threshold: float = 0.9, patience: int = 2, stop_patience: int = 2,
                 factor: float = 0.5, dual_monitor_readings: dict | None = None) -> None:
        # no readings given: exactly the monitor (and checkpoint state) of the kit's readings
        self.monitor = DualMonitor(threshold, patience, stop_patience, factor,
                                   readings=dual_monitor_readings or None)

    def end_epoch(self, stats: EpochStats) -> ScheduleDecision:
        d = self.monitor.step(stats.train_acc, stats.val_loss)
        return ScheduleDecision(lr_factor=d.lr_factor, stop=d.stop, save_best=d.save_best,
                                columns=dict(phase=d.phase, c=self.monitor.wait,
                                             s=self.monitor.reductions, lr_factor=d.lr_factor))

    def state_dict(self) -> dict[str, Any]:
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.monitor.load_state_dict(state)


@SCHEDULES.register
class Plateau(Schedule):
    """torch's ReduceLROnPlateau(mode='min', threshold=0) on the validation loss, as a pure state
    machine, plus two stopping rules: the LR fell below ``min_lr_stop`` (seed 003) or
    ``stop_after_cuts`` cuts were made (notebook 02's baseline).

    * ``best`` starts at +inf; an epoch is better when ``val_loss < best`` strictly (a tie or NaN
      is a bad epoch). Better: best = val_loss, bad = 0; otherwise bad += 1.
    * The LR is cut when bad **exceeds** ``patience`` (``>``, torch's rule; the dual monitor cuts
      at ``>=``), then bad = 0. The cut is new = max(lr x factor, min_lr), applied only if
      lr - new > eps; a cut at the floor changes nothing but still counts and resets bad.
    """

    name = "plateau"
    description = ("ReduceLROnPlateau on val loss (cut when bad epochs > patience); stop once "
                   "the LR is below min_lr_stop (seed 003)")
    args = (Arg("factor", "float", 0.5, "LR multiplier at a cut", minimum=1e-9, maximum=0.999999),
            Arg("patience", "int", 5, "bad epochs tolerated before a cut", minimum=0),
            Arg("min_lr_stop", "float", 1e-6, "end the stage once the LR is below this; 0: never",
                minimum=0.0),
            Arg("min_lr", "float", 0.0, "the LR is never cut below this", minimum=0.0),
            Arg("stop_after_cuts", "int", 0, "end the stage after this many cuts; 0: never",
                minimum=0))
    columns = ("bad", "cuts")
    eps = 1e-8

    def begin(self, base_lr: float, epochs: int, steps_per_epoch: int) -> float | None:
        super().begin(base_lr, epochs, steps_per_epoch)
        self.lr, self.best, self.bad, self.cuts = base_lr, math.inf, 0, 0
        return None

    def end_epoch(self, stats: EpochStats) -> ScheduleDecision:
        factor = 1.0
        if stats.val_loss < self.best:
            self.best, self.bad = float(stats.val_loss), 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            self.cuts += 1
            self.bad = 0
            candidate = max(self.lr * self.factor, self.min_lr)
            if self.lr - candidate > self.eps:
                factor = self.factor if candidate == self.lr * self.factor else candidate / self.lr
                self.lr = candidate
        stop = (self.min_lr_stop > 0 and self.lr < self.min_lr_stop) or (
            self.stop_after_cuts > 0 and self.cuts >= self.stop_after_cuts)
        return ScheduleDecision(lr_factor=factor, stop=stop,
                                columns=dict(bad=self.bad, cuts=self.cuts))


@SCHEDULES.register
class Cosine(Schedule):
    """Per epoch, torch's CosineAnnealingLR in closed form: scale(e) = m + (1 - m)(1 + cos(pi e /
    T)) / 2 for epoch e of the stage (0-based), m = eta_min_factor."""

    name = "cosine"
    description = "cosine annealing per epoch over t_max epochs (0: the stage's epochs)"
    args = (Arg("t_max", "int", 0, "period in epochs; 0: the stage's epochs", minimum=0),
            Arg("eta_min_factor", "float", 0.0, "lowest LR as a fraction of the base LR",
                minimum=0.0, maximum=1.0))

    def scale(self, epoch: int) -> float:
        t_max = self.t_max or self.epochs
        m = self.eta_min_factor
        return m + (1.0 - m) * (1.0 + math.cos(math.pi * epoch / t_max)) / 2.0

    def end_epoch(self, stats: EpochStats) -> ScheduleDecision:
        return ScheduleDecision(lr_scale=self.scale(stats.epoch + 1))


@SCHEDULES.register
class WarmupCosine(Schedule):
    """Per optimizer step (seed 002's code): linear warm-up over ``warmup_epochs`` from
    ``warmup_from`` x LR to the LR, then 0.5 (1 + cos(pi t / total)) with t the step counted from
    the start of the stage and total = (epochs + extra_epochs) x steps per epoch. The authors'
    code counts one epoch more than it trains (``extra_epochs=1``), so its cosine phase starts
    just below the LR and ends just above 0."""

    name = "warmup_cosine"
    description = "per step: linear warm-up from warmup_from x LR, then cosine (seed 002)"
    args = (Arg("warmup_epochs", "float", 5.0, "warm-up length in epochs", minimum=0.0),
            Arg("warmup_from", "float", 0.01, "LR fraction at step 0", minimum=0.0, maximum=1.0),
            Arg("extra_epochs", "int", 0, "epochs added to the cosine's length (authors' code: 1)",
                minimum=0))
    per_step = True

    def scale_at_step(self, step: int) -> float:
        warm = self.warmup_epochs * self.steps_per_epoch
        if step < warm:
            return self.warmup_from + (1.0 - self.warmup_from) * step / warm
        total = (self.epochs + self.extra_epochs) * self.steps_per_epoch
        return 0.5 * (1.0 + math.cos(math.pi * step / total))

    def begin(self, base_lr: float, epochs: int, steps_per_epoch: int) -> float | None:
        super().begin(base_lr, epochs, steps_per_epoch)
        return self.scale_at_step(0)


@SCHEDULES.register
class Exponential(Schedule):
    """torch's ExponentialLR: the LR is multiplied by gamma after every epoch (seed 004)."""

    name = "exp"
    description = "LR x gamma after every epoch (seed 004)"
    args = (Arg("gamma", "float", 0.95, "per-epoch factor", minimum=1e-9, maximum=1.0),)

    def end_epoch(self, stats: EpochStats) -> ScheduleDecision:
        return ScheduleDecision(lr_factor=self.gamma)


# ------------------------------------------------------------------ model selection
SELECT_BY: Registry["SelectionRule"] = Registry(
    "select_by", "which epoch's weights are kept, theta* (--select-by)",
    lazy=(__package__, "select_"))


class SelectionRule:
    """A ``select_by`` rule: the :class:`EpochStats` field ``metric`` (default: the name) and
    ``mode`` 'min' or 'max'; ``mode = None`` leaves theta* to the schedule (the dual monitor)."""

    name = "rule"
    description = ""
    args: tuple[Arg, ...] = ()
    mode: str | None = "max"
    metric: str | None = None  # None: the name

    @classmethod
    def value(cls, stats: "EpochStats") -> Any:
        return getattr(stats, cls.metric or cls.name)


@SELECT_BY.register
class SelectByDualMonitor(SelectionRule):
    name, mode = "dual_monitor", None
    description = "the dual monitor's theta* rule (seed 000; needs schedule=dual_monitor)"


@SELECT_BY.register
class SelectByValLoss(SelectionRule):
    name, mode, description = "val_loss", "min", "lowest validation loss"


@SELECT_BY.register
class SelectByValAcc(SelectionRule):
    name, mode, description = "val_acc", "max", "highest validation accuracy"


@SELECT_BY.register
class SelectByValMacroAcc(SelectionRule):
    name, mode, description = "val_macro_acc", "max", "highest validation macro accuracy"


@SELECT_BY.register
class SelectByValAuroc(SelectionRule):
    name, mode, description = "val_auroc", "max", "highest validation AUROC"


#: which of equally good epochs becomes theta*: the first (strictly better only; the kit's) or
#: the last (better or equal: seed 002's code, ``acc >= best_acc`` in CDTM's train.py)
SELECT_TIES = ("first", "last")


class Selector:
    """Which epoch of a stage is theta*, and the early-stopping patience on that number.

    With ``ties='first'`` an epoch is better only when strictly better, so the first of equal
    epochs is kept; ``ties='last'`` keeps the last of them (an equal epoch is saved, and also
    resets the patience, as it does in seed 002's code). With 70-278 validation images equal
    accuracies are common, and the choice moves stage 2's starting point. With ``dual_monitor``
    the schedule's own theta* rule decides; patience then counts the epochs since the last save.
    """

    def __init__(self, select_by: str = "dual_monitor", early_stop_patience: int | None = None,
                 ties: str = "first"):
        SELECT_BY.check(select_by, "select_by")
        if ties not in SELECT_TIES:
            raise ValueError(f"select_ties must be one of {SELECT_TIES}, got {ties!r}")
        self.select_by, self.patience, self.ties = select_by, early_stop_patience, ties
        self.best: float | None = None
        self.since_best = 0

    def step(self, stats: EpochStats, decision: ScheduleDecision) -> tuple[bool, bool]:
        """(save this epoch as theta*, stop the stage)."""
        rule = SELECT_BY.get(self.select_by)
        mode = rule.mode
        if mode is None:
            if decision.save_best is None:
                raise ValueError("select_by='dual_monitor' needs schedule='dual_monitor'")
            save = decision.save_best
        else:
            value = rule.value(stats)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                save = False
            elif self.best is None:
                save = True
            elif self.ties == "last":
                save = value <= self.best if mode == "min" else value >= self.best
            else:
                save = value < self.best if mode == "min" else value > self.best
            if save:
                self.best = float(value)
        self.since_best = 0 if save else self.since_best + 1
        stop = self.patience is not None and self.since_best >= self.patience
        return save, stop

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "since_best": self.since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.since_best = state["best"], state["since_best"]
