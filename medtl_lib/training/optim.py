"""Optimizers as configuration: a name, the LR of each parameter group, weight decay, momentum.

Built by timm's optimizer factory (``timm.optim.create_optimizer_v2``) from the strategy's
parameter groups, so every group keeps its own LR and name. ``sgd`` is plain momentum SGD
(timm's ``momentum``; timm's own ``sgd`` would be Nesterov). An optimizer is a class with
``@OPTIMIZERS.register``: its kit ``name``, the ``timm_name`` it is built as, and ``kwargs``.
"""
from __future__ import annotations

import torch

from ..registry import Arg, Registry

OPTIMIZERS: Registry["Optimizer"] = Registry("optimizer", "built by timm's create_optimizer_v2 "
                                             "(--optimizer)", lazy=(__package__, "optim_"))


class Optimizer:
    """Base class: ``timm_name`` for timm's factory, ``kwargs(momentum)`` its extra settings."""

    name = "optimizer"
    description = ""
    args: tuple[Arg, ...] = ()
    timm_name = ""

    @staticmethod
    def kwargs(momentum: float) -> dict:
        return {}


@OPTIMIZERS.register
class Adamax(Optimizer):
    name, timm_name, description = "adamax", "adamax", "Adamax (seed 000)"


@OPTIMIZERS.register
class Adam(Optimizer):
    name, timm_name, description = "adam", "adam", "Adam"


@OPTIMIZERS.register
class AdamW(Optimizer):
    name, timm_name, description = "adamw", "adamw", "AdamW (decoupled weight decay)"


@OPTIMIZERS.register
class SGD(Optimizer):
    name, timm_name, description = "sgd", "momentum", "momentum SGD (--momentum; not Nesterov)"

    @staticmethod
    def kwargs(momentum: float) -> dict:
        return {"momentum": momentum}


def build_optimizer(name: str, param_groups: list[dict], lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``param_groups``: dicts with ``params``, ``lr`` and ``name`` (from the strategy)."""
    from timm.optim import create_optimizer_v2

    OPTIMIZERS.check(name, "optimizer")
    if not any(g["params"] for g in param_groups):
        raise ValueError("the strategy gave the optimizer no parameters to train")
    kind = OPTIMIZERS.get(name)
    return create_optimizer_v2(param_groups, opt=kind.timm_name, lr=lr,
                               weight_decay=weight_decay, **kind.kwargs(momentum))


def rebuild_optimizer(optimizer: torch.optim.Optimizer, param_groups: list[dict],
                      keep_state: bool = False) -> torch.optim.Optimizer:
    """An optimizer of the same kind and settings over new groups (Auto-RGN's per-epoch LRs,
    a reset on unfreezing); ``keep_state`` carries each parameter's moments over."""
    new = type(optimizer)(param_groups, **optimizer.defaults)
    if keep_state:
        for g in new.param_groups:
            for p in g["params"]:
                if p in optimizer.state:
                    new.state[p] = optimizer.state[p]
    return new
