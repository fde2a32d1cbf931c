"""Seed 004's datasets on tiny hand-made folders in their download layouts: chest X-ray patients
from file names, OCT2017 (nested, patient ids, a fixed per-class subsample), LC25000's lung set."""
from __future__ import annotations

import numpy as np
from PIL import Image

from medtl_lib.config import RunConfig
from medtl_lib.data.catalogue import get_spec
from medtl_lib.data.index import build_index
from medtl_lib.data.prepare import prepare_data


def _jpg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)


def _chest(root):
    k = 0
    for s, split in enumerate(("train", "test", "val")):
        for p in range(10 * s, 10 * s + 6):
            for i in range(2):
                _jpg(root / "chest_xray" / split / "PNEUMONIA" / f"person{p}_bacteria_{i}.jpeg", k)
                _jpg(root / "chest_xray" / split / "NORMAL" / f"IM-{p:04d}-000{i}.jpeg", k + 1)
                k += 2
    _jpg(root / "chest_xray" / "train" / "NORMAL" / "NORMAL2-IM-0427-0001.jpeg", k)
    _jpg(root / "chest_xray" / "train" / "NORMAL" / "NORMAL2-IM-0427-0002.jpeg", k + 1)


def test_chest_xray_patients_come_from_the_file_names(tmp_path):
    _chest(tmp_path)
    spec = get_spec("chest_xray_pneumonia")
    index = build_index(spec, spec.locate(tmp_path))
    f = index.frame
    assert set(f["source_split"]) == {"train", "test"}  # the 16-image val/ folder is not used
    groups = dict(zip(f["path"].map(lambda p: p.rsplit("/", 1)[-1]), f["group"]))
    assert groups["person3_bacteria_0.jpeg"] == groups["person3_bacteria_1.jpeg"] == "person3"
    assert groups["NORMAL2-IM-0427-0001.jpeg"] == groups["NORMAL2-IM-0427-0002.jpeg"] == "NORMAL2-IM-0427"
    assert groups["IM-0012-0000.jpeg"] == groups["IM-0012-0001.jpeg"] == "IM-0012"
    # grouped by patient, no patient spans two splits
    cfg = RunConfig(dataset="chest_xray_pneumonia", data_dir=str(tmp_path), group_by="patient",
                    val_frac=0.2, test_frac=0.2)
    split = prepare_data(cfg).frame
    assert (split.groupby("group")["split"].nunique() == 1).all()


def _oct(root, per_class=5):
    k = 0
    for split in ("train", "test", "val"):
        for cls in ("CNV", "DME", "DRUSEN", "NORMAL"):
            for i in range(per_class):
                _jpg(root / "OCT2017 " / split / cls / f"{cls}-{100 + i // 2}-{i}.jpeg", k)
                k += 1


def test_oct2017_layout_patients_and_subsample(tmp_path, monkeypatch):
    import dataclasses

    _oct(tmp_path, per_class=7)
    spec = get_spec("oct2017")
    root = spec.locate(tmp_path)  # Kaggle's folder name ends in a space
    full = build_index(spec, root).frame
    assert len(full) == 2 * 4 * 7 and full["group"].str.fullmatch(r"\d+").all()
    small = dataclasses.replace(spec, subsample_per_class=3)
    a = build_index(small, root).frame
    b = build_index(small, root).frame
    assert len(a) == 2 * 4 * 3 and a["path"].tolist() == b["path"].tolist()  # fixed subset
    assert set(a["path"]) < set(full["path"])
    assert (a.groupby(["source_split", "class_name"]).size() == 3).all()
    view = get_spec("oct2017_2k")
    assert view.subsample_per_class == 2000
    monkeypatch.setenv("MEDTL_DATA_DIR", str(tmp_path.parent))
    assert view.search_paths()[0] == tmp_path.parent / "oct2017"  # it reads oct2017's download


def test_lc25000_lung_is_found_two_levels_down(tmp_path):
    for cls in ("lung_aca", "lung_n", "lung_scc"):
        for i in range(3):
            _jpg(tmp_path / "lung_colon_image_set" / "lung_image_sets" / cls / f"{cls}{i}.jpeg", i)
    (tmp_path / "lung_colon_image_set" / "colon_image_sets" / "colon_aca").mkdir(parents=True)
    spec = get_spec("lc25000_lung")
    root = spec.locate(tmp_path)
    assert root.name == "lung_image_sets"
    assert build_index(spec, root).counts()["total"].tolist() == [3, 3, 3]


def test_brain_tumor_binary_pools_three_folders_into_tumour(tmp_path, monkeypatch):
    k = 0
    counts = {"glioma": 3, "meningioma": 2, "notumor": 4, "pituitary": 1}
    for split in ("Training", "Testing"):
        for cls, n in counts.items():
            for i in range(n):
                _jpg(tmp_path / "brain_tumor_mri" / split / cls / f"{cls}_{i}.jpg", k)
                k += 1
    monkeypatch.setenv("MEDTL_DATA_DIR", str(tmp_path))
    spec = get_spec("brain_tumor_binary")
    index = build_index(spec, spec.find())  # read from the four-class download's folder
    assert index.class_names == ["notumor", "tumor"]
    f = index.frame
    by = f.groupby(["source_split", "class_name"]).size().to_dict()
    assert by == {("Testing", "notumor"): 4, ("Testing", "tumor"): 6,
                  ("Training", "notumor"): 4, ("Training", "tumor"): 6}
    assert (f.loc[f["class_name"] == "tumor", "label"] == 1).all()
    assert f.loc[f["path"].str.contains("pituitary"), "class_name"].eq("tumor").all()
    # the four-class spec over the same folder is unchanged
    four = build_index(get_spec("brain_tumor_mri"), spec.find())
    assert four.class_names == ["glioma", "meningioma", "notumor", "pituitary"] and len(four.frame) == 20


def test_a_merge_that_pools_a_class_twice_or_an_unknown_class_is_refused():
    import dataclasses

    import pytest
    base = get_spec("brain_tumor_mri")
    with pytest.raises(ValueError, match="at most one label"):
        dataclasses.replace(base, merge=(("a", ("glioma",)), ("b", ("glioma", "notumor"))))
    with pytest.raises(ValueError, match="at most one label"):
        dataclasses.replace(base, merge=(("a", ("gliomas",)), ("b", ("notumor",))))


def test_covid19_radiography_keeps_covid_and_normal_and_skips_the_masks(tmp_path):
    base = tmp_path / "COVID-19_Radiography_Dataset"
    k = 0
    for cls in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        for i in range(3):
            _jpg(base / cls / "images" / f"{cls}-{i}.png", k)
            _jpg(base / cls / "masks" / f"{cls}-{i}.png", k + 1)
            k += 2
    spec = get_spec("covid19_radiography")
    index = build_index(spec, spec.locate(tmp_path))
    assert index.class_names == ["Normal", "COVID"]
    f = index.frame
    assert len(f) == 6 and not f["path"].str.contains("masks").any()
    assert (f.loc[f["class_name"] == "COVID", "label"] == 1).all()
