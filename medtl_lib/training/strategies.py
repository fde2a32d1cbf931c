"""Fine-tuning strategies: which parameters train, at which learning rate, in which mode.

The trainer asks the strategy at the start of every epoch and never decides this itself, so
later strategies (LP-FT, gradual unfreezing, L2-SP, Auto-RGN, staged) are new classes here and
nothing else changes.
"""
from __future__ import annotations

import torch
from torch import nn


class FineTuneStrategy:
    """Base: every parameter trains at the base learning rate (seed 000: 'full')."""

    name = "full"
    #: True when the backbone is frozen and in eval mode in every epoch: its output for a fixed
    #: input never changes, which is what allows features to be computed once (training.features).
    frozen_backbone = False

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        """Optimizer groups, built once; every parameter appears so a later epoch can unfreeze."""
        return [{"params": [p for p in model.parameters()], "lr": lr, "name": "all"}]

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        """Set requires_grad and train/eval modes for this epoch (0-based)."""
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """Extra loss term (e.g. L2-SP); None when there is none."""
        return None

    def describe(self, model: nn.Module) -> str:
        """Counts what the optimizer gets, not requires_grad, which is only set per epoch."""
        n_train = sum(p.numel() for g in self.param_groups(model, 1.0) for p in g["params"])
        n_all = sum(p.numel() for p in model.parameters())
        return f"{self.name}: {n_train:,} of {n_all:,} parameters train"


class FullFineTune(FineTuneStrategy):
    name = "full"


class LinearProbe(FineTuneStrategy):
    """Only the head trains; the backbone stays frozen and in eval mode (BN statistics fixed)."""

    name = "linear_probe"
    frozen_backbone = True

    def param_groups(self, model: nn.Module, lr: float) -> list[dict]:
        return [{"params": list(_head(model).parameters()), "lr": lr, "name": "head"}]

    def on_epoch_start(self, model: nn.Module, epoch: int) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        head = _head(model)
        head.train()
        for p in head.parameters():
            p.requires_grad_(True)


def _head(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module):
        raise TypeError("linear_probe needs a model with a .head module (medtl Classifier)")
    return head


def get_strategy(name: str) -> FineTuneStrategy:
    strategies = {cls.name: cls for cls in (FullFineTune, LinearProbe)}
    if name not in strategies:
        raise ValueError(f"unknown strategy '{name}'; available: {', '.join(strategies)}")
    return strategies[name]()
