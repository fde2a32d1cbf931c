"""Run under ``torchrun --nproc_per_node 2`` by tests/test_distributed.py: every strategy named on
the command line trains two epochs on sharded data with the kit's Trainer, then the ranks compare
their weights (parameters and BatchNorm buffers). Rank 0 writes one JSON line per strategy:
{strategy, same_on_every_rank, moved, trainable_at_end}.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py \
        DATA_DIR OUT.jsonl full lp_ft auto_rgn ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl_lib.config import RunConfig  # noqa: E402
from medtl_lib.data.loaders import run_loaders  # noqa: E402
from medtl_lib.data.prepare import prepare_data  # noqa: E402
from medtl_lib.device import select_device  # noqa: E402
from medtl_lib.distributed import init, shutdown  # noqa: E402
from medtl_lib.models.factory import create_model  # noqa: E402
from medtl_lib.training.strategies import get_strategy  # noqa: E402
from medtl_lib.training.trainer import Trainer, schedule_factory  # noqa: E402
from medtl_lib.utils import seed_everything  # noqa: E402

# strategies whose defaults need a longer run or another model are given small arguments here
ARGS = {"lp_ft": {"lp_epochs": 1}, "gradual_lf": {"unfreeze_every": 1},
        "gradual_fl": {"unfreeze_every": 1}, "lwft": {"finetune_from": "layer4"},
        "ttl": {"cut": "layer3"}}


def digest(model: torch.nn.Module) -> list[float]:
    return [float(t.double().sum()) for t in model.state_dict().values() if t.is_floating_point()]


def main() -> None:
    data, out, *strategies = sys.argv[1:]
    dist = init("cpu")
    dev = select_device("cpu", "off")
    lines = []
    for name in strategies:
        cfg = RunConfig(dataset="brain_tumor_mri", data_dir=data, model="resnet18", weights="none",
                        img_size=32, epochs=2, batch_size=8, strategy=name,
                        strategy_args=ARGS.get(name, {}), optimizer="adam", lr=1e-3,
                        schedule="none", select_by="val_loss", seed=3)
        seed_everything(cfg.seed)
        index = prepare_data(cfg)
        splits = {s: index.frame[index.frame["split"] == s] for s in ("train", "val", "test")}
        strategy = get_strategy(name, cfg.strategy_args)
        model, info = create_model(cfg.model, len(index.class_names), weights="none",
                                   img_size=cfg.img_size, surgery=strategy.surgery())
        start = digest(model)
        with dist.main_first():
            loaders = run_loaders(cfg, index.root, index.frame, splits, info.data_config,
                                  dev.device, False, (dist.rank, dist.world_size))
        trainer = Trainer(model=model, strategy=strategy, device=dev, lr=cfg.lr, epochs=cfg.epochs,
                          optimizer_name="adam", schedules=schedule_factory("none"), select_by="val_loss",
                          progress=False, dist=dist)
        # the last weights, not theta*: what the ranks hold after the last step
        trainer.restore_best = lambda: False
        trainer.fit(loaders.train, loaders.evals["val"], seed=cfg.seed)
        mine = digest(model)
        everyone = [None] * dist.world_size
        torch.distributed.all_gather_object(everyone, mine)
        lines.append({"strategy": name, "same_on_every_rank": all(d == everyone[0] for d in everyone),
                      "moved": mine != start,
                      "trainable_at_end": sum(p.numel() for p in model.parameters() if p.requires_grad)})
    if dist.is_main:
        Path(out).write_text("".join(json.dumps(line) + "\n" for line in lines))
    shutdown()


if __name__ == "__main__":
    main()
