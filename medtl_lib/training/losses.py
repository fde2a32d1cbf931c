"""Training losses: ``ce`` (seed 000) and ``weighted_ce`` (seed 003: weights 1 / class count,
divided by their minimum, so the most frequent class weighs 1)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

LOSSES = ("ce", "weighted_ce")


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64)
    if (counts_t <= 0).any():
        empty = [i for i, c in enumerate(counts) if c <= 0]
        raise ValueError(f"weighted_ce: class(es) {empty} have no training images; a class "
                         "weight 1/0 is undefined. Add images or use loss='ce'.")
    w = 1.0 / counts_t
    return (w / w.min()).float()


def build_loss(name: str, train_counts: Sequence[int] | None = None) -> nn.CrossEntropyLoss:
    """The criterion; its ``weight`` (None for ``ce``) is also used for the validation loss."""
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "weighted_ce":
        if train_counts is None:
            raise ValueError("weighted_ce needs the training split's class counts")
        return nn.CrossEntropyLoss(weight=class_weights(train_counts))
    raise ValueError(f"loss must be one of {list(LOSSES)}, got {name!r}")
