"""How batches are made: the per-image dataset and transforms, and the choice between that
pipeline and the decoded cache (:func:`run_loaders`)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pandas as pd
import torch
from timm.data import create_transform
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .batches import drop_single_last
from .images import BadImageError, load_rgb

if TYPE_CHECKING:  # only for the annotation: any object with RunConfig's fields will do
    from ..config import RunConfig


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
                pin_memory: bool = False, seed: int = 0,
                shard: tuple[int, int] | None = None) -> DataLoader:
    """Train loaders shuffle with their own generator (reseeded each epoch by the trainer).
    ``pin_memory`` is set for CUDA, so it also picks the default worker count. ``shard`` =
    (rank, world size): a training loader yields only this rank's part of the order."""
    workers = default_workers("cuda" if pin_memory else "cpu") if num_workers is None else num_workers
    gen = torch.Generator().manual_seed(seed) if train else None
    sampler = None
    n = len(dataset)
    if train and shard is not None:
        from ..distributed import ShardSampler

        sampler = ShardSampler(n, gen, *shard)
        n = len(sampler)
    drop_last = drop_single_last(n, batch_size, train)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, drop_last=drop_last, num_workers=workers,
                      pin_memory=pin_memory, generator=gen, persistent_workers=False,
                      prefetch_factor=4 if workers else None)


class DeviceLoader:
    """Wraps a loader: moves each batch to ``device``, then applies a batched ``transform`` there.

    For the cached pipeline: uint8 batches travel to the GPU (4x fewer bytes than float) and are
    cropped, flipped and normalised there. ``generator`` and ``len`` are the wrapped loader's, so
    the trainer's per-epoch reseed and progress bars work unchanged.
    """

    def __init__(self, loader: DataLoader, device: torch.device, transform: nn.Module) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.transform = transform.to(self.device)

    @property
    def generator(self) -> torch.Generator | None:
        return self.loader.generator

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            yield self.transform(x), y.to(self.device, non_blocking=True)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Each rank's share of the run's batch: ``batch_size`` stays the global batch, so a run on
    N processes takes the steps of a one-process run (same LR, same schedule)."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} does not split over {world_size} processes; "
                         f"use a multiple of {world_size} (e.g. {batch_size - batch_size % world_size}"
                         f" or {batch_size - batch_size % world_size + world_size})")
    return batch_size // world_size


@dataclass
class RunLoaders:
    train: Iterable  # what the model trains on (eval transform when augment is off)
    evals: dict[str, Iterable]  # 'train', 'val', 'test' with the eval transform
    description: str  # one line for the run log and the run's metrics (no machine paths)
    cache_path: Path | None = None  # the decoded cache file, when there is one


def run_loaders(cfg: "RunConfig", root: Path, frame: pd.DataFrame, splits: dict[str, pd.DataFrame],
                data_config: dict, device: torch.device, progress: bool = True,
                shard: tuple[int, int] | None = None) -> RunLoaders:
    """The one place that turns a run's config and split into batches, for either pipeline.

    ``frame`` is the whole usable index (the cache holds all of it, so every split, seed and model
    of a dataset at one image size shares one cache); ``splits`` are row subsets of it.

    * ``per_image``: the authors' pipeline, PIL decode + timm transforms per image per epoch.
    * ``cached``: decode once into ``$MEDTL_CACHE_DIR/decoded`` (:mod:`.cache`), then uint8
      batches with pinned memory on CUDA, augmented and normalised on the device
      (:mod:`.gpu_aug`). Workers default to 0: a batch is one gather from the page cache.

    ``shard`` = (rank, world size) under torchrun: the training loader yields this rank's part
    (:class:`~medtl_lib.distributed.ShardSampler`) in batches of ``batch_size / world size``, so
    the run takes the same steps on the same global batch as one process; evaluation loaders
    stay whole.
    """
    pin = device.type == "cuda"
    size = data_config["input_size"][-1]
    train_batch = per_rank_batch(cfg.batch_size, shard[1] if shard else 1)
    if cfg.pipeline == "per_image":
        train_tf, eval_tf = build_transforms(data_config, cfg.crop_scale_min, cfg.hflip)
        if not cfg.augment:
            train_tf = eval_tf
        train = make_loader(ImageDataset(root, splits["train"], train_tf), train_batch, True,
                            cfg.num_workers, pin, cfg.seed, shard)
        evals = {s: make_loader(ImageDataset(root, f, eval_tf), cfg.batch_size, False,
                                cfg.num_workers, pin) for s, f in splits.items()}
        workers = train.num_workers
        return RunLoaders(train, evals, f"per-image pipeline (PIL + timm transforms, {workers} "
                                        f"worker(s)), {size} px")

    from ..utils import medtl_cache_dir
    from .augmentations import AUGMENTATIONS
    from .cache import build_cache, cache_size, cached_loader

    stored = cache_size(size, cfg.crop_scale_min, frame[["width", "height"]].min(axis=1))
    t0 = time.perf_counter()
    cache = build_cache(root, frame["path"].tolist(), stored, medtl_cache_dir("decoded"),
                        progress=progress)
    ready_s = time.perf_counter() - t0
    workers = cfg.num_workers or 0
    augmentation = AUGMENTATIONS.get(cfg.augmentation)  # timm: crop/flip; cdtm: seed 002's
    train_aug, eval_aug = augmentation.device_augments(data_config, cfg)

    def loader(f: pd.DataFrame, train: bool) -> DeviceLoader:
        rows = frame.index.get_indexer(f.index)
        raw = cached_loader(cache, f["label"].astype(int).tolist(),
                            train_batch if train else cfg.batch_size, train,
                            cfg.seed, pin, workers, rows=rows, shard=shard if train else None)
        return DeviceLoader(raw, device, train_aug if train else eval_aug)

    evals = {s: loader(f, False) for s, f in splits.items()}
    return RunLoaders(loader(splits["train"], True), evals,
                      f"cached pipeline ({len(cache)} images decoded once at {stored} px, "
                      f"{cache.nbytes_on_disk() / 2**30:.2f} GiB, ready in {ready_s:.1f} s); "
                      f"{augmentation.label}"
                      f"/normalise on {device.type}, {workers} worker(s)", cache.path)
