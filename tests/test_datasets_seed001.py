"""Seed 001's extra dataset layouts: HAM10000 (metadata CSV, several images per lesion) and the
class-folder sets, on tiny hand-made folders."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from medtl_lib.config import RunConfig
from medtl_lib.data.catalogue import DatasetLayoutError, get_spec
from medtl_lib.data.index import build_index
from medtl_lib.data.prepare import prepare_data

DX = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


def _jpg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path)


def _ham(root, lesions_per_class=6, images_per_lesion=2, drop=None):
    rows, k = [], 0
    for c, dx in enumerate(DX):
        for lesion in range(lesions_per_class):
            for _ in range(images_per_lesion):
                image_id = f"ISIC_{k:07d}"
                rows.append({"lesion_id": f"HAM_{c}{lesion:05d}", "image_id": image_id,
                             "dx": dx, "dx_type": "histo"})
                part = "HAM10000_images_part_1" if k % 2 else "HAM10000_images_part_2"
                if image_id != drop:
                    _jpg(root / part / f"{image_id}.jpg", k)
                    _jpg(root / part.lower() / f"{image_id}.jpg", k)  # Kaggle's second copy
                k += 1
    with open(root / "HAM10000_metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_ham10000_scan_counts_each_image_once_with_its_lesion(tmp_path):
    rows = _ham(tmp_path / "archive")
    spec = get_spec("ham10000")
    root = spec.locate(tmp_path)  # one level of nesting, as an unzipped download has
    index = build_index(spec, root)
    assert len(index.frame) == len(rows) == 7 * 6 * 2
    assert index.frame["class_name"].value_counts().to_dict() == {dx: 12 for dx in DX}
    assert index.frame.groupby("group").size().eq(2).all()


def test_ham10000_splits_keep_every_lesion_in_one_split(tmp_path):
    _ham(tmp_path / "ham", lesions_per_class=10)
    out = tmp_path / "run"
    out.mkdir()
    cfg = RunConfig(dataset="ham10000", data_dir=str(tmp_path / "ham"), model="test_resnet",
                    group_by="duplicates", val_frac=0.2, test_frac=0.2)
    index = prepare_data(cfg, out)
    frame = index.frame
    frame = frame.assign(lesion=frame["path"].map(
        {r.path.relative_to(index.root).as_posix(): r.group
         for r in get_spec("ham10000").scan(index.root)}))
    assert frame.groupby("lesion")["split"].nunique().eq(1).all()
    assert set(frame["split"]) == {"train", "val", "test"}
    info = json.loads((out / "split_info.json").read_text())
    assert "dataset_groups" in info and info["merged_groups"] == 70


def test_ham10000_missing_image_is_named(tmp_path):
    _ham(tmp_path / "ham", lesions_per_class=1, drop="ISIC_0000003")
    spec = get_spec("ham10000")
    with pytest.raises(DatasetLayoutError, match="ISIC_0000003"):
        list(spec.scan(spec.locate(tmp_path / "ham")))


def test_chest_xray_and_kvasir_layouts(tmp_path):
    for split in ("train", "test", "val"):
        for c in ("NORMAL", "PNEUMONIA"):
            for i in range(2):
                _jpg(tmp_path / "cx" / "chest_xray" / split / c / f"{i}.jpeg", i)
    spec = get_spec("chest_xray_pneumonia")
    index = build_index(spec, spec.locate(tmp_path / "cx"))
    assert sorted(set(index.frame["source_split"])) == ["test", "train"]  # val/ is not used
    kv = get_spec("kvasir_v2")
    for c in kv.classes:
        _jpg(tmp_path / "kv" / "kvasir-dataset-v2" / c / "a.jpg", 0)
    assert len(build_index(kv, kv.locate(tmp_path / "kv")).frame) == 8
