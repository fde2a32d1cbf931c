"""Notebook 06's helpers: planting copies on purpose, counting test images that leak."""
from __future__ import annotations

import pandas as pd
import pytest

from medtl_lib.data.audit import audit_dataset
from medtl_lib.data.leakage import plant_duplicates, leaked_test_images


def test_planted_copies_are_found_by_the_audit(synth_root, tmp_path):
    src = synth_root("brain_tumor_mri", n_per_class=10, size=48)
    dst = plant_duplicates(src, tmp_path / "leaky", fraction=0.25, seed=1)
    copies = sorted(dst.rglob("*_copy.jpg"))
    assert len(copies) == 10  # a quarter of 40 images
    audit = audit_dataset(dst, "brain_tumor_mri", progress=False)
    near = audit.duplicates[audit.duplicates["kind"] == "near"]
    assert set(p.name for p in copies) <= set(near["path"].map(lambda p: p.split("/")[-1]))
    assert plant_duplicates(src, dst, fraction=0.9) == dst  # reused, not planted twice
    assert len(sorted(dst.rglob("*_copy.jpg"))) == 10
    with pytest.raises(ValueError):
        plant_duplicates(src, tmp_path / "x", fraction=0)


def test_leak_count():
    split = pd.DataFrame({"split": ["train", "test", "test", "val", "test"]})
    groups = pd.Series(["a", "a", "b", "c", "c"])
    # test row 1 shares 'a' with train, row 4 shares 'c' with val, row 2 is alone
    assert leaked_test_images(split, groups) == 2
