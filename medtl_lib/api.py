"""The public API for plugins and extensions: every registry, :class:`Arg`, :class:`Registry`,
and the base classes a component subclasses.

Adding a component of any kind is one class with ``@<REGISTRY>.register`` (in a plugin, see
:mod:`medtl_lib.plugins`, or a new module of the kit)::

    from medtl_lib.api import STRATEGIES, Strategy, Stage, Arg

    @STRATEGIES.register
    class HeadThenAll(Strategy):
        name = "head_then_all"
        description = "the head alone, then everything"
        args = (Arg("head_epochs", "int", 1, "epochs of the head alone", minimum=1),)
        ...

=================  =================================  ==========================================
registry           base class                         defined in
=================  =================================  ==========================================
STRATEGIES         Strategy (Stage, StageContext)     medtl_lib.training.strategies
SCHEDULES          Schedule (EpochStats, ...)         medtl_lib.training.schedules
SELECT_BY          SelectionRule                      medtl_lib.training.schedules
LOSSES             Loss                               medtl_lib.training.losses
OPTIMIZERS         Optimizer                          medtl_lib.training.optim
HEADS              Head                               medtl_lib.models.heads
POOLS              Pool                               medtl_lib.models.pools
OPS (surgery)      SurgeryOp                          medtl_lib.models.surgery
DATASETS           DatasetSpec (an instance)          medtl_lib.data.catalogue
LAYOUTS            Layout (Record)                    medtl_lib.data.catalogue
AUGMENTATIONS      Augmentation                       medtl_lib.data.augmentations
NORMALIZATIONS     Normalization                      medtl_lib.data.augmentations
=================  =================================  ==========================================

Names are imported on first use, so ``import medtl_lib.api`` itself is cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

from .plugins import ENTRY_POINT_GROUP, PluginError, load_plugin, load_plugins  # noqa: F401
from .registry import Arg, Registry, parse_key_values  # noqa: F401

#: the modules that create the kit's registries (``registries()`` imports them all)
REGISTRY_MODULES = ("medtl_lib.training.strategies", "medtl_lib.training.schedules",
                    "medtl_lib.models.heads", "medtl_lib.models.pools",
                    "medtl_lib.training.losses", "medtl_lib.training.optim",
                    "medtl_lib.data.catalogue", "medtl_lib.models.surgery",
                    "medtl_lib.data.augmentations")

_NAMES = {
    "medtl_lib.training.strategies": ("STRATEGIES", "Strategy", "Stage", "StageContext",
                                      "get_strategy"),
    "medtl_lib.training.schedules": ("SCHEDULES", "Schedule", "ScheduleDecision", "EpochStats",
                                     "SELECT_BY", "SelectionRule"),
    "medtl_lib.training.losses": ("LOSSES", "Loss"),
    "medtl_lib.training.optim": ("OPTIMIZERS", "Optimizer"),
    "medtl_lib.models.heads": ("HEADS", "Head", "register_head"),
    "medtl_lib.models.pools": ("POOLS", "Pool"),
    "medtl_lib.models.surgery": ("OPS", "SurgeryOp"),
    "medtl_lib.data.catalogue": ("DATASETS", "DatasetSpec", "LAYOUTS", "Layout", "Record",
                                 "get_spec"),
    "medtl_lib.data.augmentations": ("AUGMENTATIONS", "Augmentation", "NORMALIZATIONS",
                                     "Normalization"),
    "medtl_lib.config": ("RunConfig",),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = ["Arg", "Registry", "parse_key_values", "load_plugins", "load_plugin", "PluginError",
           "components_table", "parameters_table",
           "ENTRY_POINT_GROUP", "registries", *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medtl_lib.api' has no attribute {name!r}")


def registries() -> dict[str, Registry]:
    """Every registry by kind (the kit's, and any a plugin created), its modules imported."""
    for module in REGISTRY_MODULES:
        importlib.import_module(module)
    order = ("strategy", "schedule", "select_by", "head", "pool", "loss", "optimizer", "dataset",
             "layout", "surgery", "augmentation", "normalization")
    kinds = Registry.kinds
    return {**{k: kinds[k] for k in order if k in kinds},
            **{k: r for k, r in kinds.items() if k not in order}}


def components_table(kind: str | None = None):
    """Every registered component (or one kind's) as a table: kind, name, description, arguments
    (``medtl components``; notebook 03)."""
    import pandas as pd

    found = registries()
    chosen = {kind: found[kind]} if kind else found
    rows = []
    for k, reg in chosen.items():
        for r in reg.table():
            args = "; ".join(f"{a['name']}: {a['type']} = {a['default']!r}" for a in r["arguments"])
            rows.append({"kind": k, "name": r["name"], "description": r["description"],
                         "arguments": args or "-"})
    return pd.DataFrame(rows)


def parameters_table():
    """RunConfig's fields: default, what each means (its metadata, the text of ``medtl train
    --help``) and, for a component, the registered choices (notebook 03's parameters)."""
    import dataclasses

    import pandas as pd

    from .config import RunConfig

    found = registries()
    rows = []
    for f in dataclasses.fields(RunConfig):
        kind = f.metadata.get("kind")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"parameter": f.name, "default": repr(default),
                     "meaning": f.metadata.get("help", ""),
                     "choices": " | ".join(found[kind].available()) if kind in found else ""})
    return pd.DataFrame(rows)
