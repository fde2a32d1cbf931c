"""scripts/check_layers.py: the checker on a tiny fake package, then on medtl_lib itself."""
from __future__ import annotations

import importlib.util
import io
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_layers.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks itself up there
    spec.loader.exec_module(mod)
    return mod


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))


def test_the_checker_finds_one_cycle_and_one_upward_import(tmp_path):
    pkg = tmp_path / "medtl_lib"
    _write(pkg, {
        "__init__.py": "",
        "utils.py": "import os\n",
        "data/__init__.py": "",
        # a cycle in one layer: one edge relative at module level, one absolute in a function
        "data/a.py": "from .b import thing\n",
        "data/b.py": "def thing():\n    import medtl_lib.data.a\n",
        # upward: data (L1) -> config (L4), from inside a function, `from .. import module` form
        "data/c.py": "from ..utils import os\n\ndef f():\n    from .. import config\n",
        # not counted: under TYPE_CHECKING, and downward imports
        "data/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from ..config import RunConfig\nelse:\n    from . import a\n",
        "config.py": "from .data import a\nfrom medtl_lib import utils\n",
    })
    chk = _checker()
    out = io.StringIO()
    counts = chk.check(pkg, "medtl_lib", out=out)
    text = out.getvalue()
    assert counts["cycles"] == 1 and counts["modules_in_cycles"] == 2, text
    assert "medtl_lib.data.a, medtl_lib.data.b" in text
    assert "data/a.py:1: medtl_lib.data.a -> medtl_lib.data.b" in text
    assert "data/b.py:2: medtl_lib.data.b -> medtl_lib.data.a" in text
    assert counts["upward"] == 1, text
    assert ("upward: medtl_lib/data/c.py:4: medtl_lib.data.c (L1 data) imports medtl_lib.config "
            "(L4 config)") in text
    assert counts["unplaced"] == 0
    assert chk.main(["--root", str(pkg)]) == 1


def test_the_checker_passes_a_clean_package_and_names_an_unplaced_module(tmp_path):
    pkg = tmp_path / "medtl_lib"
    _write(pkg, {"__init__.py": "", "utils.py": "", "cli.py": "from . import utils\n"})
    chk = _checker()
    assert chk.main(["--root", str(pkg)]) == 0
    _write(pkg, {"newthing.py": ""})
    out = io.StringIO()
    assert chk.check(pkg, "medtl_lib", out=out)["unplaced"] == 1
    assert "medtl_lib.newthing is in no layer" in out.getvalue()


def test_medtl_lib_has_no_import_cycle_and_no_upward_import():
    chk = _checker()
    out = io.StringIO()
    counts = chk.check(out=out)
    assert not (counts["cycles"] or counts["upward"] or counts["unplaced"]), out.getvalue()
