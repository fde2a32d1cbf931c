"""Grad-CAM (Selvaraju et al., 2017) on the last kept block of any model the kit builds, truncated
or not, as seed 003 draws it (its Table 1: full ResNet-50 at ``layer4[-1]``, TTL at ``layer3[-1]``).

Uses the ``grad-cam`` package (jacobgil/pytorch-grad-cam, the one the authors used): it handles the
hooks, the gradient pooling and the upsampling; this module only finds the layer and keeps the
model's mode.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def last_block(model: nn.Module) -> nn.Module:
    """The last module of the backbone that still computes something: the final block of the
    last stage a truncation kept (ResNet ``layerK[-1]``, EfficientNet ``blocks[k][-1]`` or its
    ``conv_head``, DenseNet the last kept ``features`` module)."""
    b = model.backbone
    kind = type(b).__name__
    if kind == "ResNet":
        for name in ("layer4", "layer3", "layer2", "layer1"):
            stage = getattr(b, name)
            if not isinstance(stage, nn.Identity):
                return stage[-1]
        return b.act1
    if kind == "EfficientNet":
        if not isinstance(b.conv_head, nn.Identity):
            return b.bn2
        stages = [s for s in b.blocks if not isinstance(s, nn.Identity)]
        return stages[-1][-1]
    if kind == "DenseNet":
        kept = [m for m in b.features.children() if not isinstance(m, nn.Identity)]
        return kept[-1]
    raise ValueError(f"grad-cam: the last block is known for ResNet, EfficientNet and DenseNet "
                     f"backbones, not {kind}")


def grad_cam(model: nn.Module, images: torch.Tensor, target_class: int | list[int],
             layer: nn.Module | None = None) -> np.ndarray:
    """(batch, H, W) maps in [0, 1] for ``images`` (normalised as the model expects) and the class
    to explain (one for all images, or one per image)."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ImportError("Grad-CAM needs the grad-cam package: pip install grad-cam "
                          "(or pip install -e '.[seed003]')") from None
    targets = [target_class] * len(images) if isinstance(target_class, int) else list(target_class)
    was = model.training
    model.eval()
    try:
        with GradCAM(model=model, target_layers=[layer or last_block(model)]) as cam:
            maps = cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in targets])
    finally:
        model.train(was)
    return np.clip(np.nan_to_num(maps), 0.0, 1.0)
