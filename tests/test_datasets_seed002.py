"""Seed 002's BreaKHis set: 200X, the four malignant types from their folder names, and the
paper's own 5-fold split whose test set has exactly 278 images (179 / 33 / 39 / 27)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from medtl_lib.config import RunConfig
from medtl_lib.data.catalogue import get_spec
from medtl_lib.data.index import build_index
from medtl_lib.data.prepare import prepare_data
from medtl_lib.data.splits import fold_split

COUNTS = {"ductal_carcinoma": ("DC", 896), "lobular_carcinoma": ("LC", 163),
          "mucinous_carcinoma": ("MC", 196), "papillary_carcinoma": ("PC", 135)}


def _breakhis_tree(root, scale: int = 1):
    """The Kaggle tree with the paper's 200X malignant counts (tiny images), plus images that
    must be left out: other magnifications and benign tumours."""
    breast = root / "BreaKHis_v1" / "histology_slides" / "breast"
    rng = np.random.default_rng(0)

    def pixels():  # every image distinct: the duplicate audit must not merge them
        return rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    for folder, (code, n) in COUNTS.items():
        for i in range(n // scale):
            patient = f"14-{1000 + i % 9}"
            for mag in ("200", "400") if i < 3 else ("200",):
                d = breast / "malignant" / "SOB" / folder / f"SOB_M_{code}-{patient}" / f"{mag}X"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels()).save(d / f"SOB_M_{code}-{patient}-{mag}-{i:03d}.png")
    d = breast / "benign" / "SOB" / "adenosis" / "SOB_B_A-14-22549AB" / "200X"
    d.mkdir(parents=True)
    Image.fromarray(pixels()).save(d / "SOB_B_A-14-22549AB-200-001.png")
    return root


def test_the_200x_malignant_set_and_the_papers_folds(tmp_path):
    spec = get_spec("breakhis_200x_malignant")
    index = build_index(spec, spec.locate(_breakhis_tree(tmp_path)))
    counts = index.frame["class_name"].value_counts().to_dict()
    assert counts == {c: n for c, (_, n) in COUNTS.items()} and len(index.frame) == 1390
    split = fold_split(index.frame, *spec.folds[:3], spec.folds[3])
    test = index.frame[split == "test"]["class_name"].value_counts().to_dict()
    assert test == {"ductal_carcinoma": 179, "lobular_carcinoma": 33,
                    "mucinous_carcinoma": 39, "papillary_carcinoma": 27}  # Table II: n = 278
    # Table II's validation fold is 179 / 33 / 39 / 27. sklearn hands a class's left-over images
    # to folds by the class's position in the label-sorted order; with the kit's alphabetical
    # labels fold 0 gets one more ductal and one fewer lobular carcinoma (same 278 in all). The
    # authors' label encoding is not published; the test fold is the same either way.
    val = index.frame[split == "val"]["class_name"].value_counts().to_dict()
    assert val == {"ductal_carcinoma": 180, "lobular_carcinoma": 32,
                   "mucinous_carcinoma": 39, "papillary_carcinoma": 27}
    assert (split == "train").sum() == 1390 - 2 * 278


def test_split_folds_in_a_run_and_its_patient_grouped_twin(tmp_path):
    data = _breakhis_tree(tmp_path / "d", scale=5)
    base = dict(dataset="breakhis_200x_malignant", data_dir=str(data), model="test_resnet",
                weights="none", split="folds")
    paper = prepare_data(RunConfig(**base, group_by="none"))
    grouped = prepare_data(RunConfig(**base, group_by="patient"))
    assert set(paper.frame["split"]) == {"train", "val", "test"}
    by_patient = grouped.frame.groupby("group")["split"].nunique()
    assert (by_patient == 1).all()  # no patient in two splits
    leaks = paper.frame.groupby("group")["split"].nunique()
    assert (leaks > 1).any()  # the paper's image-level folds put patients in several splits


def test_hcrf_keeps_140_per_class_skips_masks_and_uses_the_papers_four_folds(tmp_path):
    import numpy as np
    from PIL import Image

    from medtl_lib.config import RunConfig
    from medtl_lib.data.catalogue import get_spec
    from medtl_lib.data.index import build_index
    from medtl_lib.data.prepare import prepare_data

    rng = np.random.default_rng(0)
    for cls, n in (("Normal", 150), ("Abnormal", 180)):
        for i in range(n):
            for folder in ("", "GT"):
                path = tmp_path / "HCRF" / cls / folder / f"{cls[0]}{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    spec = get_spec("hcrf")
    index = build_index(spec, spec.locate(tmp_path))
    counts = index.frame["class_name"].value_counts().to_dict()
    assert counts == {"Normal": 140, "Abnormal": 140}  # a fixed 140 of each, masks left out
    assert not index.frame["path"].str.contains("/GT/").any()
    split = prepare_data(RunConfig(dataset="hcrf", data_dir=str(tmp_path), split="folds",
                                   group_by="none")).frame
    by = split.groupby(["split", "class_name"]).size().to_dict()
    assert by == {("train", "Abnormal"): 35, ("train", "Normal"): 35, ("val", "Abnormal"): 35,
                  ("val", "Normal"): 35, ("test", "Abnormal"): 70, ("test", "Normal"): 70}
