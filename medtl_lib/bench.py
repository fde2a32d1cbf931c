"""Benchmarks anyone can rerun (never timed unit tests).

* ``medtl bench train``: the kit's training loop vs a plain hand-written PyTorch loop.
* ``medtl bench loader``: the authors' per-image pipeline vs the decoded cache.
* ``medtl bench memory``: peak RSS and cache size of real runs on 25/50/100% of a dataset.
"""
from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from . import run_folder as rf
from .config import RunConfig
from .data.loaders import ImageDataset, build_transforms, make_loader
from .data.prepare import prepare_data
from .device import select_device, tune_cpu_allocator
from .models.factory import create_model
from .training.strategies import get_strategy
from .training.trainer import Trainer


def bench_train(dataset: str, model: str, data_dir: str | None = None, weights: str = "none",
                img_size: int = 128, batch_size: int = 32, batches: int = 20, repeats: int = 5,
                device: str = "auto") -> dict:
    """Images/s of ``Trainer.train_epoch`` vs a bare loop, both fed the same decoded batches.

    The batches are decoded and augmented once up front so both loops see identical tensors and
    the figure measures the loop itself; the data path is the same code for both anyway. Each
    repeat restarts both from the same weights and optimizer state; one untimed round warms the
    process up, then the order alternates and the median over repeats is reported.
    """
    # group_by='none': any training batches will do; no need for the leakage audit here
    cfg = RunConfig(dataset=dataset, data_dir=data_dir, model=model, weights=weights,
                    img_size=img_size, batch_size=batch_size, group_by="none")
    index = prepare_data(cfg)
    dev = select_device(device)
    allocator_tuned = dev.device.type == "cpu" and tune_cpu_allocator()  # process-wide: both loops
    net, info = create_model(model, len(index.class_names), weights=weights, img_size=img_size)
    train_tf, _ = build_transforms(info.data_config)
    frame = index.frame[index.frame["split"] == "train"]
    loader = make_loader(ImageDataset(index.root, frame, train_tf), batch_size, True, seed=0)
    data = []
    for x, y in loader:
        data.append((x, y))
        if len(data) >= batches + 1:
            break
    if len(data) < 2:
        raise ValueError("not enough training images for a benchmark; lower --batch-size")
    warm, timed = data[:1], data[1:]
    n_images = sum(int(y.shape[0]) for _, y in timed)
    init = copy.deepcopy(net.state_dict())

    def kit() -> float:
        net.load_state_dict(init)
        trainer = Trainer(model=net, strategy=get_strategy("full"), device=dev, lr=1e-3,
                          epochs=1, progress=True)
        trainer.train_epoch(warm)  # builds the first stage's optimizer, as fit does
        _sync(dev.device)
        t0 = time.perf_counter()
        trainer.train_epoch(timed)
        _sync(dev.device)
        return n_images / (time.perf_counter() - t0)

    def bare() -> float:
        net.load_state_dict(init)
        m = net.to(dev.device)
        opt = torch.optim.Adamax(m.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        m.train()

        def step(x, y):
            x, y = x.to(dev.device), y.to(dev.device)
            opt.zero_grad()
            loss = loss_fn(m(x), y)
            loss.backward()
            opt.step()

        for x, y in warm:
            step(x, y)
        _sync(dev.device)
        t0 = time.perf_counter()
        for x, y in timed:
            step(x, y)
        _sync(dev.device)
        return n_images / (time.perf_counter() - t0)

    kit(), bare()  # one untimed round: the first pass of a process grows its heap and is slow
    kit_runs, bare_runs = [], []
    for r in range(repeats):
        order = (kit, bare) if r % 2 == 0 else (bare, kit)
        for fn in order:
            (kit_runs if fn is kit else bare_runs).append(fn())
    k, b = statistics.median(kit_runs), statistics.median(bare_runs)
    stage_ms = _stage_bookkeeping_ms(net, dev)
    epoch_s = len(frame) / k  # one epoch of this training split at the kit's rate
    return {
        "model": info.timm_name, "img_size": img_size, "batch_size": batch_size,
        "timed_batches": len(timed), "repeats": repeats, "device": dev.description,
        "kit_images_per_s": round(k, 2), "bare_images_per_s": round(b, 2),
        "ratio": round(k / b, 4), "cpu_allocator_tuned": allocator_tuned,
        "stage_bookkeeping_ms_per_epoch": round(stage_ms, 3),
        "stage_bookkeeping_share_of_epoch": round(stage_ms / 1000 / epoch_s, 6),
        "kit_runs": [round(v, 2) for v in kit_runs], "bare_runs": [round(v, 2) for v in bare_runs],
    }


def _stage_bookkeeping_ms(net: nn.Module, dev, reps: int = 20) -> float:
    """What the stage machinery adds to one epoch beyond the batches: starting a stage (optimizer,
    schedule, selector; once per stage, counted in full every epoch here), counting trainable
    parameters, the LR of every group, the schedule's and selector's decisions, and the history
    row. Median of ``reps``; the weights are put back afterwards."""
    from .training.schedules import EpochStats

    state = copy.deepcopy(net.state_dict())
    trainer = Trainer(model=net, strategy=get_strategy("full"), device=dev, lr=1e-3, epochs=1,
                      progress=False)
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        schedule, selector, base = trainer._begin_stage(trainer.stages[0], [None])
        trainer.strategy.on_epoch_start(net, trainer.stages[0], 0)
        trainable = trainer.trainable_params()
        groups = trainer.lr_groups()
        stats = EpochStats(0, 1.0, 0.5, 1.0, 0.5)
        decision = schedule.end_epoch(stats)
        selector.step(stats, decision)
        Trainer.history_frame([dict(epoch=i, stage="train", lr=1e-3, trainable_params=trainable,
                                    lr_groups=groups, **decision.columns)])
        times.append((time.perf_counter() - t0) * 1000)
    net.load_state_dict(state)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_loader(dataset: str, data_dir: str | None = None, img_size: int = 224,
                 batch_size: int = 32, workers: int | None = None, repeats: int = 3,
                 model: str = "resnet", device: str = "auto", max_images: int | None = None) -> dict:
    """Images/s of the authors' per-image pipeline vs the decoded cache, loader alone.

    Both read the same files (the training split, at most ``max_images``) with the same model's
    data config (mean/std, interpolation, crop_pct). Reported, median of ``repeats`` full passes
    after one warm-up batch:

    * ``authors_images_per_s``: PIL decode + timm train transform per image, float batches, with
      ``workers`` loader processes (default: one per core, the most that helps it);
    * ``cached_images_per_s``: uint8 batches from the cache (built before timing, so the page
      cache is warm), pinned on CUDA, as the kit runs it: in the main process (0 workers), which
      is everything the CPU has to do when the GPU augments;
    * ``cached_same_workers_images_per_s``: the same with ``workers`` processes, for a like-for-like
      count (slower: each batch is then copied between processes);
    * ``cached_augmented_images_per_s``: cached batches plus crop/flip/normalise on the bench
      device (the CPU here): what a CPU-only run pays for its data;
    * ``cache_build_s``: building the cache from scratch (a private temporary cache folder).
    """
    import os
    import shutil
    import tempfile

    import timm

    from .data.cache import build_cache, cache_size, cached_loader
    from .data.gpu_aug import DeviceAugment
    from .data.loaders import DeviceLoader
    from .models.factory import resolve_model_name
    from .utils import medtl_cache_dir

    cfg = RunConfig(dataset=dataset, data_dir=data_dir, img_size=img_size, batch_size=batch_size,
                    group_by="none")
    index = prepare_data(cfg)
    frame = index.frame[index.frame["split"] == "train"]
    if max_images:
        frame = frame.iloc[:max_images]
    if len(frame) < 2 * batch_size:
        raise ValueError(f"only {len(frame)} training images: too few to time; lower --batch-size")
    workers = (os.cpu_count() or 1) if workers is None else workers
    dev = select_device(device)
    pin = dev.device.type == "cuda"
    timm_name, _ = resolve_model_name(model)
    pcfg = timm.models.get_pretrained_cfg(timm_name)
    data_config = timm.data.resolve_data_config({}, pretrained_cfg=pcfg.to_dict() if pcfg else {})
    data_config["input_size"] = (3, img_size, img_size)

    train_tf, _ = build_transforms(data_config, cfg.crop_scale_min, cfg.hflip)
    authors = make_loader(ImageDataset(index.root, frame, train_tf), batch_size, True, workers,
                          pin, seed=0)

    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir=_mkdir(medtl_cache_dir("bench"))))
    try:
        t0 = time.perf_counter()
        stored = cache_size(img_size, cfg.crop_scale_min, frame[["width", "height"]].min(axis=1))
        cache = build_cache(index.root, frame["path"].tolist(), stored, tmp,
                            workers=workers, progress=True)
        build_s = time.perf_counter() - t0
        labels = frame["label"].astype(int).tolist()
        raw = cached_loader(cache, labels, batch_size, True, 0, pin, 0)
        raw_workers = cached_loader(cache, labels, batch_size, True, 0, pin, workers)
        aug = DeviceAugment.from_data_config(data_config, True, cfg.crop_scale_min, cfg.hflip)
        augmented = DeviceLoader(raw, dev.device, aug)

        def rate(loader) -> float:
            it = iter(loader)
            next(it)  # warm-up batch: worker start-up and first-touch costs are not throughput
            _sync(dev.device)
            n, t0 = 0, time.perf_counter()
            for x, _ in it:
                n += x.shape[0]
            _sync(dev.device)
            return n / (time.perf_counter() - t0)

        runs: dict[str, list[float]] = {"authors": [], "cached": [], "cached_same_workers": [],
                                        "cached_augmented": []}
        for _ in range(repeats):
            for name, loader in (("authors", authors), ("cached", raw),
                                 ("cached_same_workers", raw_workers),
                                 ("cached_augmented", augmented)):
                runs[name].append(rate(loader))
        cache_gib = cache.nbytes_on_disk() / 2**30
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "dataset": dataset, "images": len(frame), "img_size": img_size,
        "stored_size": stored, "batch_size": batch_size, "workers": workers,
        "device": dev.description, "data_config_of": timm_name, "repeats": repeats,
        "authors_images_per_s": round(med["authors"], 1),
        "cached_images_per_s": round(med["cached"], 1),
        "cached_same_workers_images_per_s": round(med["cached_same_workers"], 1),
        "cached_augmented_images_per_s": round(med["cached_augmented"], 1),
        "cached_vs_authors": round(med["cached"] / med["authors"], 1),
        "cached_augmented_vs_authors": round(med["cached_augmented"] / med["authors"], 2),
        "cache_build_s": round(build_s, 2), "cache_gib": round(cache_gib, 3),
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
    }


