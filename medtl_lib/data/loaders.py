"""Torch datasets and loaders over an index, with transforms from the model's data config."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset

from .images import BadImageError, load_rgb


class ImageDataset(Dataset):
    """Rows of an index frame -> (transformed image, label); decode errors name the file."""

    def __init__(self, root: Path, frame: pd.DataFrame, transform) -> None:
        self.root = Path(root)
        self.paths = frame["path"].tolist()
        self.labels = frame["label"].astype(int).tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            img = load_rgb(self.root / self.paths[i])
        except BadImageError as exc:
            raise BadImageError(exc.path, f"{exc.reason}. `medtl data check` lists every such "
                                "file; remove or fix them and rerun the same command to resume "
                                "from the last complete epoch") from None
        return self.transform(img), self.labels[i]


def build_transforms(data_config: dict, crop_scale_min: float = 0.5, hflip: float = 0.5):
    """timm's own train/eval transforms for this model (its mean/std, interpolation, crop_pct).

    Train: RandomResizedCrop(scale=(crop_scale_min, 1)) + horizontal flip, no colour jitter
    (intensities carry meaning in CT/MRI). Eval: resize + centre crop as timm's eval transform.
    """
    size = data_config["input_size"][-1]
    common = dict(input_size=size, interpolation=data_config.get("interpolation", "bilinear"),
                  mean=data_config["mean"], std=data_config["std"])
    train = create_transform(**common, is_training=True, scale=(crop_scale_min, 1.0),
                             hflip=hflip, color_jitter=0.0)
    evalt = create_transform(**common, is_training=False, crop_pct=data_config.get("crop_pct"),
                             crop_mode=data_config.get("crop_mode"))
    return train, evalt


def default_workers(device_type: str = "cpu") -> int:
    """CPU training: decode in the main process. Workers would take cores from the model's own
    threads (measured on 2 cores: 59 img/s with 0 workers, 48 with 2), and decoding is a few
    percent of a CPU step. On a GPU the workers feed it while the CPU is otherwise idle."""
    if device_type == "cpu":
        return 0
    return min(8, os.cpu_count() or 1)


def make_loader(dataset: Dataset, batch_size: int, train: bool, num_workers: int | None = None,
                pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """Train loaders shuffle with their own generator (reseeded each epoch by the trainer).
    ``pin_memory`` is set for CUDA, so it also picks the default worker count."""
    workers = default_workers("cuda" if pin_memory else "cpu") if num_workers is None else num_workers
    gen = torch.Generator().manual_seed(seed) if train else None
    # A last training batch of one image breaks BatchNorm; drop only that case.
    drop_last = train and len(dataset) > batch_size and len(dataset) % batch_size == 1
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, drop_last=drop_last,
                      num_workers=workers, pin_memory=pin_memory, generator=gen,
                      persistent_workers=False, prefetch_factor=4 if workers else None)
