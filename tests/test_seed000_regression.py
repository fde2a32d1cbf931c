"""Seed 000 stays exactly as it was: the recorded `medtl train` commands of tests/golden/seed000.py
give bit-identical history.csv and metrics.json numbers on the CPU they were recorded on (same
torch build, same CPU model and instruction set).

Elsewhere the kernels round differently and five epochs carry that to the third digit (measured:
AVX-512 goldens against an AVX2 machine, train loss 1.1158 against 1.1190 at epoch 5, one
validation image flipped). What survives a change of kernels is checked there instead: the first
epoch to 1e-4, the number of epochs, and every recorded metric present."""
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


def _equal(a, b, path="", exact=True):
    """b holds everything a holds; with exact=False only the structure and the non-float values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) <= set(b), f"{path}: keys {set(a) - set(b)} missing"
        for k in a:
            _equal(a[k], b[k], f"{path}.{k}", exact)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f"{path}[{i}]", exact)
    elif exact:
        assert a == b, f"{path}: {a!r} != {b!r}"
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and math.isfinite(b) == math.isfinite(a), path
    elif not isinstance(a, int) or path.endswith(".n") or path.endswith("support"):
        assert a == b, f"{path}: {a!r} != {b!r}"  # names, sizes: never a matter of rounding


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
    metrics = json.loads((out / "metrics.json").read_text())
    recorded = json.loads((GOLDEN / f"seed000_{case}_metrics.json").read_text())
    if SAME_BUILD:
        pd.testing.assert_frame_equal(got[cols], want[cols], check_exact=True)
        _equal(recorded, metrics)
    else:
        assert len(got) == len(want), "a different number of epochs"
        pd.testing.assert_frame_equal(got[cols].iloc[:1], want[cols].iloc[:1], rtol=1e-4)
        _equal(recorded, metrics, exact=False)
