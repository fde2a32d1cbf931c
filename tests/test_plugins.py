"""One registry mechanism for every kind of component, and plugins that add components without
editing the kit (README, section "Plugins")."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medtl_lib import plugins
from medtl_lib.api import registries
from medtl_lib.cli import main
from medtl_lib.registry import Registry

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture()
def clean_registries(monkeypatch):
    """Whatever a test registers (or loads as a plugin) is forgotten after it."""
    registries()
    saved = {kind: dict(reg._items) for kind, reg in Registry.kinds.items()}
    kinds = dict(Registry.kinds)
    monkeypatch.setattr(plugins, "_loaded", {})
    yield
    for kind, reg in kinds.items():
        reg._items.clear()
        reg._items.update(saved[kind])
    Registry.kinds.clear()
    Registry.kinds.update(kinds)


def readme_plugin() -> str:
    """The plugin file of README's "Plugins" section, verbatim."""
    section = README.read_text(encoding="utf-8").split("## Plugins", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def write_images(root: Path, classes: tuple[str, ...], n: int = 10, size: int = 32) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 100, (size, size, 3)) + 100 * c
            Image.fromarray(pixels.astype("uint8")).save(root / cls / f"{cls}_{i}.png")


def test_every_kind_is_one_registry():
    found = registries()
    assert {"strategy", "schedule", "select_by", "head", "pool", "loss", "optimizer", "dataset",
            "layout", "surgery", "augmentation", "normalization"} <= set(found)
    assert all(isinstance(r, Registry) for r in found.values())
    assert "cdtm" in found["head"] and "avg_raw" in found["pool"] and "sgd" in found["optimizer"]
    assert "ham10000" in found["layout"] and "brain_tumor_mri" in found["dataset"]


def test_no_import_cycle_and_no_config_in_the_factory_or_the_loaders():
    code = ("import sys, medtl_lib.models.factory, medtl_lib.data.loaders; "
            "print('medtl_lib.config' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == "False", r.stderr


def test_head_args_are_declared_and_checked_by_runconfig():
    from medtl_lib.config import RunConfig

    cfg = RunConfig(head="cdtm", pool="tokens", head_args={"centers": "30"},
                    augmentation="timm")
    assert cfg.head_args == {"centers": 30}  # typed, and only what was given
    with pytest.raises(ValueError, match="head 'cdtm' has no argument.*centers: int = 300"):
        RunConfig(head="cdtm", pool="tokens", head_args={"centres": 30})
    with pytest.raises(ValueError, match="variant must be one of"):
        RunConfig(head="cdtm", pool="tokens", head_args={"variant": "other"})
    with pytest.raises(ValueError, match="unknown head 'nope'"):
        RunConfig(head="nope")


def test_a_new_pool_and_loss_are_one_class_each(clean_registries):
    import torch
    from torch import nn

    from medtl_lib.api import LOSSES, POOLS, Loss, Pool
    from medtl_lib.config import RunConfig
    from medtl_lib.models.factory import create_model
    from medtl_lib.training.losses import build_loss

    @POOLS.register
    class MaxPool(Pool):
        name, timm_pool, description = "max", "max", "timm's global max pooling"

    @LOSSES.register
    class Smoothed(Loss):
        name, description = "smooth_ce", "cross-entropy with label smoothing"

        def build(self, train_counts):
            return nn.CrossEntropyLoss(label_smoothing=0.1)

    cfg = RunConfig(pool="max", loss="smooth_ce")
    model, _ = create_model("test_resnet", 3, weights="none", img_size=32, pool=cfg.pool)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
    assert build_loss(cfg.loss).label_smoothing == 0.1


def test_readme_plugin_runs_through_medtl_train(clean_registries, tmp_path, capsys):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(readme_plugin())
    data = tmp_path / "my_xrays"
    write_images(data, ("normal", "pneumonia"))
    args = ["train", "--plugin", str(plugin), "--dataset", "my_xrays", "--data-dir", str(data),
            "--model", "test_resnet", "--weights", "none", "--img-size", "32", "--epochs", "3",
            "--batch-size", "8", "--num-workers", "0", "--strategy", "head_then_all",
            "--strategy-arg", "head_epochs=2", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["strategy_args"] == {"head_epochs": 2}
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    assert main(args) == 0  # and the plugin's strategy really trains, stage by stage
    history = (tmp_path / "run" / "history.csv").read_text()
    assert "head" in history and "all" in history
    assert main(["components", "strategy", "--plugin", str(plugin)]) == 0
    assert "head_then_all" in capsys.readouterr().out
    # a wrong argument of the plugin's strategy is answered like a built-in one's
    typo = [a if a != "head_epochs=2" else "head_epoch=2" for a in args]
    assert main([*typo, "--dry-run"]) == 2
    assert "head_epochs: int = 1" in capsys.readouterr().err


def test_plugin_errors_are_one_line(clean_registries, tmp_path, capsys):
    assert main(["components", "--plugin", str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert "plugin file" in err and "does not exist" in err and "Traceback" not in err
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('boom')\n")
    assert main(["components", "--plugin", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.py failed while loading: RuntimeError: boom" in err
    assert main(["components", "--plugin", "no_such_medtl_plugin"]) == 2
    assert "plugin module 'no_such_medtl_plugin' not found" in capsys.readouterr().err


def test_load_plugins_by_module_name_once(clean_registries, tmp_path, monkeypatch):
    (tmp_path / "lab_components.py").write_text(
        "from medtl_lib.api import SELECT_BY, SelectionRule\n"
        "COUNT = globals().get('COUNT', 0) + 1\n"
        "@SELECT_BY.register\n"
        "class TrainAcc(SelectionRule):\n"
        "    name, mode, metric = 'train_acc', 'max', 'train_acc'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        first = plugins.load_plugins(["lab_components"])
        again = plugins.load_plugins(["lab_components"])
        assert first[0] is again[0] and first[0].COUNT == 1
        from medtl_lib.config import RunConfig

        assert RunConfig(select_by="train_acc", schedule="none").select_by == "train_acc"
    finally:
        sys.modules.pop("lab_components", None)


def test_entry_point_plugins_load_once(clean_registries, monkeypatch):
    calls = []

    class EP:
        name, value = "demo", "demo_pkg:register"

        def load(self):
            return lambda: calls.append(1)

    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group: [EP()] if group == "medtl.plugins"
                        else [])
    monkeypatch.setattr(plugins, "_entry_points_done", False)
    plugins.load_entry_point_plugins()
    plugins.load_entry_point_plugins()
    assert calls == [1]
