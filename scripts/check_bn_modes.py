"""The references' BatchNorm modes, measured (issue 27, items 3 and 4), on the CPU in a minute.

* Auto-RGN ``bn_mode``: the reference code (anniesch/surgical-finetuning) defaults to
  ``train_mode: eval`` and then never calls ``model.train()``, so every BatchNorm keeps its
  pretrained running statistics; ``bn_mode=train`` (the kit's default) updates them all.
* LWFT ``frozen_bn``: the authors' code (sun-umn/TTL main.py:202) calls ``model.train()`` on the
  whole network, so the frozen layers' statistics follow the new data while their weights, which
  get no gradient, never move; ``frozen_bn=eval`` (the kit's default) keeps both.

Each strategy trains briefly on the kit's synthetic brain-MRI stand-in, from the offline
EfficientNet-Lite0 ImageNet weights (``--weights none``: random ones), and the script prints how
many BatchNorm buffers differ from where they started.

    python scripts/check_bn_modes.py [--epochs 1] [--weights auto|none]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

MODEL = "efficientnet_lite0"
FINETUNE_FROM = "blocks.5"  # LWFT: conv_stem, bn1 and blocks.0-4 frozen


def loaders(size: int, n_per_class: int, batch: int) -> tuple:
    """The synthetic brain MRI stand-in's Training / Testing folders as train / val loaders."""
    from medtl_lib.data.catalogue import get_spec
    from medtl_lib.data.index import build_index
    from medtl_lib.data.loaders import ImageDataset, build_transforms, make_loader
    from medtl_lib.data.synthetic import write_synthetic
    from medtl_lib.models.factory import create_model

    root = write_synthetic("brain_tumor_mri", tempfile.mkdtemp(prefix="medtl-bn-"),
                           n_per_class=n_per_class, size=size, seed=0)
    spec = get_spec("brain_tumor_mri")
    index = build_index(spec, spec.locate(root))
    _, info = create_model(MODEL, 4, weights="none", img_size=size)
    train_tf, eval_tf = build_transforms(info.data_config)
    frame = index.frame
    train = frame[frame["source_split"] == "Training"]
    val = frame[frame["source_split"] == "Testing"]
    return (make_loader(ImageDataset(index.root, train, train_tf), batch, True, 0, seed=1),
            make_loader(ImageDataset(index.root, val, eval_tf), batch, False, 0))


def bn_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every BatchNorm's running_mean, running_var and num_batches_tracked, by module name."""
    return {f"{n}.{b}": buf.detach().clone() for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for b, buf in m.named_buffers(recurse=False)}


def train(strategy: str, args: dict, data: tuple, weights: str, size: int,
          epochs: int) -> tuple[nn.Module, nn.Module]:
    """(the model as built, the model after training) for one strategy."""
    import copy

    from medtl_lib.device import select_device
    from medtl_lib.models.factory import create_model
    from medtl_lib.training.strategies import get_strategy
    from medtl_lib.training.trainer import Trainer, schedule_factory

    torch.manual_seed(0)
    model, _ = create_model(MODEL, 4, weights=weights, img_size=size)
    start = copy.deepcopy(model)
    t = Trainer(model=model, strategy=get_strategy(strategy, args), device=select_device("cpu"),
                lr=1e-3,
                epochs=epochs, schedules=schedule_factory("none", {}), select_by="val_loss",
                progress=False)
    t.restore_best = lambda: False  # the last epoch's state, whatever validation says
    t.fit(*data)
    return start, t.model


def auto_rgn_line(bn_mode: str, data: tuple, weights: str, size: int, epochs: int) -> str:
    start, end = train("auto_rgn", {"rgn_batches": 2, "bn_mode": bn_mode}, data, weights, size,
                       epochs)
    before, after = bn_buffers(start), bn_buffers(end)
    differ = sum(not torch.equal(before[k], after[k]) for k in before)
    moved = sum(not torch.equal(p, q) for p, q in zip(start.parameters(), end.parameters()))
    return (f"auto_rgn bn_mode={bn_mode:<5}: {differ} of {len(before)} BatchNorm buffers differ "
            f"from the pretrained ones (expected {0 if bn_mode == 'eval' else len(before)}); "
            f"{moved} parameter tensors trained")


def lwft_line(frozen_bn: str, data: tuple, weights: str, size: int, epochs: int) -> str:
    from medtl_lib.training.strategy_truncation import trained_from

    start, end = train("lwft", {"finetune_from": FINETUNE_FROM, "frozen_bn": frozen_bn}, data,
                       weights, size, epochs)
    trained = trained_from(start, FINETUNE_FROM)
    p0, p1 = dict(start.named_parameters()), dict(end.named_parameters())
    frozen = [n for n in p0 if n not in trained]
    gap = max(float((p1[n] - p0[n]).detach().abs().max()) for n in frozen)
    norms = [n for n, m in start.named_modules() if isinstance(m, nn.BatchNorm2d)
             and all(f"{n}.{k}" in frozen for k, _ in m.named_parameters())]
    m0, m1 = dict(start.named_modules()), dict(end.named_modules())
    changed = sum(not torch.equal(m0[n].running_mean, m1[n].running_mean)
                  or not torch.equal(m0[n].running_var, m1[n].running_var) for n in norms)
    return (f"lwft frozen_bn={frozen_bn:<5}: max |frozen weight - initial| = {gap:g} over "
            f"{len(frozen)} frozen tensors (expected 0); frozen BatchNorms whose running "
            f"statistics changed: {changed} of {len(norms)} (expected "
            f"{len(norms) if frozen_bn == 'train' else 0})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--weights", default="auto", help="auto (offline ImageNet) or none")
    ap.add_argument("--size", type=int, default=64, help="image size in pixels")
    ap.add_argument("--per-class", type=int, default=12, help="synthetic images per class")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.perf_counter()
    data = loaders(args.size, args.per_class, 16)
    print(f"{MODEL} (weights {args.weights}) at {args.size} px, {len(data[0].dataset)} train / "
          f"{len(data[1].dataset)} val synthetic brain-MRI images, {args.epochs} epoch(s), CPU")
    for mode in ("eval", "train"):
        print(auto_rgn_line(mode, data, args.weights, args.size, args.epochs), flush=True)
    for mode in ("train", "eval"):
        print(lwft_line(mode, data, args.weights, args.size, args.epochs), flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
