"""The single training loop. The strategy decides what trains in which stage, the schedule
decides the LR and when a stage may end, the selector which epoch is theta*; the loop only
applies those decisions, saves and resumes.

Every epoch ends with a complete resume checkpoint (written atomically) that records the
stage, the epoch within it and the state of optimizer, schedule, selector and strategy, so
rerunning the same command after a crash continues from the last finished epoch, in whatever
stage it was. Each epoch reseeds all random number generators from (seed, epoch), so a resumed
CPU run gives exactly the numbers of an uninterrupted one.

Weights kept on disk (names in medtl_lib.run_folder): each stage's best for every stage but the
last (a later stage may start from it), theta* for the last stage (restored at the end), and the
resume checkpoint.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import run_folder as rf
from ..checkpoint_files import load_checkpoint, save_checkpoint
from ..device import DeviceInfo
from ..distributed import RANK_SEED_STRIDE, Dist
from ..faults import point as fault_point
from ..metrics import auroc
from ..utils import iterate_with_bar, seed_everything
from .checkpoints import load_resume_state
from .optim import build_optimizer
from .schedules import SCHEDULES, DualMonitorSchedule, EpochStats, Schedule, Selector
from .strategies import Stage, StageContext, Strategy, count_params

#: columns every history has; schedules and strategies add their own after ``lr``
BASE_COLUMNS = ["epoch", "stage", "train_loss", "train_acc", "val_loss", "val_acc", "lr"]
TAIL_COLUMNS = ["save_best", "stop", "trainable_params", "lr_groups", "seconds"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; theta* and the last complete epoch are kept on disk."""


@dataclass
class FitResult:
    history: pd.DataFrame
    best_epoch: int | None  # epoch (1-based, counted over all stages) restored; None: never saved
    stopped_early: bool  # the last stage ended by its stopping rule
    epochs_run: int
    resumed_from: int = 0  # epochs already done when this call started
    stages: list[dict] = field(default_factory=list)  # per stage: name, epochs_run, best_epoch, stopped_early


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    probs: np.ndarray  # (n, classes) softmax probabilities
    labels: np.ndarray  # (n,)


#: (model to run, training batches, validation batches) for one stage; lets a frozen-backbone stage
#: train its head on stored features while another stage runs on images
StageInputs = tuple[nn.Module, Iterable, Iterable]


def dual_monitor_schedules(threshold: float = 0.9, patience: int = 2, stop_patience: int = 2,
                           factor: float = 0.5) -> Callable[[Stage], Schedule]:
    """Seed 000's schedule for every stage (the trainer's default)."""
    return lambda stage: DualMonitorSchedule(threshold, patience, stop_patience, factor)


def schedule_factory(name: str, args: dict | None = None, **run_fields: Any
                     ) -> Callable[[Stage], Schedule]:
    """A fresh schedule per stage: the stage's own when it names one, else the run's.
    ``run_fields`` (e.g. the dual monitor's threshold, patience, stop_patience, factor) go to the
    schedules that declare them in ``run_fields``."""

    def make(stage: Stage) -> Schedule:
        n, a = (stage.schedule, stage.schedule_args) if stage.schedule else (name, args)
        cls = SCHEDULES.get(n)
        return SCHEDULES.build(n, a, **{k: run_fields[k] for k in cls.run_fields
                                        if k in run_fields})

    return make


