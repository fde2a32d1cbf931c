"""Batched random-resized-crop + flip + normalise on whatever device the batch is on.

Why: with images cached as uint8 squares (:mod:`medtl_lib.data.cache`) the only per-sample work
left in the timm train transform is the crop, resize, flip and normalise. Here it runs on the
batch's device (GPU: no CPU work at all; CPU: torch's vectorised uint8 resize, no PIL, no
workers), and normalisation is one multiply-add over the batch.

Equivalence with ``build_transforms`` (timm ``RandomResizedCropAndInterpolation`` + flip +
normalise): crop boxes follow torchvision's ``RandomResizedCrop.get_params`` exactly in
distribution (area fraction uniform in ``scale``, log aspect ratio uniform in ``log(ratio)``,
``round`` to integer sides, first of 10 attempts that fits, else the centre-crop fallback;
offsets uniform over the valid integer positions). Each box is then resized as torchvision's
``resized_crop`` does it (crop, flip, antialiased resize; torch's antialiased kernels are built to
match PIL's), one small call per image.

Eval mode reproduces timm's eval transform (resize the short side to ``floor(img_size /
crop_pct)``, centre-crop ``img_size``) from the cached square, which covers the whole short side:
it keeps the same centred fraction ``img_size / floor(img_size / crop_pct)`` of it. When the cache
was stored at exactly ``floor(img_size / crop_pct)`` this is a plain crop, pixel for pixel timm's
result; otherwise (a cache stored larger for training crops, or another crop_pct: ResNet-50 a1
0.95, ViT augreg 0.9) the kept square is resized to ``img_size`` (antialiased), a second
resampling that differs from timm's by a few grey levels, not in field of view.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_ATTEMPTS = 10


class DeviceAugment(nn.Module):
    """uint8 ``(B, 3, H, W)`` on any device -> normalised float ``(B, 3, img_size, img_size)``.

    ``train`` sets the initial mode; ``.train()`` / ``.eval()`` switch it as for any module.
    Pass a ``torch.Generator`` (CPU) to ``forward`` for reproducible crops and flips; without one
    the global torch RNG is used, as torchvision's transforms do.
    """

    def __init__(self, img_size: int, mean: Sequence[float], std: Sequence[float],
                 scale: tuple[float, float] = (0.5, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                 train: bool = True, interpolation: str = "bilinear",
                 crop_pct: float = 0.875) -> None:
        super().__init__()
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"scale and ratio must be (min, max); got {scale}, {ratio}")
        if interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"interpolation must be bilinear, bicubic or nearest, not {interpolation!r}")
        self.img_size = int(img_size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = float(hflip)
        self.interpolation = interpolation
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        self.crop_pct = float(crop_pct)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add
        self.register_buffer("_mul", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("_add", -mean_t / std_t, persistent=False)
        self.train(train)

    @classmethod
    def from_data_config(cls, data_config: dict, train: bool, crop_scale_min: float = 0.5,
                         hflip: float = 0.5) -> "DeviceAugment":
        """The device-side twin of ``loaders.build_transforms`` for this timm data config."""
        interp = data_config.get("interpolation", "bilinear")
        return cls(data_config["input_size"][-1], data_config["mean"], data_config["std"],
                   scale=(crop_scale_min, 1.0), hflip=hflip, train=train,
                   interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
                   crop_pct=data_config.get("crop_pct") or 0.875)

    def sample_params(self, n: int, height: int, width: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Crop boxes (top ``i``, left ``j``, ``h``, ``w``; int64) and ``flip`` (bool), on CPU.

        Vectorised torchvision ``get_params``: all 10 attempts are drawn for every sample and the
        first fitting one is used, which gives the same distribution as drawing them in turn.
        """
        g = generator
        area = float(height * width)
        u_area = torch.rand(n, _ATTEMPTS, generator=g, dtype=torch.float64)
        u_ratio = torch.rand(n, _ATTEMPTS, generator=g, dtype=torch.float64)
        target_area = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * u_area)
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * u_ratio)
        w_all = torch.round(torch.sqrt(target_area * aspect)).long()  # round half even, as Python
        h_all = torch.round(torch.sqrt(target_area / aspect)).long()
        fits = (w_all > 0) & (w_all <= width) & (h_all > 0) & (h_all <= height)
        first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
        w = w_all.gather(1, first).squeeze(1)
        h = h_all.gather(1, first).squeeze(1)
        found = fits.any(dim=1)
        # torchvision's fallback: the largest centred box with the aspect ratio clamped to `ratio`
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            fw, fh = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            fw, fh = int(round(height * max(self.ratio))), height
        else:
            fw, fh = width, height
        w = torch.where(found, w, torch.full_like(w, fw))
        h = torch.where(found, h, torch.full_like(h, fh))
        u_i = torch.rand(n, generator=g, dtype=torch.float64)
        u_j = torch.rand(n, generator=g, dtype=torch.float64)
        i = torch.floor(u_i * (height - h + 1)).long().clamp_max(height - h)  # randint(0, H-h)
        j = torch.floor(u_j * (width - w + 1)).long().clamp_max(width - w)
        i = torch.where(found, i, torch.full_like(i, (height - fh) // 2))
        j = torch.where(found, j, torch.full_like(j, (width - fw) // 2))
        flip = torch.rand(n, generator=g) < self.hflip
        return {"i": i, "j": j, "h": h, "w": w, "flip": flip}

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        if self.training:
            out = self._random_resized_crop(x, generator)
        else:
            out = self._center_crop(x).to(torch.float32, copy=True)  # never scale x in place
        return out.mul_(self._mul.to(out.device)).add_(self._add.to(out.device))

    def _center_crop(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        s = self.img_size
        if height < s or width < s:
            raise ValueError(f"images of {height}x{width} are smaller than the {s}px crop; build "
                             "the cache at stored_size(img_size)")
        scale_size = int(math.floor(s / self.crop_pct))  # timm's eval resize target
        side = s if min(height, width) == scale_size else \
            min(height, width, int(round(min(height, width) * s / scale_size)))
        top = int(round((height - side) / 2.0))  # torchvision center_crop rounding
        left = int(round((width - side) / 2.0))
        out = x[:, :, top:top + side, left:left + side]
        if side == s:
            return out
        mode = self.interpolation if self.interpolation != "nearest" else "nearest-exact"
        out = F.interpolate(out.to(torch.float32), size=(s, s), mode=mode,
                            antialias=mode != "nearest-exact", align_corners=None
                            if mode == "nearest-exact" else False)
        return out.clamp_(0.0, 255.0) if mode == "bicubic" else out

    def _random_resized_crop(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, height, width = x.shape
        p = self.sample_params(n, height, width, generator)
        s = self.img_size
        # Crop, then resize the box: torchvision's resized_crop, i.e. what timm does to the PIL
        # image, with torch's antialiased kernels (built to match PIL's). uint8 stays uint8 on the
        # CPU, where torch has a vectorised uint8 kernel (~10x faster than a float grid_sample of
        # the batch); elsewhere the crop is resized as float. One small call per image: on a GPU
        # that is ~32 launches per batch, far below a training step.
        uint8 = x.dtype == torch.uint8 and x.device.type == "cpu"
        out = torch.empty((n, 3, s, s), dtype=torch.uint8 if uint8 else torch.float32,
                          device=x.device)
        mode = self.interpolation
        kw = dict(mode=mode, antialias=True, align_corners=False) if mode != "nearest" else \
            dict(mode="nearest-exact")
        for k, (i, j, h, w, flip) in enumerate(zip(p["i"].tolist(), p["j"].tolist(),
                                                   p["h"].tolist(), p["w"].tolist(),
                                                   p["flip"].tolist())):
            crop = x[k:k + 1, :, i:i + h, j:j + w]
            if not uint8:
                crop = crop.to(torch.float32)
            if flip:
                crop = crop.flip(-1)
            out[k:k + 1] = F.interpolate(crop, size=(s, s), **kw)
        out = out.to(torch.float32)
        if mode == "bicubic" and not uint8:
            out = out.clamp_(0.0, 255.0)  # PIL's bicubic saturates at 0..255 (uint8 does too)
        return out

    def extra_repr(self) -> str:
        return (f"img_size={self.img_size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, interpolation={self.interpolation!r}, "
                f"crop_pct={self.crop_pct}")
