"""SVCCA: the properties seed 003's analysis relies on (spec Section 3.6)."""
from __future__ import annotations

import numpy as np
import pytest

from medtl_lib.analysis.svcca import random_baseline, svcca


@pytest.fixture()
def x():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((500, 8))
    return latent @ rng.standard_normal((8, 40)) + 0.05 * rng.standard_normal((500, 40))


def test_self_similarity_is_one(x):
    r = svcca(x, x)
    assert r.coefficients.min() >= 1 - 1e-9 and r.mean == pytest.approx(1.0, abs=1e-9)


def test_invariant_to_an_invertible_linear_map_with_keep_one(x):
    a = np.random.default_rng(1).standard_normal((40, 40)) + 3 * np.eye(40)
    assert svcca(x, x @ a, keep=1.0).coefficients.min() >= 1 - 1e-6
    # the SV step at 0.99 drops some directions differently on each side: close, not exact
    assert svcca(x, x @ a, keep=0.99).mean > 0.9


def test_symmetric_and_invariant_to_permutation_and_scale(x):
    rng = np.random.default_rng(2)
    y = x[:, :20] @ rng.standard_normal((20, 30)) + rng.standard_normal((500, 30))
    ab, ba = svcca(x, y), svcca(y, x)
    np.testing.assert_allclose(ab.coefficients, ba.coefficients, atol=1e-10)
    perm = svcca(x[:, rng.permutation(40)] * 7.5, y)
    np.testing.assert_allclose(perm.coefficients, ab.coefficients, atol=1e-10)
    assert (np.diff(ab.coefficients) <= 1e-12).all()  # descending


def test_random_baseline_is_high_when_n_is_small_and_seeded():
    small, large = random_baseline(700, (256, 256)), random_baseline(7000, (256, 256))
    assert small.mean > 0.4 > large.mean  # the bias the figure must show
    assert random_baseline(700, (50, 50), seed=3).mean == random_baseline(700, (50, 50), seed=3).mean


def test_bad_input_is_refused(x):
    with pytest.raises(ValueError, match="same n"):
        svcca(x, x[:10])
    with pytest.raises(ValueError, match="constant"):
        svcca(np.ones((20, 3)), x[:20])


def test_pooled_activations_name_every_cut_point_and_pool_them():
    import torch

    from medtl_lib.analysis.activations import cut_modules, pooled_activations
    from medtl_lib.models.factory import create_model

    model, _ = create_model("resnet18", 2, weights="none", img_size=64,
                            surgery=[{"op": "truncate", "cut": "layer3"}])
    names = list(cut_modules(model))
    assert names == ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1"]
    acts = pooled_activations(model, torch.randn(10, 3, 64, 64), ["stem", "layer3.1"], batch_size=4)
    assert acts["stem"].shape == (10, 64) and acts["layer3.1"].shape == (10, 256)
    with pytest.raises(ValueError, match="layer4.0"):
        pooled_activations(model, torch.randn(2, 3, 64, 64), ["layer4.0"])
