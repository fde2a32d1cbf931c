"""Why staged fine-tuning (sft) can fall below the probe it starts from on a BatchNorm backbone.

Stage 1 trains the CDTM head on a frozen backbone in eval mode: every BatchNorm normalises with
the running statistics it brought from ImageNet. Stage 2 puts the backbone in train mode, and its
BatchNorms normalise with the statistics of each batch of *these* images instead, and move their
running statistics towards them. The head then sees other features than the ones it was trained
on. Seed 002's backbones (ConvNeXt, ViT) have LayerNorm, so the paper never meets this.

This script measures it on a finished sft run, without training: the validation accuracy of the
stage-1 weights (``best_lp.pt``) as stage 1 saw them, with batch statistics as stage 2's first
steps see them, and with the running statistics re-estimated on training images as stage 2's
first evaluation sees them; and of the run's final weights.

    python scripts/bench_sft_bn.py runs/seed002_cpu/brain_tumor_mri__efficientnet_lite0__sft__s1
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from medtl_lib.training.strategies import batch_norms  # noqa: E402


def batches(run: Path, meta: dict) -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """The run's train and val images as its own evaluation loaders give them (same pipeline,
    cache and eval transform as the trainer), read once into memory."""
    import dataclasses

    from medtl_lib.config import RunConfig
    from medtl_lib.data.loaders import run_loaders
    from medtl_lib.data.prepare import prepare_data

    cfg = RunConfig.load(run / "config.yaml")
    cfg = dataclasses.replace(cfg, split_csv=str(run / "split.csv"), out="")
    index = prepare_data(cfg, None)  # the run's split, nothing written into its folder
    splits = {s: index.frame[index.frame["split"] == s] for s in ("train", "val")}
    data_config = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["data_config"].items()}
    loaders = run_loaders(cfg, index.root, index.frame, splits, data_config,
                          torch.device("cpu"), progress=False)
    return {s: [(x.float(), y) for x, y in loaders.evals[s]] for s in splits}


@torch.no_grad()
def accuracy(model: nn.Module, data: list, batch_stats: bool = False) -> float:
    """Top-1 accuracy; ``batch_stats``: every BatchNorm normalises with its batch's statistics
    (train mode) while everything else stays in eval mode, on a copy (running stats untouched)."""
    model = copy.deepcopy(model).eval()
    if batch_stats:
        for m in batch_norms(model):
            m.train()
    right = sum((model(x).argmax(1) == y).sum().item() for x, y in data)
    return right / sum(len(y) for _, y in data)


@torch.no_grad()
def recalibrated(model: nn.Module, data: list) -> nn.Module:
    """A copy whose BatchNorm running statistics are the plain average over ``data``'s batches."""
    model = copy.deepcopy(model).eval()
    for m in batch_norms(model):
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for x, _ in data:
        model(x)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    from medtl_lib.checkpoint_files import load_checkpoint
    from medtl_lib.models.factory import load_run_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished sft run folder (with best_lp.pt)")
    ap.add_argument("--train-batches", type=int, default=16,
                    help="training batches to re-estimate the running statistics on")
    args = ap.parse_args(argv)
    run = Path(args.run)
    final, _, meta = load_run_model(run)
    if not (run / "best_lp.pt").is_file():
        raise SystemExit(f"{run} has no best_lp.pt: give a finished sft run folder")
    probe = copy.deepcopy(final)
    probe.load_state_dict(load_checkpoint(run / "best_lp.pt")["model"])
    data = batches(run, meta)
    val, train = data["val"], data["train"][:args.train_batches]
    n_train = sum(len(y) for _, y in train)
    print(f"{run.name}: {sum(len(y) for _, y in val)} validation images, batches of "
          f"{len(val[0][1])}")
    rows = [
        ("stage-1 weights, BN running stats (as stage 1 trained and selected)",
         accuracy(probe, val)),
        ("stage-1 weights, BN batch stats (as stage 2's first steps see them)",
         accuracy(probe, val, batch_stats=True)),
        (f"stage-1 weights, BN stats re-estimated on {n_train} training images",
         accuracy(recalibrated(probe, train), val)),
        ("final weights (stage 2's best)", accuracy(final, val)),
    ]
    for label, acc in rows:
        print(f"  {acc:.4f}  {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
