"""Notebook 06's helpers: planting copies on purpose, counting test images that leak."""
from __future__ import annotations

import pandas as pd
import pytest

from medtl_lib.data.audit import audit_dataset
from medtl_lib.data.prepare import leaked_test_images
from medtl_lib.teaching.leakage import plant_duplicates


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
    split = pd.DataFrame({"path": ["p0", "p1", "p2", "p3", "p4", "p5"],
                          "split": ["train", "test", "test", "val", "test", "test"]})
    duplicates = pd.DataFrame({"group": [1, 1, 2, 2, 3, 3], "path": ["p0", "p1", "p3", "p4", "p2", "p5"]})
    # p1 shares group 1 with train, p4 shares 2 with val; p2 and p5 are copies, both in test
    assert leaked_test_images(split, duplicates) == 2
