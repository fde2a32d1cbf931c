"""Teaching helpers for notebook 06: make a dataset leak on purpose, and count the leak."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..data.images import is_image_file, load_rgb


def plant_duplicates(src: str | Path, dst: str | Path, fraction: float = 0.3, seed: int = 0) -> Path:
    """Copy the dataset folder to ``dst`` and save a resized, re-encoded copy of a random
    ``fraction`` of its images next to the originals, as real datasets do (the brain MRI set
    holds hundreds of such copies). For stand-ins that have no duplicates of their own."""
    src, dst = Path(src), Path(dst)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if dst.exists() and any(dst.iterdir()):
        return dst  # made before: reuse, so reruns compare the same data
    shutil.copytree(src, dst)
    images = sorted(p for p in dst.rglob("*") if p.is_file() and is_image_file(p.name))
    rng = np.random.default_rng(seed)
    for p in rng.choice(images, size=max(1, round(fraction * len(images))), replace=False):
        img = load_rgb(p)
        w, h = img.size
        copy = img.resize((max(1, w * 3 // 4), max(1, h * 3 // 4))).resize((w, h))
        copy.save(p.with_name(f"{p.stem}_copy.jpg"), quality=85)
    return dst
