"""Optimizers as configuration: a name, the LR of each parameter group, weight decay, momentum.

Built by timm's optimizer factory (``timm.optim.create_optimizer_v2``) from the strategy's
parameter groups, so every group keeps its own LR and name. ``sgd`` is plain momentum SGD
(timm's ``momentum``; timm's own ``sgd`` would be Nesterov).
"""
from __future__ import annotations

import torch

#: kit name -> timm optimizer name
OPTIMIZERS = {"adamax": "adamax", "adam": "adam", "adamw": "adamw", "sgd": "momentum"}


def build_optimizer(name: str, param_groups: list[dict], lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``param_groups``: dicts with ``params``, ``lr`` and ``name`` (from the strategy)."""
    from timm.optim import create_optimizer_v2

    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if not any(g["params"] for g in param_groups):
        raise ValueError("the strategy gave the optimizer no parameters to train")
    kwargs = {"momentum": momentum} if name == "sgd" else {}
    return create_optimizer_v2(param_groups, opt=OPTIMIZERS[name], lr=lr,
                               weight_decay=weight_decay, **kwargs)


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
