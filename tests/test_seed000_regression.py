"""Seed 000 stays exactly as it was: the recorded `medtl train` commands of tests/golden/seed000.py
give bit-identical history.csv and metrics.json numbers on the CPU (same torch build as recorded;
on another build, equal to float tolerance, since kernels may round differently)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from medtl_lib.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("seed000_golden", GOLDEN / "seed000.py")
G = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(G)
SAME_BUILD = G.environment() == json.loads((GOLDEN / "seed000_environment.json").read_text())


def _equal(a, b, path=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) <= set(b), f"{path}: keys {set(a) - set(b)} missing"
        for k in a:
            _equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not SAME_BUILD:
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", list(G.CASES))
def test_seed000_numbers_unchanged(case, synth_root, tmp_path):
    data = synth_root(G.SYNTH["name"], n_per_class=G.SYNTH["n_per_class"], size=G.SYNTH["size"],
                      seed=G.SYNTH["seed"])
    out = tmp_path / case
    assert main(G.command(case, data, out)) == 0
    got = pd.read_csv(out / "history.csv")
    want = pd.read_csv(GOLDEN / f"seed000_{case}_history.csv")
    cols = G.HISTORY_COLUMNS
    assert set(cols) <= set(got.columns)
    if SAME_BUILD:
        pd.testing.assert_frame_equal(got[cols], want[cols], check_exact=True)
    else:
        pd.testing.assert_frame_equal(got[cols], want[cols], rtol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    _equal(json.loads((GOLDEN / f"seed000_{case}_metrics.json").read_text()), metrics)
