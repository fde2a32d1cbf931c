"""Training throughput of every registered strategy on the GPU profile's CNNs (seed 001), with
the CUDA paths on: AMP (bf16 where supported), channels_last, torchvision-style 224 px batches.

Random weights and random tensors: speed does not depend on them (Auto-RGN's probe runs as in a
real epoch). For each model x strategy: images/s of the epoch's optimizer steps (the probe and
unfreezing hooks included), peak GPU memory, and whether the loss stayed finite.

    python scripts/bench_strategies_cuda.py [--models resnet50.tv_in1k ...] [--batches 20]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from medtl_lib.device import select_device  # noqa: E402
from medtl_lib.models.factory import create_model  # noqa: E402
from medtl_lib.training.strategies import STRATEGIES, get_strategy  # noqa: E402
from medtl_lib.training.trainer import Trainer, schedule_factory  # noqa: E402

ARGS = {"lp_ft": {"lp_epochs": 1}, "gradual_lf": {"unfreeze_every": 1},
        "gradual_fl": {"unfreeze_every": 1}}


def bench(model_name: str, strategy: str, batches: int, batch_size: int, device) -> dict:
    torch.manual_seed(0)
    model, _ = create_model(model_name, 4, weights="none", img_size=224)
    x = torch.randn(batches * batch_size, 3, 224, 224)
    y = torch.randint(0, 4, (batches * batch_size,))
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    t = Trainer(model=model, strategy=get_strategy(strategy, ARGS.get(strategy, {})),
                device=device, lr=1e-3,
                epochs=3, optimizer_name="adam", schedules=schedule_factory("none", {}),
                select_by="val_loss", progress=False)
    t.strategy.setup(t.model)
    stage = t.stages[-1]  # lp_ft: the fine-tuning stage; others: their only stage
    t._begin_stage(stage, loader)
    out = {}
    for epoch in (0, 1):  # epoch 0 warms up cuDNN and the allocator
        torch.cuda.synchronize() if device.device.type == "cuda" else None
        torch.cuda.reset_peak_memory_stats() if device.device.type == "cuda" else None
        t0 = time.perf_counter()
        t.strategy.on_epoch_start(t.model, stage, epoch + 1)
        new = t.strategy.optimizer_for_epoch(t.model, stage, epoch + 1, t.optimizer)
        if new is not None:
            t.optimizer = new
        loss, _ = t.train_epoch(loader, epoch)
        if device.device.type == "cuda":
            torch.cuda.synchronize()
        out = {"model": model_name, "strategy": strategy,
               "images_per_s": round(batches * batch_size / (time.perf_counter() - t0), 1),
               "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
               if device.device.type == "cuda" else None,
               "loss_finite": bool(torch.isfinite(torch.tensor(loss))),
               "trainable_params": t.trainable_params()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+",
                    default=["resnet50.tv_in1k", "densenet121.tv_in1k", "vgg19.tv_in1k"])
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = select_device(args.device)
    print(device)
    for m in args.models:
        for s in args.strategies or STRATEGIES.names():
            print(json.dumps(bench(m, s, args.batches, args.batch_size, device)), flush=True)


if __name__ == "__main__":
    main()
