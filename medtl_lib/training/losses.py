"""Training losses: ``ce`` (seed 000) and ``weighted_ce`` (seed 003: weights 1 / class count,
divided by their minimum, so the most frequent class weighs 1).

A loss is a class with ``@LOSSES.register``: ``name``, ``description``, ``args`` and
``build(train_counts)`` -> the criterion (whose ``weight`` is also used for the validation loss).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..registry import Arg, Registry

LOSSES: Registry["Loss"] = Registry("loss", "training criterion (--loss)",
                                     lazy=(__package__, "loss_"))


class Loss:
    """Base class of a loss: ``build`` returns the criterion from the training class counts."""

    name = "loss"
    description = ""
    args: tuple[Arg, ...] = ()

    def __init__(self, **args) -> None:
        self.args = args

    def build(self, train_counts: Sequence[int] | None) -> nn.Module:
        raise NotImplementedError


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64)
    if (counts_t <= 0).any():
        empty = [i for i, c in enumerate(counts) if c <= 0]
        raise ValueError(f"weighted_ce: class(es) {empty} have no training images; a class "
                         "weight 1/0 is undefined. Add images or use loss='ce'.")
    w = 1.0 / counts_t
    return (w / w.min()).float()


@LOSSES.register
class CrossEntropy(Loss):
    name = "ce"
    description = "cross-entropy (seed 000)"

    def build(self, train_counts: Sequence[int] | None) -> nn.Module:
        return nn.CrossEntropyLoss()


@LOSSES.register
class WeightedCrossEntropy(Loss):
    name = "weighted_ce"
    description = "cross-entropy weighted by 1 / class count over its minimum (seed 003)"

    def build(self, train_counts: Sequence[int] | None) -> nn.Module:
        if train_counts is None:
            raise ValueError("weighted_ce needs the training split's class counts")
        return nn.CrossEntropyLoss(weight=class_weights(train_counts))


def build_loss(name: str, train_counts: Sequence[int] | None = None,
               args: dict | None = None) -> nn.Module:
    """The criterion; its ``weight`` (None for ``ce``) is also used for the validation loss."""
    LOSSES.check(name, "loss")
    return LOSSES.build(name, args).build(train_counts)
