"""Seed 002's augmentation on the device (spec Section 2.3; the authors train with albumentations).

Train: resize the whole image to the input size (no crop), horizontal and vertical flips (p 0.5
each), brightness and contrast by up to +-10% (p 0.5), then shift (+-5% of the side), scale
(+-30%) and rotate (+-180 degrees) with black borders (p 0.7). Eval: the resize alone. Pixel
statistics are normalised with the backbone's mean and std. One affine warp per batch
(``affine_grid`` + ``grid_sample``), so it runs wherever the batch is.

It is a different experiment from timm's random-resized crop, not a faster twin of it, and it
exists only on the cached pipeline (``augmentation='cdtm'``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CDTMAugment(nn.Module):
    """uint8 ``(B, 3, H, W)`` -> normalised float ``(B, 3, img_size, img_size)``."""

    def __init__(self, img_size: int, mean: Sequence[float], std: Sequence[float],
                 train: bool = True, flip: float = 0.5, color: float = 0.5,
                 brightness: float = 0.1, contrast: float = 0.1, affine: float = 0.7,
                 shift: float = 0.05, scale: float = 0.3, rotate: float = 180.0) -> None:
        super().__init__()
        self.img_size = int(img_size)
        self.flip, self.color, self.affine = float(flip), float(color), float(affine)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.shift, self.scale, self.rotate = float(shift), float(scale), float(rotate)
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.train(train)

    @classmethod
    def from_data_config(cls, data_config: dict, train: bool) -> "CDTMAugment":
        return cls(data_config["input_size"][-1], data_config["mean"], data_config["std"], train)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        s = self.img_size
        out = F.interpolate(x.to(torch.float32) / 255.0, size=(s, s), mode="bilinear",
                            antialias=True, align_corners=False).clamp_(0.0, 1.0)
        if self.training:
            out = self._augment(out, generator)
        return (out - self._mean.to(out.device)) / self._std.to(out.device)

    def _augment(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        n, dev = x.shape[0], x.device

        def u(*shape: int) -> torch.Tensor:  # uniform [0, 1) on the CPU generator, then moved
            return torch.rand(*shape, generator=g).to(dev)

        hflip, vflip = u(n) < self.flip, u(n) < self.flip
        x = torch.where(hflip.view(n, 1, 1, 1), x.flip(-1), x)
        x = torch.where(vflip.view(n, 1, 1, 1), x.flip(-2), x)
        # brightness and contrast as albumentations: x * alpha + beta * max, alpha = 1 + c,
        # contrast around the image's mean ("brightness_by_max")
        colour = (u(n) < self.color).view(n, 1, 1, 1)
        alpha = 1 + (u(n) * 2 - 1).view(n, 1, 1, 1) * self.contrast
        beta = (u(n) * 2 - 1).view(n, 1, 1, 1) * self.brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.where(colour, ((x - mean) * alpha + mean + beta).clamp(0.0, 1.0), x)
        # shift, scale, rotate: one affine warp, identity where not drawn
        warp = u(n) < self.affine
        angle = (u(n) * 2 - 1) * math.radians(self.rotate)
        zoom = 1 + (u(n) * 2 - 1) * self.scale
        tx, ty = (u(n) * 2 - 1) * self.shift * 2, (u(n) * 2 - 1) * self.shift * 2  # [-1, 1] units
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=dev).expand(n, 2, 3)
        theta = torch.where(warp.view(n, 1, 1), theta, identity)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return (f"img_size={self.img_size}, flip={self.flip}, color={self.color} "
                f"(+-{self.brightness}, +-{self.contrast}), affine={self.affine} (shift "
                f"{self.shift}, scale {self.scale}, rotate {self.rotate})")
