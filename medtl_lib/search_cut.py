"""Seed 003's hierarchical cut search: a coarse search over block boundaries, then a fine search
over the layers between the block boundaries around the best block (spec Section 3.1; the
neighbourhood is the kit's definition, as the paper leaves it open).

Every candidate is a normal run folder under ``<out>/<method>__<point>`` (so a killed search resumes
and a finished candidate is never trained twice); the choice is by validation macro AUROC, a tie
going to the smaller model; only the chosen candidate's test metrics are reported, as selecting on
test would leak. The search table lists every candidate.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import pandas as pd

from . import run_folder as rf
from .config import RunConfig

METHOD_ARG = {"ttl": "cut", "transfusion": "slim_from", "lwft": "finetune_from"}


def cut_points(model_name: str, method: str) -> tuple[list[str], dict[str, list[str]]]:
    """(block points bottom -> top, {block point: the layer points of the fine search around it}).

    ``ttl``: cut after a stage (``layer3``), fine: after single blocks (``layer3.2``) of that stage
    and the next one. ``lwft``: the first trained stage / block. ``transfusion``: stages only (the
    per-block slimming rule of the authors' code was not read; spec Section 3.1)."""
    import torch

    from .models.factory import create_model

    with torch.device("meta"):
        model, _ = create_model(model_name, 2, weights="none", img_size=64)
    b = model.backbone
    kind = type(b).__name__
    if kind == "ResNet":
        stages = [f"layer{i}" for i in range(1, 5)]
    elif kind == "EfficientNet":
        stages = [f"blocks.{i}" for i in range(len(b.blocks))]
    elif kind == "DenseNet" and method == "ttl":
        names = [n for n, _ in b.features.named_children()]
        blocks = [f"features.{n}" for n in names if n.startswith("transition")]
        return blocks + [f"features.{names[-1]}"], {}
    else:
        raise ValueError(f"search-cut {method}: defined for ResNet and EfficientNet backbones "
                         f"(ttl also for DenseNet), not {kind}")
    if method == "transfusion":
        if kind != "ResNet":
            raise ValueError("search-cut transfusion: slimming is defined for ResNet backbones")
        return stages, {}
    layers = {s: [f"{s}.{i}" for i in range(len(b.get_submodule(s)))] for s in stages}
    fine: dict[str, list[str]] = {}
    for k, s in enumerate(stages):
        if method == "ttl":  # between the boundary below (exclusive) and the one above
            around = layers[s][:-1] + (layers[stages[k + 1]][:-1] if k + 1 < len(stages) else [])
        else:  # lwft: the first trained block, inside this stage and the one below
            around = (layers[stages[k - 1]][1:] if k else []) + layers[s][1:]
        fine[s] = around
    return stages, fine


def model_params(cfg: RunConfig, num_classes: int) -> int:
    """Parameters of the model a run config builds, surgery included (on the meta device)."""
    import torch

    from .models.factory import create_model
    from .training.strategies import get_strategy

    with torch.device("meta"):
        model, _ = create_model(cfg.model, num_classes, weights="none", img_size=cfg.img_size,
                                pool=cfg.pool, surgery=get_strategy(cfg.strategy,
                                                                    cfg.strategy_args).surgery())
    return sum(p.numel() for p in model.parameters())


def search_cut(base: RunConfig, method: str, out: str | Path, fine: bool = True,
               log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run the search; returns the candidates table (also written to the search folder)."""
    from .train_run import train_run

    if method not in METHOD_ARG:
        raise ValueError(f"method must be one of {', '.join(METHOD_ARG)}, got '{method}'")
    out = Path(out)
    blocks, around = cut_points(base.model, method)
    rows: list[dict] = []

    def run(point: str, stage: str) -> dict:
        cfg = dataclasses.replace(base, strategy=method,
                                  strategy_args={**base.strategy_args, METHOD_ARG[method]: point},
                                  out=str(out / f"{method}__{point}"))
        result = train_run(cfg, progress=False, log=lambda *a: None)
        m = result.metrics
        row = {"stage": stage, "point": point, "val_auroc": m["val"].get("auroc_macro"),
               "val_acc": m["val"]["accuracy"], "params": model_params(cfg, len(m["class_names"])),
               "epochs": m["epochs_run"], "skipped": result.skipped, "path": str(result.out)}
        log(f"  {stage} {point}: val AUROC {row['val_auroc']:.4f}, {row['params']:,} parameters"
            + (" (finished before)" if result.skipped else ""))
        rows.append(row)
        return row

    def best(candidates: list[dict]) -> dict:
        return min(candidates, key=lambda r: (-r["val_auroc"], r["params"]))

    log(f"search-cut {method}: block search over {', '.join(blocks)}")
    chosen = best([run(p, "block") for p in blocks])
    if fine and around.get(chosen["point"]):
        points = [p for p in around[chosen["point"]] if p not in {r["point"] for r in rows}]
        log(f"layer search around {chosen['point']}: {', '.join(points)}")
        chosen = best(rows + [run(p, "layer") for p in points])
    table = pd.DataFrame(rows)
    table["chosen"] = table["point"] == chosen["point"]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / rf.SEARCH_TABLE, index=False)
    test = rf.read_metrics(chosen["path"])["test"]
    (out / rf.SEARCH_CHOICE).write_text(json.dumps(
        {"method": method, "chosen": chosen["point"], "val_auroc": chosen["val_auroc"],
         "params": chosen["params"], "test": {k: test.get(k) for k in
                                              ("accuracy", "auroc_macro", "f1_macro", "ci95")}},
        indent=2, default=float))
    log(f"chosen {METHOD_ARG[method]}={chosen['point']} ({chosen['params']:,} parameters): test "
        f"accuracy {test['accuracy']:.4f}, macro AUROC {test.get('auroc_macro', float('nan')):.4f}")
    return table
