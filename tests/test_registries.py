"""One registry mechanism for every kind of component (issue 28): a new component is one new
module, found by its name, with no import to add anywhere."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medtl_lib import api  # noqa: F401  (imports every kind's registry)
from medtl_lib.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"strategy", "schedule", "select_by", "loss", "optimizer", "head", "pool", "surgery",
         "dataset", "layout", "augmentation", "normalization"}


def test_every_kind_has_a_registry_that_finds_modules_by_name():
    api.registries()
    assert KINDS <= set(Registry.kinds), KINDS - set(Registry.kinds)
    for kind in KINDS:
        registry = Registry.kinds[kind]
        assert registry.lazy is not None, f"{kind}: a new module would need an import somewhere"
        package, prefix = registry.lazy
        assert package.startswith("medtl_lib.") and prefix.endswith("_"), registry.lazy


def test_a_module_named_by_the_convention_registers_on_first_use(tmp_path, monkeypatch):
    """The mechanism on a package of our own: nothing imports ``pool_max`` until asked for."""
    pkg = tmp_path / "kitpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "pool_max.py").write_text(
        "from kitpkg import REG\n\n@REG.register\nclass Max:\n    name = 'max'\n"
        "    description = 'max over H x W'\n    args = ()\n")
    (pkg / "__init__.py").write_text(
        "from medtl_lib.registry import Registry\nREG = Registry('test_pool_kind', lazy=(__name__, 'pool_'))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import kitpkg

    try:
        assert "kitpkg.pool_max" not in sys.modules
        assert kitpkg.REG.available() == ["max"]
        assert "max" in kitpkg.REG and kitpkg.REG.get("max").description == "max over H x W"
        with pytest.raises(ValueError, match="unknown test_pool_kind 'mean'.*available: max"):
            kitpkg.REG.get("mean")
    finally:
        Registry.kinds.pop("test_pool_kind", None)
        for name in [m for m in sys.modules if m.startswith("kitpkg")]:
            del sys.modules[name]


@pytest.mark.parametrize("kind,module,body,check", [
    ("pool", "models/pool_maxtest.py",
     "from medtl_lib.models.pools import POOLS, Pool\n\n@POOLS.register\nclass MaxTest(Pool):\n"
     "    name, timm_pool, description = 'maxtest', 'max', 'max over H x W'\n",
     "from medtl_lib.config import RunConfig\ncfg = RunConfig(pool='maxtest', weights='none')\n"
     "from medtl_lib.models.factory import create_model\n"
     "m, info = create_model('resnet18', 3, weights='none', img_size=32, pool='maxtest')\n"
     "print(info.spec.pool)\n"),
    ("loss", "training/loss_smoothtest.py",
     "from torch import nn\nfrom medtl_lib.registry import Arg\n"
     "from medtl_lib.training.losses import LOSSES, Loss\n\n@LOSSES.register\n"
     "class SmoothTest(Loss):\n    name, description = 'smoothtest', 'label smoothing'\n"
     "    args = (Arg('eps', 'float', 0.1, 'smoothing'),)\n"
     "    def build(self, counts):\n        return nn.CrossEntropyLoss(label_smoothing=self.args['eps'])\n",
     "from medtl_lib.config import RunConfig\nRunConfig(loss='smoothtest', weights='none')\n"
     "from medtl_lib.training.losses import build_loss\n"
     "print(build_loss('smoothtest', [1, 2], {'eps': 0.2}).label_smoothing)\n"),
])
def test_a_new_kit_module_is_the_only_edit(kind, module, body, check, tmp_path):
    """Drop one module into a copy of the kit: RunConfig accepts the name, the factory builds
    it and ``medtl components`` lists it; no other file changes."""
    import shutil

    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "medtl_lib", kit / "medtl_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (kit / "medtl_lib" / module).write_text(body)
    run = subprocess.run([sys.executable, "-c", check], cwd=kit, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(kit)})
    assert run.returncode == 0, run.stderr[-2000:]
    listed = subprocess.run([sys.executable, "-m", "medtl_lib", "components", kind], cwd=kit,
                            capture_output=True, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(kit)})
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert Path(module).stem.split("_", 1)[1] in listed.stdout


def test_a_report_notebook_is_one_module_beside_its_notebook(tmp_path):
    """A paper's report notebook: ``orchestration/report_<name>.py`` declares it (paper, place in
    the plan, parameters); a profile lists it and the plan runs it before the results page."""
    import os
    import shutil

    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "medtl_lib", kit / "medtl_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (kit / "medtl_lib" / "orchestration" / "report_my_table.py").write_text(
        "from .reports import REPORTS, Report\n\n@REPORTS.register\nclass MyTable(Report):\n"
        "    name, paper, order = '15_my_table', 'seed000', 95\n"
        "    description = 'my table over the profile folder'\n")
    profile = tmp_path / "mine.yaml"
    profile.write_text("datasets: [brain_tumor_mri]\nmodels: [resnet]\nreports: [15, 05_results]\n")
    code = ("from medtl_lib import orchestration as o\n"
            f"p = o.load_profile({str(profile)!r}, runs_dir={str(tmp_path / 'runs')!r}, "
            f"data_root={str(tmp_path)!r})\n"
            "steps = o.plan(p)\nprint([s.name for s in steps][-2:])\n"
            "print(steps[-2].notebook.name, sorted(steps[-2].parameters))\n"
            "print(o.paper_reports()['seed000'])\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=kit, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(kit)})
    assert run.returncode == 0, run.stderr[-2000:]
    names, params, paper = run.stdout.strip().splitlines()
    assert names == "['15_my_table', '05_results']"
    assert params == "15_my_table.ipynb ['figures_dir', 'profile_dir']"
    assert "15_my_table" in paper
