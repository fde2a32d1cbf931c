"""RunConfig: validation on creation, paper defaults, YAML round trip."""
from __future__ import annotations

import pytest

from medtl_lib.config import RunConfig


def test_paper_defaults_resolve_per_dataset_and_model():
    assert RunConfig(dataset="brain_tumor_mri").resolved().epochs == 10
    assert RunConfig(dataset="sarscov2_ct").resolved().epochs == 20
    assert RunConfig(model="vit_star").resolved().lr == 1e-5
    assert RunConfig(model="vit").resolved().lr == 1e-3
    assert RunConfig(model="vit", lr=3e-4, epochs=2).resolved().lr == 3e-4
    c = RunConfig()
    assert (c.batch_size, c.threshold, c.patience, c.stop_patience, c.factor) == (32, 0.9, 2, 2, 0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(threshold=0.0), "threshold"), (dict(threshold=1.2), "threshold"),
    (dict(img_size=8), "img_size"), (dict(img_size=5000), "img_size"),
    (dict(batch_size=0), "batch_size"), (dict(factor=1.0), "factor"),
    (dict(patience=0), "patience"), (dict(stop_patience=0), "stop_patience"),
    (dict(strategy="lp"), "strategy"), (dict(epochs=0), "epochs"),
    (dict(device="tpu"), "device"), (dict(split="random"), "split"),
])
def test_invalid_values_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)


def test_threshold_one_is_allowed():
    assert RunConfig(threshold=1.0).threshold == 1.0


def test_yaml_roundtrip_and_unknown_keys(tmp_path):
    c = RunConfig(dataset="sarscov2_ct", model="densenet", epochs=3, out="runs/x")
    c.save(tmp_path / "c.yaml")
    assert RunConfig.load(tmp_path / "c.yaml") == c
    with pytest.raises(ValueError, match="did you mean batch_size"):
        RunConfig.from_dict({"batchsize": 8})


def test_unknown_dataset_or_model_fail_on_resolve():
    with pytest.raises(ValueError, match="Unknown dataset"):
        RunConfig(dataset="brain").resolved()
    with pytest.raises(ValueError, match="Unknown model"):
        RunConfig(model="resnet5000").resolved()
