"""Fine-tuning strategies: which parameters train, in which stages, at which LR, in which mode.

A strategy is one class with ``@STRATEGIES.register``: its name, a one-line description and its
arguments (:class:`~medtl_lib.registry.Arg`) are all the rest of the kit needs. Config validation,
``--strategy`` and ``--strategy-arg``, ``medtl strategies`` and notebook 03's table come from the
registry, so a new strategy is a new module ``training/strategy_<name>.py`` holding its class
(imported, and so registered, with this module) and nothing else changes.

A strategy is one or more :class:`Stage` s. The trainer runs them in order; each stage gets a new
optimizer (the run's, or the stage's own) over ``param_groups(model, lr, stage)``, a fresh schedule
and selector, and starts from the previous stage's best or last weights. Hooks, all optional:

* ``setup(model)``: once, on the pretrained model, before any resume (e.g. keep theta^0);
* ``on_epoch_start(model, stage, epoch)``: requires_grad and train/eval modes for this epoch;
* ``optimizer_for_epoch(model, stage, epoch, optimizer)``: return a new optimizer to replace it;
* ``fit_stage(model, stage, train, val)``: solves a ``Stage(closed_form=True)`` instead of the
  epoch's optimizer steps (LP-FT's logistic-regression probe);
* ``after_backward(model)``: gradients are there (unscaled under fp16), the step is not taken yet;
  set ``needs_gradients = True`` to get it;
* ``penalty(model)``: an extra loss term;
* ``state_dict()/load_state_dict()``: strategy state saved with every epoch checkpoint;
* ``describe_epoch(model)``: extra history columns;
* ``complete_from(model, stage)``: the first epoch of the stage in which every parameter it will
  ever train does train. A strategy whose trainable set grows inside a stage (gradual unfreezing)
  returns a later epoch, and the trainer holds the stage's stopping rules (early stopping, the
  schedule's own) until that epoch has run, so such a run cannot end as a probe.

During a stage, ``strategy.context`` (:class:`StageContext`) gives the hooks what the trainer
uses: the stage, its base LR, its training batches, the device and the criterion (Auto-RGN draws
its probe batches from there).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..registry import Arg, Registry

STRATEGIES: Registry["Strategy"] = Registry("strategy", "fine-tuning strategy (--strategy)",
                                              flag="--strategy-arg",
                                              lazy=(__package__, "strategy_"))
INIT_FROM = ("previous_best", "previous_last")


@dataclass(frozen=True)
class Stage:
    """One phase of a strategy with its own optimizer, schedule and selection."""

    name: str
    epochs: int
    lr_factor: float = 1.0  # the stage's LR = run LR x this
    optimizer: str | None = None  # None: the run's optimizer
    schedule: str | None = None  # None: the run's schedule (and schedule_args)
    schedule_args: dict = field(default_factory=dict)
    init_from: str = "previous_best"  # where its weights start (ignored for the first stage)
    #: the backbone is frozen and in eval mode in every epoch of the stage, so its features for a
    #: fixed input never change (this is what allows them to be computed once: training.features)
    frozen_backbone: bool = False
    #: the stage is solved in one go by ``Strategy.fit_stage`` (e.g. logistic regression on the
    #: frozen features), not by optimizer steps; it then has exactly one epoch
    closed_form: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"stage '{self.name}' needs at least 1 epoch, got {self.epochs}")
        if self.init_from not in INIT_FROM:
            raise ValueError(f"stage '{self.name}': init_from must be one of {INIT_FROM}")
        if self.closed_form and self.epochs != 1:
            raise ValueError(f"stage '{self.name}' is solved in closed form: it has one epoch")


@dataclass
class StageContext:
    """What the hooks of a strategy may use during a stage (set by the trainer)."""

    stage: Stage
    lr: float  # the stage's base LR (run LR x stage.lr_factor)
    train_loader: Any
    device: Any  # medtl_lib.device.DeviceInfo
    criterion: nn.Module
    #: torchrun's world (medtl_lib.distributed.Dist); a hook that measures something on the
    #: training batches sums it over the ranks, whose shards differ, so all decide the same
    dist: Any = None


class Strategy:
    """Base: one stage in which every parameter trains at the base LR (seed 000's 'full')."""

    name = "full"
    description = "every parameter trains at the base LR in every epoch (seed 000)"
    args: tuple[Arg, ...] = ()
    needs_gradients = False  # True: the trainer calls after_backward every step

    def __init__(self, **args: Any) -> None:
        self.args = args
        self.context: StageContext | None = None

    # --------------------------------------------------------------- structure
    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("train", epochs)]

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        """Optimizer groups for a stage; every parameter that may train in it must appear."""
        return [{"params": list(model.parameters()), "lr": lr, "name": "all"}]

    # --------------------------------------------------------------- hooks
    def surgery(self) -> list[dict]:
        """Structural edits this strategy makes to the model before training (models/surgery.py
        ops, recorded in the run's model spec); most strategies change none."""
        return []

    def setup(self, model: nn.Module) -> None:
        """Once, on the freshly built (pretrained) model, before a resume loads any state."""

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        """Set requires_grad and train/eval modes (``epoch`` is 0-based within the stage)."""
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)

    def optimizer_for_epoch(self, model: nn.Module, stage: Stage, epoch: int,
                            optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
        return None

    def after_backward(self, model: nn.Module) -> None:
        pass

    def fit_stage(self, model: nn.Module, stage: Stage, train_loader: Any,
                  val_loader: Any) -> tuple[float, float]:
        """Solve a ``closed_form`` stage; returns (train loss, train accuracy)."""
        raise NotImplementedError(f"strategy '{self.name}' has no closed-form stage")

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def describe_epoch(self, model: nn.Module) -> dict[str, Any]:
        return {}

    def complete_from(self, model: nn.Module, stage: Stage) -> int:
        """0-based epoch of ``stage`` from which its trainable set no longer grows; the trainer
        lets no stopping rule end the stage before that epoch has run."""
        return 0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # --------------------------------------------------------------- reporting
    def describe(self, model: nn.Module, epochs: int = 1) -> str:
        """What trains in the first stage: what the optimizer gets, not requires_grad."""
        stages = self.stages(epochs)
        n_train = count_params(self.param_groups(model, 1.0, stages[0]))
        n_all = sum(p.numel() for p in model.parameters())
        plan = " -> ".join(f"{s.name} ({s.epochs} ep)" for s in stages)
        return (f"{self.name}: {n_train:,} of {n_all:,} parameters train"
                + (f"; stages {plan}" if len(stages) > 1 else ""))


def count_params(groups: list[dict], trainable_only: bool = False) -> int:
    """Parameters in optimizer-style groups, each counted once (``trainable_only``: those that
    require gradients now)."""
    seen: set[int] = set()
    total = 0
    for g in groups:
        for p in g["params"]:
            if id(p) not in seen and (p.requires_grad or not trainable_only):
                seen.add(id(p))
                total += p.numel()
    return total


def head_of(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise TypeError("this strategy needs a model with a .head module (medtl Classifier)")
    return head


def set_trainable(model: nn.Module, trainable: set[str]) -> None:
    """Exactly the named parameters require gradients. A module is in train mode (BatchNorm
    statistics move, dropout is on) only when every parameter below it trains, so a frozen
    block is frozen entirely, its BN statistics too."""
    model.eval()
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)

    def visit(prefix: str, module: nn.Module) -> None:
        names = [prefix + n for n, _ in module.named_parameters()]
        if names and all(n in trainable for n in names):
            module.train()
            return
        for child, sub in module.named_children():
            visit(f"{prefix}{child}.", sub)

    visit("", model)


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """Every BatchNorm layer of the model (any dimension, SyncBatchNorm too)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_bn_statistics(model: nn.Module) -> None:
    """Every BatchNorm normalises with its running statistics and stops updating them, while its
    weight and bias still train: a head fitted on the frozen backbone keeps seeing the features it
    was fitted on when the backbone is unfrozen (``scripts/bench_sft_bn.py`` measures the shift)."""
    for m in batch_norms(model):
        m.eval()


#: how stage 2 of lp_ft / sft treats BatchNorm: 'batch' as full fine-tuning (the authors' code),
#: 'frozen' keeps the running statistics the probe was fitted with
FT_BN = Arg("ft_bn", "str", "batch", "BatchNorm in the fine-tuning stage: batch (statistics of "
            "each batch, running statistics updated) or frozen (the pretrained running statistics "
            "the probe was fitted with; weights and biases still train)", choices=("batch", "frozen"))


def group_names(model: nn.Module, groups: list[str]) -> set[str]:
    """Parameter names of the named blocks of :func:`medtl_lib.models.groups.parameter_groups`."""
    from ..models.groups import parameter_groups

    return {n for g, names in parameter_groups(model) if g in groups for n in names}


def head_names(model: nn.Module) -> set[str]:
    return {f"head.{n}" for n, _ in head_of(model).named_parameters()}


def freeze_all_but_head(model: nn.Module) -> None:
    """Backbone frozen and in eval mode (BatchNorm statistics fixed, no dropout); head trains."""
    set_trainable(model, head_names(model))


@STRATEGIES.register
class FullFineTune(Strategy):
    name = "full"


@STRATEGIES.register
class LinearProbe(Strategy):
    """Only the head trains; the backbone stays frozen and in eval mode (BN statistics fixed)."""

    name = "linear_probe"
    description = "only the new head trains (lp_head=classifier: the pre-logits layers too)"
    args = (Arg("lp_head", "str", "last", "last: the new head only; classifier: also the "
                "pre-logits block (VGG's two 4096-d FC layers, DenseNet's norm5)",
                choices=("last", "classifier")),)

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("probe", epochs, frozen_backbone=self.args["lp_head"] == "last")]

    def _trainable(self, model: nn.Module) -> set[str]:
        if self.args["lp_head"] == "last":
            return head_names(model)
        return group_names(model, ["head", "pre_logits"])

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        names = self._trainable(model)
        params = [p for n, p in model.named_parameters() if n in names]
        name = "head" if self.args["lp_head"] == "last" else "classifier"
        return [{"params": params, "lr": lr, "name": name}]

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        set_trainable(model, self._trainable(model))


@STRATEGIES.register
class LinearProbeThenFineTune(Strategy):
    """LP-FT (Kumar et al., 2022): a linear probe first, then every parameter from the probed head
    with a new optimizer at a lower LR. Because the probe stage keeps the backbone frozen in eval
    mode, stage 2 starts from the pretrained backbone bit for bit and a head that already fits it,
    so the first fine-tuning steps distort the pretrained features less than a random head would."""

    name = "lp_ft"
    description = "linear probe, then full fine-tuning from the probed head at ft_lr_factor x LR"
    args = (Arg("lp_epochs", "int", 0, "probe epochs; 0: a third of the run's epochs (at least 1)",
                minimum=0),
            Arg("ft_epochs", "int", 0, "fine-tuning epochs; 0: the run's epochs minus lp_epochs",
                minimum=0),
            Arg("ft_lr_factor", "float", 0.1, "fine-tuning LR as a fraction of the run's LR",
                minimum=1e-9),
            Arg("ft_init", "str", "previous_best", "stage 2 starts from the probe's best or last "
                "epoch", choices=INIT_FROM),
            Arg("lp_solver", "str", "sgd", "sgd: the probe trains with the run's optimizer; "
                "logreg: L2 logistic regression on the frozen features (one epoch, C chosen on "
                "validation accuracy, as Kumar et al.'s code)", choices=("sgd", "logreg")),
            FT_BN)

    def stages(self, epochs: int) -> list[Stage]:
        logreg = self.args["lp_solver"] == "logreg"
        lp = 1 if logreg else self.args["lp_epochs"] or max(1, epochs // 3)
        ft = self.args["ft_epochs"] or epochs - lp
        if ft < 1:
            raise ValueError(f"lp_ft: {epochs} epoch(s) leave none for fine-tuning after "
                             f"{lp} probe epoch(s); raise epochs or set ft_epochs")
        return [Stage("lp", lp, frozen_backbone=True, closed_form=logreg),
                Stage("ft", ft, lr_factor=self.args["ft_lr_factor"],
                      init_from=self.args["ft_init"])]

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        if stage.name == "lp":
            return [{"params": list(head_of(model).parameters()), "lr": lr, "name": "head"}]
        return [{"params": list(model.parameters()), "lr": lr, "name": "all"}]

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        if stage.name == "lp":
            freeze_all_but_head(model)
        else:
            super().on_epoch_start(model, stage, epoch)
            if self.args.get("ft_bn") == "frozen":
                freeze_bn_statistics(model)

    def fit_stage(self, model: nn.Module, stage: Stage, train_loader: Any,
                  val_loader: Any) -> tuple[float, float]:
        from .logreg import fit_logreg_head

        return fit_logreg_head(model, head_of(model), train_loader, val_loader,
                               self.context.device.device if self.context else None,
                               self.context.criterion if self.context else None)


def get_strategy(name: str, args: dict | None = None) -> Strategy:
    """A strategy by name with validated arguments (strings from the CLI are typed here)."""
    return STRATEGIES.build(name, args)


def strategies_table():
    """The registered strategies as a table (``medtl strategies``, notebook 03)."""
    import pandas as pd

    rows = []
    for r in STRATEGIES.table():
        args = "; ".join(f"{a['name']}: {a['type']} = {a['default']!r}" for a in r["arguments"])
        rows.append({"name": r["name"], "description": r["description"],
                     "arguments": args or "-"})
    return pd.DataFrame(rows)


STRATEGIES.load_all()  # training/strategy_<name>.py: one module may register several (l1_sp, l2_sp)
