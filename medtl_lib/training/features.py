"""Frozen-backbone features computed once, and the head trained on them.

The rule (:func:`feature_cache_decision`): features may be cached only when, in every epoch,

1. the backbone is frozen *and* in eval mode in every epoch of the stage (``Stage.frozen_backbone``:
   no weight update, no BatchNorm statistics update, no dropout), and
2. each image reaches the backbone as the same tensor (``augment=False``: the train split gets
   the eval transform).

Then the backbone's output per image is a constant, and training the head on stored features is
the same computation as running the backbone every epoch, only done once. With augmentation a new
crop and flip is drawn every epoch, so the features change every epoch; caching them would train
the head on one frozen view per image, a different experiment. The kit refuses to do that silently
and says why in the run log.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..data.batches import drop_single_last
from ..device import DeviceInfo
from ..utils import iterate_with_bar
from .strategies import Stage


def feature_cache_decision(stage: Stage, augment: bool,
                           requested: bool = True) -> tuple[bool, str]:
    """(use cached features in this stage?, the reason, for the log)."""
    if not requested:
        return False, "features not cached: cache_features=False"
    if not stage.frozen_backbone:
        return False, f"features not cached: stage '{stage.name}' trains the backbone"
    if augment:
        return False, ("features not cached: augmentation draws a new crop and flip every epoch, "
                       "so the frozen backbone's features change too; set augment=False to "
                       "compute them once and train the head on them")
    return True, ("features cached: the backbone is frozen in eval mode and inputs are fixed "
                   "(augment=False), so its features are computed once")


class FeatureClassifier(nn.Module):
    """The same backbone and head modules as a :class:`Classifier`, fed features instead of images.

    It shares (does not copy) both modules, so training it trains the real head, and its
    state_dict has the Classifier's keys: checkpoints of either are interchangeable.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


@torch.no_grad()
def extract_features(backbone: nn.Module, loader: Iterable, device: DeviceInfo,
                     desc: str = "features", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone outputs (float32, on the CPU) and labels for every batch of ``loader``, eval mode."""
    was_training = backbone.training
    backbone.eval()
    backbone.to(device.device)
    dev = device.device
    feats, labels = [], []
    try:
        total = len(loader) if hasattr(loader, "__len__") else None
        for x, y in iterate_with_bar(loader, total, desc, progress, leave=False,
                                     dynamic_ncols=True):
            x = x.to(dev, non_blocking=True)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=device.amp_dtype or torch.float32,
                                enabled=device.amp_dtype is not None):
                f = backbone(x)
            feats.append(f.float().cpu())
            labels.append(torch.as_tensor(y).cpu())
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError(f"{desc}: the loader yielded no batches")
    return torch.cat(feats), torch.cat(labels).long()


def feature_loader(features: torch.Tensor, labels: torch.Tensor, batch_size: int, train: bool,
                   seed: int = 0) -> DataLoader:
    """Batches of stored features; shuffling uses ``loader.generator`` (reseeded per epoch by the
    trainer) and, as for images, a last training batch of one is dropped."""
    ds = TensorDataset(features, labels)
    gen = torch.Generator().manual_seed(seed) if train else None
    drop_last = drop_single_last(len(ds), batch_size, train)
    return DataLoader(ds, batch_size=batch_size, shuffle=train, drop_last=drop_last, generator=gen)
