"""Benchmarks anyone can rerun (never timed unit tests). ``medtl bench train`` compares the
kit's training loop with a plain hand-written PyTorch loop on the same model and batches."""
from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from .config import RunConfig
from .data.loaders import ImageDataset, build_transforms, make_loader
from .device import select_device, tune_cpu_allocator
from .models.factory import create_model
from .run import prepare_data
from .training.dual_monitor import DualMonitor
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
        trainer = Trainer(net, get_strategy("full"), DualMonitor(), dev, lr=1e-3, progress=True)
        trainer.strategy.on_epoch_start(net, 0)
        trainer.train_epoch(warm)
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
    return {
        "model": info.timm_name, "img_size": img_size, "batch_size": batch_size,
        "timed_batches": len(timed), "repeats": repeats, "device": dev.description,
        "kit_images_per_s": round(k, 2), "bare_images_per_s": round(b, 2),
        "ratio": round(k / b, 4), "cpu_allocator_tuned": allocator_tuned,
        "kit_runs": [round(v, 2) for v in kit_runs], "bare_runs": [round(v, 2) for v in bare_runs],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
