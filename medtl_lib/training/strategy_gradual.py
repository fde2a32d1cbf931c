"""Gradual unfreezing (seed 001's G-LF and G-FL; spec Sections 1.3.3-1.3.4).

The backbone's blocks (:func:`medtl_lib.models.groups.parameter_groups`: stem, stage1..K,
pre_logits) unfreeze one more every ``unfreeze_every`` epochs while the head trains throughout.
G-LF starts at the top, as ULMFiT does: the last blocks hold the most task-specific features and
move first, the generic early filters last. G-FL is the same schedule bottom-up, the control
condition. A frozen block is frozen entirely: no gradient and its modules in eval mode, so its
BatchNorm statistics do not drift either.

When to open (``unfreeze_every=0``, the default), for K blocks and E epochs: one block every
``E // (K + 1)`` epochs when E > K, so the head trains alone first and every block trains for a
while at the end; with fewer epochs than that (a CPU profile: 6 epochs, Lite0's 8 blocks) blocks
open several at a time, ``ceil(e K / (E - 1))`` after epoch e, so every block trains in the last
epoch. In both cases :meth:`complete_from` names the first epoch in which all blocks train and the
trainer holds early stopping until it has run: otherwise a patience of 3 ends a 30-epoch ResNet-50
run (a block every 5 epochs) while only the head or a few blocks train, and G-LF / G-FL collapse
towards the linear probe. An explicit ``unfreeze_every`` too large to open every block within the
stage is allowed (the trainer warns that some blocks never train).

The optimizer holds every parameter from the start, one group per block (so discriminative LRs
are per block); a frozen parameter has no gradient, and PyTorch's optimizers skip it, so its
moments start when it unfreezes.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..models.groups import parameter_groups
from ..registry import Arg
from .optim import rebuild_optimizer
from .strategies import STRATEGIES, Stage, Strategy, set_trainable


class GradualUnfreeze(Strategy):
    """Shared by both directions; ``top_first`` picks the order."""

    top_first = True
    args = (Arg("unfreeze_every", "int", 0, "epochs between unfreezing steps; 0: epochs // "
                "(blocks + 1), or several blocks per epoch when epochs <= blocks, so that every "
                "block trains before the run ends", minimum=0),
            Arg("discriminative_lr", "float", 0.0, "0: one LR; f > 1: block j of K trains at "
                "LR / f^(K-1-j) (ULMFiT uses 2.6), the head at LR", minimum=0.0),
            Arg("reset_optimizer_on_unfreeze", "bool", False, "a new optimizer (moments reset) "
                "at every unfreezing step, as a public reimplementation of seed 001 does"))

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.epochs = 0

    def stages(self, epochs: int) -> list[Stage]:
        self.epochs = epochs
        return [Stage("train", epochs)]

    # ------------------------------------------------------------------ schedule
    def blocks(self, model: nn.Module) -> list[tuple[str, list[str]]]:
        """Backbone blocks bottom -> top (the head excluded)."""
        return [(g, names) for g, names in parameter_groups(model) if g != "head"]

    def n_open(self, n_blocks: int, epoch: int) -> int:
        """How many backbone blocks train in ``epoch`` (0-based; see the module docstring)."""
        every = self.args["unfreeze_every"]
        if not every and self.epochs <= n_blocks:  # too few epochs for one block at a time
            if self.epochs == 1:
                return n_blocks
            return min(n_blocks, math.ceil(epoch * n_blocks / (self.epochs - 1)))
        every = every or self.epochs // (n_blocks + 1)
        return min(epoch // every, n_blocks)

    def unfrozen(self, model: nn.Module, epoch: int) -> list[str]:
        """Names of the backbone blocks that train in ``epoch`` (0-based), in unfreezing order."""
        blocks = [g for g, _ in self.blocks(model)]
        order = blocks[::-1] if self.top_first else blocks
        return order[:self.n_open(len(blocks), epoch)]

    def complete_from(self, model: nn.Module, stage: Stage) -> int:
        n = len(self.blocks(model))
        e = 0
        while self.n_open(n, e) < n:  # n_open reaches n: at e = n x every at the latest
            e += 1
        return e

    # ------------------------------------------------------------------ strategy hooks
    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        params = dict(model.named_parameters())
        groups = parameter_groups(model)
        k = len(groups) - 1
        factor = self.args["discriminative_lr"]
        out = []
        for j, (g, names) in enumerate(groups):
            scale = 1.0 if g == "head" or factor <= 1.0 else factor ** -(k - 1 - j)
            out.append({"params": [params[n] for n in names], "lr": lr * scale, "name": g})
        return out

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        open_blocks = set(self.unfrozen(model, epoch)) | {"head"}
        set_trainable(model, {n for g, names in parameter_groups(model) if g in open_blocks
                              for n in names})

    def optimizer_for_epoch(self, model: nn.Module, stage: Stage, epoch: int,
                            optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer | None:
        if not self.args["reset_optimizer_on_unfreeze"] or epoch == 0:
            return None
        if self.unfrozen(model, epoch) == self.unfrozen(model, epoch - 1):
            return None
        return rebuild_optimizer(optimizer, self.param_groups(model, self.context.lr, stage))

    def describe_epoch(self, model: nn.Module) -> dict[str, Any]:
        params = dict(model.named_parameters())
        return {"trainable_blocks": "+".join(
            g for g, names in parameter_groups(model) if all(params[n].requires_grad
                                                             for n in names))}


@STRATEGIES.register
class GradualTopFirst(GradualUnfreeze):
    name = "gradual_lf"
    description = "gradual unfreezing, last block first (G-LF, ULMFiT): one more every few epochs"
    top_first = True


@STRATEGIES.register
class GradualBottomFirst(GradualUnfreeze):
    name = "gradual_fl"
    description = "gradual unfreezing, first block first (G-FL): one more every few epochs"
    top_first = False