def bench_memory(dataset: str, data_dir: str | None = None, fractions: tuple[float, ...] = (0.25, 0.5, 1.0),
                 img_size: int = 224, model: str = "efficientnet_lite0", epochs: int = 1,
                 pipeline: str = "cached", seed: int = 0, weights: str = "auto") -> dict:
    """Peak RSS and cache size of real ``medtl train`` runs on growing subsets of a dataset.

    Each fraction takes that share of every class (a seeded sample), linked (not copied) into a
    temporary folder, and runs ``medtl train`` in a child process with a private, empty
    ``MEDTL_CACHE_DIR``; the child's peak resident set (``wait4``; it includes the cache pages
    the run touched) and the cache file's size are recorded. Linear growth shows as a constant
    ``rss_per_image_mib`` across fractions once the model's fixed cost is subtracted (the report
    fits ``rss = a + b * images``).
    """
    import os
    import shutil
    import subprocess
    import sys
    import tempfile

    import numpy as np

    from .data.catalogue import get_spec
    from .data.index import build_index
    from .utils import medtl_cache_dir

    spec = get_spec(dataset)
    root = spec.find(data_dir)
    frame = build_index(spec, root, decode=False).frame
    rng = np.random.default_rng(seed)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=_mkdir(medtl_cache_dir("bench"))))
    try:
        for frac in fractions:
            if not 0 < frac <= 1:
                raise ValueError(f"fractions must be in (0, 1], got {frac}")
            sub = work / f"data_{frac}"
            picked = []
            for _, g in frame.groupby("class_name", sort=True):
                k = max(1, int(round(len(g) * frac)))
                picked.extend(g["path"].iloc[np.sort(rng.permutation(len(g))[:k])].tolist())
            for rel in picked:
                dst = sub / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink((root / rel).resolve(), dst)
            env = dict(os.environ, MEDTL_CACHE_DIR=str(work / f"cache_{frac}"))
            cmd = [sys.executable, "-m", "medtl_lib", "train", "--dataset", dataset,
                   "--data-dir", str(sub), "--model", model, "--weights", weights,
                   "--img-size", str(img_size),
                   "--epochs", str(epochs), "--pipeline", pipeline, "--no-progress",
                   "--out", str(work / f"run_{frac}")]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
            output = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"medtl train failed at fraction {frac}:\n{output[-3000:]}")
            caches = list((work / f"cache_{frac}" / "decoded").glob("*.npy"))
            metrics = rf.read_metrics(work / f"run_{frac}")
            rows.append({"fraction": frac, "images": len(picked),
                         "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
                         "cache_bytes": sum(c.stat().st_size for c in caches),
                         "cache_mib": round(sum(c.stat().st_size for c in caches) / 2**20, 1),
                         "seconds": round(time.perf_counter() - t0, 1),
                         "test_accuracy": round(metrics["test"]["accuracy"], 4)})
            shutil.rmtree(work / f"cache_{frac}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = np.array([r["images"] for r in rows], dtype=float)
    rss = np.array([r["peak_rss_mib"] for r in rows])
    fit = {}
    if len(rows) >= 2:
        b, a = np.polyfit(n, rss, 1)
        resid = rss - (a + b * n)
        fit = {"rss_fixed_mib": round(float(a), 1), "rss_per_image_kib": round(float(b) * 1024, 1),
               "max_residual_mib": round(float(np.abs(resid).max()), 1)}
    return {"dataset": dataset, "model": model, "img_size": img_size, "epochs": epochs,
            "pipeline": pipeline, "runs": rows, "linear_fit": fit}


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
