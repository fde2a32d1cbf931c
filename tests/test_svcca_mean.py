"""SVCCA's summary mean (issue 27, item 8): google/svcca's ``get_cca_similarity`` reports
``np.mean(s[:sum_threshold(s, 0.98)])``, the kit offers it beside the mean of all coefficients."""
from __future__ import annotations

import numpy as np
import pytest

from medtl_lib.analysis import svcca as sv


def test_sum_threshold_keeps_the_coefficients_the_reference_keeps():
    # cca_core.sum_threshold: the first i with sum(s[:i]) / sum(s) >= 0.98. sum = 1.51;
    # i = 1: 0.596, i = 2: 0.927, i = 3: 1.50 / 1.51 = 0.9934 -> i = 3, s[:3] = [0.9, 0.5, 0.1]
    s = np.array([0.9, 0.5, 0.1, 0.01])
    assert sv.sum_threshold(s, 0.98) == 3
    assert sv.summary_mean(s, "sum_threshold") == pytest.approx(0.5, abs=1e-15)
    assert sv.summary_mean(s, "all") == pytest.approx(0.3775, abs=1e-15)
    r = sv.SVCCAResult(s, (4, 4), "sum_threshold")
    assert r.mean == r.mean_sum_threshold == pytest.approx(0.5)
    assert r.mean_all == pytest.approx(0.3775)


def test_sum_threshold_edges_follow_the_reference():
    s = np.array([0.5, 0.3, 0.2])
    assert sv.sum_threshold(s, 0.8) == 2  # exactly at the threshold: >=, so s[:2] is enough
    assert sv.sum_threshold(s, 1.0) == 3  # never reached before the last: the reference's None
    assert sv.sum_threshold(np.zeros(3), 0.98) == 3  # no mass: None there too, every coefficient
    with pytest.raises(ValueError, match="threshold"):
        sv.sum_threshold(s, 1.5)


def test_svcca_reports_the_mean_it_was_asked_for_and_names_it():
    rng = np.random.default_rng(1)  # ten shared directions, six of them in b, and noise
    latent = rng.standard_normal((2000, 10))
    a = latent @ rng.standard_normal((10, 30)) + 0.5 * rng.standard_normal((2000, 30))
    b = latent[:, :6] @ rng.standard_normal((6, 25)) + rng.standard_normal((2000, 25))
    plain, ref = sv.svcca(a, b), sv.svcca(a, b, mean="sum_threshold")
    np.testing.assert_array_equal(plain.coefficients, ref.coefficients)
    assert plain.mean == plain.mean_all and ref.mean == ref.mean_sum_threshold
    assert ref.mean > plain.mean  # the trailing near-zero coefficients are left out
    k = sv.sum_threshold(ref.coefficients)
    assert 0 < k < len(ref.coefficients) and ref.mean == pytest.approx(ref.coefficients[:k].mean())
    assert "98%" in ref.label and "all" in plain.label
    base = sv.random_baseline(400, ref.kept, seed=1, mean="sum_threshold")
    assert base.mean_kind == "sum_threshold"
    with pytest.raises(ValueError, match="unknown SVCCA mean"):
        sv.svcca(a, b, mean="median")


def test_notebook_10_uses_the_reference_mean_and_names_it():
    import ast
    from pathlib import Path

    import nbformat

    nb = nbformat.read(str(Path(__file__).resolve().parents[1] / "notebooks" /
                           "10_representations.ipynb"), as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {t.id: ast.literal_eval(n.value) for n in ast.parse(params.source).body
                if isinstance(n, ast.Assign) for t in n.targets}
    assert assigned["mean"] == "sum_threshold"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "mean_label(mean)" in code
    calls = [line for line in code.splitlines() if "svcca(" in line or "random_baseline(" in line]
    assert calls and all("mean" in line for line in calls)  # every number with the chosen mean