@dataclass(kw_only=True)
class Trainer:
    """The loop of every run, built from keyword arguments only (a dozen settings by position
    were easy to misorder)."""

    model: nn.Module
    strategy: Strategy
    device: DeviceInfo
    lr: float
    epochs: int = 10  # the run's epochs; the strategy splits them into stages
    optimizer_name: str = "adamax"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedules: Callable[[Stage], Schedule] = field(default_factory=dual_monitor_schedules)
    select_by: str = "dual_monitor"
    early_stop_patience: int | None = None
    criterion: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    ckpt_dir: Path | None = None  # None: nothing written, theta* kept in memory
    progress: bool = True
    callbacks: list[Callable[[dict], None]] = field(default_factory=list)
    channels_last: bool | None = None  # None: on CUDA for convolutional models (see below)
    dist: Dist = field(default_factory=Dist)  # torchrun's world (medtl_lib.distributed)
    select_ties: str = "first"  # which of equally good epochs is theta* (schedules.Selector)

    def __post_init__(self) -> None:
        self.model.to(self.device.device)
        if self.channels_last is None:
            self.channels_last = self.device.device.type == "cuda" and is_convolutional(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.criterion.to(self.device.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.uses_scaler)
        self.stages = self.strategy.stages(self.epochs)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy '{self.strategy.name}' has two stages of one name: {names}")
        self._best_in_memory: dict[str, dict] = {}
        self.optimizer: torch.optim.Optimizer | None = None
        self._stage_index = 0
        self._lr_mult = 1.0  # the schedule's current multiplier of the stage's base LRs
        self._hold_until = 0  # the stage's stopping rules wait for this epoch (complete_from)
        self._ddp: tuple[tuple, nn.Module] | None = None  # (what it wraps, the DDP wrapper)

    # ------------------------------------------------------------------ loop
    def fit(self, train_loader: Iterable | None = None, val_loader: Iterable | None = None,
            seed: int = 0, inputs: Callable[[Stage], StageInputs] | None = None) -> FitResult:
        """Run every stage (resuming from the run folder's checkpoint if present), restore theta*.

        ``inputs(stage)`` gives each stage its model and batches; without it every stage runs
        ``self.model`` on ``train_loader`` / ``val_loader``."""
        if inputs is None:
            if train_loader is None or val_loader is None:
                raise ValueError("fit needs train_loader and val_loader, or inputs")
            inputs = lambda stage: (self.model, train_loader, val_loader)  # noqa: E731
        self.strategy.setup(self.model)  # on the pretrained weights, before any resume
        history: list[dict] = []
        stage_log: list[dict] = []
        state = self._load_last()
        start_stage, start_epoch, resumed_from = 0, 0, 0
        if state is not None:
            history, stage_log = state["history"], state["stages"]
            resumed_from = len(history)
            start_stage, start_epoch = state["stage_index"], state["stage_epoch"]
            if state["stage_done"]:
                start_stage, start_epoch = start_stage + 1, 0
        for si in range(start_stage, len(self.stages)):
            stage = self.stages[si]
            self._stage_index = si
            fwd_model, tl, vl = inputs(stage)
            resume_here = state is not None and si == state["stage_index"] and not state["stage_done"]
            if si > 0 and not resume_here:
                self._hand_over(self.stages[si - 1], stage)
            schedule, selector, base_lrs = self._begin_stage(stage, tl)
            if resume_here:
                self._load_stage_state(state, schedule, selector)
            else:
                stage_log.append({"name": stage.name, "epochs_run": 0, "best_epoch": None,
                                  "stopped_early": False})
            info = stage_log[-1]
            for e in range(start_epoch if resume_here else 0, stage.epochs):
                row = self._run_epoch(stage, e, len(history), fwd_model, tl, vl, seed, schedule,
                                      selector, base_lrs)
                if row["save_best"]:
                    info["best_epoch"] = row["epoch"]
                info["epochs_run"] = e + 1
                done = row["stop"] or e + 1 == stage.epochs
                info["stopped_early"] = bool(row["stop"])
                history.append(row)
                self._save_last(si, e + 1, done, history, stage_log, schedule, selector)
                fault_point("train.epoch")
                for cb in self.callbacks:
                    cb(row)
                if row["stop"]:
                    break
        self.restore_best()
        last = stage_log[-1] if stage_log else {"best_epoch": None, "stopped_early": False}
        return FitResult(self.history_frame(history), last["best_epoch"],
                         bool(last["stopped_early"]), len(history), resumed_from, stage_log)

    def _begin_stage(self, stage: Stage, train_loader: Iterable
                     ) -> tuple[Schedule, Selector, list[float]]:
        """A new optimizer, schedule and selector for the stage; the LRs of its first epoch."""
        lr = self.lr * stage.lr_factor
        self.strategy.context = StageContext(stage, lr, train_loader, self.device, self.criterion,
                                             self.dist)
        self._lr_mult = 1.0
        groups = self.strategy.param_groups(self.model, lr, stage)
        self.optimizer = build_optimizer(stage.optimizer or self.optimizer_name, groups, lr,
                                         self.weight_decay, self.momentum)
        base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        schedule = self.schedules(stage)
        steps = _len(train_loader)
        if schedule.per_step and not steps:
            raise ValueError(f"schedule '{schedule.name}' steps per batch and needs a loader "
                             "with a length")
        scale = schedule.begin(base_lrs[0], stage.epochs, steps or 0)
        if scale is not None:
            self._set_scale(base_lrs, scale)
        self._hold_until = self.strategy.complete_from(self.model, stage)
        if self._hold_until >= stage.epochs:
            warnings.warn(f"strategy '{self.strategy.name}' trains its full set of parameters "
                          f"from epoch {self._hold_until + 1} of stage '{stage.name}', which has "
                          f"{stage.epochs}: some parameters never train", stacklevel=2)
        return schedule, Selector(self.select_by, self.early_stop_patience,
                                  self.select_ties), base_lrs

    def _run_epoch(self, stage: Stage, e: int, done_before: int, fwd_model: nn.Module,
                   train_loader: Iterable, val_loader: Iterable, seed: int, schedule: Schedule,
                   selector: Selector, base_lrs: list[float]) -> dict:
        t0 = time.perf_counter()
        epoch = done_before  # 0-based over all stages: seeds the epoch's random numbers
        self._seed_epoch(train_loader, seed, epoch)
        self.strategy.on_epoch_start(self.model, stage, e)
        new = self.strategy.optimizer_for_epoch(self.model, stage, e, self.optimizer)
        if new is not None:  # its groups carry base LRs: the schedule's multiplier goes on top
            self.optimizer = new
            base_lrs[:] = [g["lr"] for g in new.param_groups]
            self._set_scale(base_lrs, self._lr_mult)
        lr_now = self.optimizer.param_groups[0]["lr"]
        lr_groups = self.lr_groups()
        trainable = self.trainable_params()
        step_scale = None
        if schedule.per_step:
            spe = _len(train_loader) or 0
            step_scale = lambda i: schedule.scale_at_step(e * spe + i)  # noqa: E731
        if stage.closed_form:  # e.g. a logistic-regression probe: solved, not stepped
            train_loss, train_acc = self.strategy.fit_stage(fwd_model, stage, train_loader,
                                                            val_loader)
        else:
            train_loss, train_acc = self.train_epoch(train_loader, epoch, model=fwd_model,
                                                     step_scale=step_scale, base_lrs=base_lrs)
        need_probs = self.select_by in ("val_macro_acc", "val_auroc")
        val = self.evaluate(val_loader, desc=f"epoch {epoch + 1} val", model=fwd_model)
        stats = EpochStats(e, train_loss, train_acc, val.loss, val.accuracy,
                           *(_macro_acc_auroc(val) if need_probs else (None, None)))
        decision = schedule.end_epoch(stats)
        save, stop_select = selector.step(stats, decision)
        if save:
            self._save_best(stage, epoch + 1)
        if decision.lr_scale is not None:
            self._set_scale(base_lrs, decision.lr_scale)
        elif decision.lr_factor != 1.0:
            for group in self.optimizer.param_groups:
                group["lr"] *= decision.lr_factor
            self._lr_mult *= decision.lr_factor
        stop = bool(decision.stop or stop_select)
        # a stage whose trainable set still grows is not ended by a stopping rule (see
        # Strategy.complete_from); the history says when one was held
        held = {} if self._hold_until == 0 else {"stop_held": stop and e < self._hold_until}
        row = dict(epoch=epoch + 1, stage=stage.name, train_loss=train_loss, train_acc=train_acc,
                   val_loss=val.loss, val_acc=val.accuracy, lr=lr_now, **decision.columns,
                   **held, save_best=save, stop=stop and e >= self._hold_until,
                   trainable_params=trainable, lr_groups=lr_groups,
                   seconds=round(time.perf_counter() - t0, 2))
        row.update(self.strategy.describe_epoch(self.model))
        return row

    def train_epoch(self, loader: Iterable, epoch: int = 0, max_batches: int | None = None,
                    model: nn.Module | None = None,
                    step_scale: Callable[[int], float] | None = None,
                    base_lrs: list[float] | None = None) -> tuple[float, float]:
        """One pass over the training data; returns (mean loss, accuracy) seen during training."""
        model = self.model if model is None else model
        if self.optimizer is None:  # used on its own (bench): the first stage's optimizer
            self._begin_stage(self.stages[0], loader)
            self.strategy.on_epoch_start(self.model, self.stages[0], 0)
        dev = self.device.device
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        seen = 0
        total = max_batches if max_batches is not None else _len(loader)
        hook = self.strategy.needs_gradients
        # the bar is updated by hand: tqdm(loader) would iterate the loader once more (see
        # utils.iterate_with_bar) and shift the shuffle order
        bar = tqdm(total=total, desc=f"epoch {epoch + 1} train", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        net = self._parallel(model)  # the DDP wrapper under torchrun, else the model itself
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            if step_scale is not None:
                self._set_scale(base_lrs or [], step_scale(i))
            x, y = self._to_device(x, y)
            with torch.autocast(dev.type, dtype=self.device.amp_dtype or torch.float32,
                                enabled=self.device.amp_dtype is not None):
                logits = net(x)
                loss = self.criterion(logits, y)
                extra = self.strategy.penalty(self.model)
                if extra is not None:
                    loss = loss + extra
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, batch {i + 1}. The weights "
                    f"of the best epoch ({rf.BEST}) and the last complete epoch ({rf.LAST}) "
                    "are kept. Try a lower --lr, or --amp off.")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if hook:
                self.scaler.unscale_(self.optimizer)
                self.strategy.after_backward(self.model)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            fault_point("train.step")
            n = y.shape[0]
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == y).sum()
            seen += n
            bar.update(1)
            if self.progress and (i % 10 == 0):
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", refresh=False)
        bar.close()
        # every rank takes the same decisions: the epoch's numbers over all shards, and one set
        # of BatchNorm statistics (rank 0's) for the evaluation that follows
        loss_total, correct_total, seen = self.dist.all_sum([loss_sum.item(), correct.item(), seen])
        self.dist.sync_buffers(self.model)
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        return loss_total / seen, correct_total / seen

    def _parallel(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel when the world is larger than one; rebuilt when
        the set of trainable parameters changes (a strategy unfreezes layers), since DDP fixes
        the parameters it reduces when it is built."""
        if not self.dist.enabled or not any(p.requires_grad for p in model.parameters()):
            return model
        key = (id(model), tuple(p.requires_grad for p in model.parameters()))
        if self._ddp is None or self._ddp[0] != key:
            from torch.nn.parallel import DistributedDataParallel

            self._ddp = None  # the old wrapper's gradient hooks go with it
            dev = self.device.device
            # every trainable parameter gets a gradient in every step with the kit's strategies
            # (tests/test_distributed.py runs each under two processes), so DDP need not search
            # the graph for unused ones
            self._ddp = (key, DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None))
        return self._ddp[1]

    @torch.no_grad()
    def evaluate(self, loader: Iterable, desc: str = "eval",
                 model: nn.Module | None = None) -> EvalResult:
        """Mean loss (the run's criterion, weighted mean for weighted_ce), accuracy and softmax
        probabilities, model in eval mode."""
        model = self.model if model is None else model
        was_training = self.model.training
        self.model.eval()
        model.eval()
        dev = self.device.device
        weight = getattr(self.criterion, "weight", None)
        probs, labels, loss_sum, denom = [], [], 0.0, 0.0
        for x, y in iterate_with_bar(loader, _len(loader), desc, self.progress, leave=False,
                                     dynamic_ncols=True):
            x, y = self._to_device(x, y)
            with torch.autocast(dev.type, dtype=self.device.amp_dtype or torch.float32,
                                enabled=self.device.amp_dtype is not None):
                logits = model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, weight=weight,
                                                    reduction="sum").item()
            if weight is not None:
                denom += weight[y].sum().item()
            probs.append(logits.softmax(1).cpu().numpy())
            labels.append(y.cpu().numpy())
        self.model.train(was_training)
        if not labels:
            raise ValueError(f"{desc}: the loader yielded no batches")
        p, lab = np.concatenate(probs), np.concatenate(labels)
        return EvalResult(loss_sum / (denom if weight is not None else len(lab)),
                          float((p.argmax(1) == lab).mean()), p, lab)

    def trainable_params(self) -> int:
        """Parameters the optimizer holds that require gradients in this epoch."""
        if self.optimizer is None:
            return 0
        return count_params(self.optimizer.param_groups, trainable_only=True)

    def lr_groups(self) -> str:
        """The LR of every parameter group, for the history: 'head=0.001;all=0.0001'."""
        return ";".join(f"{g.get('name', i)}={g['lr']:.6g}"
                        for i, g in enumerate(self.optimizer.param_groups))

    def describe_compute(self) -> str:
        """What the run uses, for the log and the run's metrics: precision and memory layout."""
        layout = "on" if self.channels_last else "off"
        return f"{self.device.device.type}, {self.device.precision}, channels_last {layout}"

    @staticmethod
    def history_frame(history: list[dict]) -> pd.DataFrame:
        """Rows as a frame: the base columns, then each schedule's and strategy's own."""
        frame = pd.DataFrame(history)
        middle = [c for c in frame.columns if c not in BASE_COLUMNS + TAIL_COLUMNS]
        cols = BASE_COLUMNS + middle + TAIL_COLUMNS
        return frame.reindex(columns=cols) if len(frame) else pd.DataFrame(columns=cols)

    # ------------------------------------------------------------------ helpers
    def _set_scale(self, base_lrs: list[float], scale: float) -> None:
        """Every group's LR = its base x ``scale``, remembered for a rebuilt optimizer."""
        self._lr_mult = scale
        for g, base in zip(self.optimizer.param_groups, base_lrs):
            g["lr"] = base * scale

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.device.device
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _seed_epoch(self, loader: DataLoader, seed: int, epoch: int) -> None:
        """The epoch's random numbers from (seed, epoch): the shuffle the same on every rank (each
        takes its shard of one order), augmentation draws offset by the rank."""
        epoch_seed = seed * 10_007 + epoch
        seed_everything(epoch_seed + RANK_SEED_STRIDE * self.dist.rank)
        gen = getattr(loader, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(epoch_seed)

    def _best_path(self, stage: Stage) -> Path:
        final = stage.name == self.stages[-1].name
        return self.ckpt_dir / (rf.BEST if final else rf.best_stage_name(stage.name))

    def _save_best(self, stage: Stage, epoch: int) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.ckpt_dir is None:
            self._best_in_memory[stage.name] = state
            return
        if not self.dist.is_main:  # one writer; the others read it after _save_last's barrier
            return
        save_checkpoint(self._best_path(stage), {"model": state, "epoch": epoch,
                                                 "stage": stage.name})

    def _stage_best(self, stage: Stage) -> dict | None:
        state = self._best_in_memory.get(stage.name)
        if state is None and self.ckpt_dir is not None and self._best_path(stage).is_file():
            state = load_checkpoint(self._best_path(stage))["model"]
        return state

    def _hand_over(self, previous: Stage, stage: Stage) -> None:
        """The stage starts from the previous stage's best weights (or its last ones)."""
        if stage.init_from == "previous_best":
            state = self._stage_best(previous)
            if state is not None:
                self.model.load_state_dict(state)

    def restore_best(self) -> bool:
        """Load the last stage's theta* into the model; False when it never saved one."""
        state = self._stage_best(self.stages[-1])
        if state is None:
            return False
        self.model.load_state_dict(state)
        return True

    def _save_last(self, stage_index: int, stage_epoch: int, stage_done: bool,
                   history: list[dict], stages: list[dict], schedule: Schedule,
                   selector: Selector) -> None:
        if self.ckpt_dir is None:
            return
        with self.dist.main_first():
            if self.dist.is_main:
                self._write_last(stage_index, stage_epoch, stage_done, history, stages, schedule,
                                 selector)

    def _write_last(self, stage_index: int, stage_epoch: int, stage_done: bool,
                    history: list[dict], stages: list[dict], schedule: Schedule,
                    selector: Selector) -> None:
        save_checkpoint(self.ckpt_dir / rf.LAST, {
            "stage_index": stage_index,
            "stage": self.stages[stage_index].name,
            "stage_epoch": stage_epoch,
            "stage_done": stage_done,
            "epoch": len(history),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "schedule": schedule.state_dict(),
            "selector": selector.state_dict(),
            "strategy": self.strategy.state_dict(),
            "lr_mult": self._lr_mult,
            "history": history,
            "stages": stages,
        })
        rf.write_history(self.ckpt_dir, self.history_frame(history))

    def _load_last(self) -> dict | None:
        """The newest intact resume checkpoint (training.checkpoints.load_resume_state), its
        model, scaler and strategy state loaded."""
        if self.ckpt_dir is None:
            return None
        state = load_resume_state(self.ckpt_dir, self.stages)
        if state is None:
            return None
        self.model.load_state_dict(state["model"])
        self.scaler.load_state_dict(state["scaler"])
        self.strategy.load_state_dict(state["strategy"])
        return state

    def _load_stage_state(self, state: dict, schedule: Schedule, selector: Selector) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self._lr_mult = float(state.get("lr_mult", 1.0))
        schedule.load_state_dict(state["schedule"])
        selector.load_state_dict(state["selector"])


def _macro_acc_auroc(val: EvalResult) -> tuple[float, float | None]:
    from sklearn.metrics import balanced_accuracy_score

    macro = float(balanced_accuracy_score(val.labels, val.probs.argmax(1)))
    return macro, auroc(val.labels, val.probs, val.probs.shape[1])


def is_convolutional(model: nn.Module) -> bool:
    """channels_last pays off for convolution stacks (cuDNN's NHWC kernels under AMP); a ViT has
    one convolution, its patch embedding, so it stays in the default layout."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
