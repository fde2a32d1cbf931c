"""Datasets: finding them, their layouts, decoding any image mode, bad files, splits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medtl_lib.data.catalogue import (
    DatasetLayoutError,
    DatasetNotFoundError,
    breakhis_patient,
    get_spec,
)
from medtl_lib.data.images import BadImageError, load_rgb
from medtl_lib.data.index import build_index
from medtl_lib.data.splits import (
    grouped_split,
    load_split,
    predefined_split,
    save_split,
    stratified_split,
)


def _img(path: Path, mode: str = "RGB", size=(20, 20), color=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


# ---------------------------------------------------------------- layouts
def test_brain_layout_counts_and_groups(synth_root):
    spec = get_spec("brain_tumor_mri")
    root = spec.locate(synth_root("brain_tumor_mri"))
    index = build_index(spec, root)
    assert index.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    counts = index.counts()
    assert counts.loc["glioma", "Training"] == 16 and counts.loc["glioma", "Testing"] == 4
    assert counts["total"].sum() == len(index.frame) == 80
    assert set(index.frame["source_split"]) == {"Training", "Testing"}
    assert index.frame["group"].is_unique
    assert (index.frame["label"] == index.frame["class_name"].map(
        {c: i for i, c in enumerate(index.class_names)})).all()


def test_breakhis_filters_400x_and_reads_patient(synth_root):
    spec = get_spec("breakhis_400x")
    top = synth_root("breakhis_400x")
    index = build_index(spec, spec.locate(top))
    assert len(index.frame) == 40  # only 400X; the other magnifications are on disk too
    assert len(list(Path(top).rglob("*.png"))) > 40
    assert index.frame["path"].str.contains("/400X/").all()
    assert index.frame["group"].nunique() >= 4
    assert breakhis_patient("SOB_B_A-14-22549AB-400-001.png") == "14-22549AB"
    assert breakhis_patient("SOB_M_DC-14-2523-400-010.png") == "14-2523"
    assert breakhis_patient("notes.png") is None


def test_sarscov2_layout_case_insensitive_and_nested(synth_root, tmp_path):
    src = synth_root("sarscov2_ct")
    nested = tmp_path / "archive" / "SARS-COV-2 CT"  # a download that adds one level
    shutil.copytree(src, nested)
    (nested / "COVID").rename(nested / "covid")
    spec = get_spec("sarscov2_ct")
    root = spec.locate(tmp_path / "archive")
    index = build_index(spec, root)
    assert root == nested.resolve()
    assert index.class_names == ["COVID", "non-COVID"]
    assert index.counts()["total"].tolist() == [20, 20]


def test_alias_folder_names_and_misnamed_class_hint(tmp_path):
    spec = get_spec("brain_tumor_mri")
    for split in ("Training", "Testing"):
        for cls in ("glioma", "meningioma", "no_tumor", "pituitary"):
            _img(tmp_path / "ok" / split / cls / "a.png")
            _img(tmp_path / "ok" / split / cls / "b.png")
    assert build_index(spec, spec.locate(tmp_path / "ok")).class_names[2] == "notumor"
    for split in ("Training", "Testing"):
        for cls in ("glioma", "meningiomas", "notumor", "pituitary"):
            _img(tmp_path / "bad" / split / cls / "a.png")
    with pytest.raises(DatasetLayoutError, match="looks like class 'meningioma'"):
        build_index(spec, spec.locate(tmp_path / "bad"))


def test_wrong_layout_says_what_was_expected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetLayoutError, match="Training,Testing"):
        get_spec("brain_tumor_mri").locate(tmp_path)


def test_empty_and_single_class_are_errors(tmp_path):
    spec = get_spec("folder")
    _img(tmp_path / "a" / "x" / "1.png")
    (tmp_path / "a" / "y").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"\['y'\] have no usable images"):
        build_index(spec, spec.locate(tmp_path / "a"))
    _img(tmp_path / "b" / "only" / "1.png")
    with pytest.raises(DatasetLayoutError, match="only one class"):
        build_index(spec, spec.locate(tmp_path / "b"))


def test_hidden_system_files_ignored_and_bad_files_listed(tmp_path):
    spec = get_spec("folder")
    for cls in ("a", "b"):
        _img(tmp_path / cls / "ok1.png")
        _img(tmp_path / cls / "ok2.jpg")
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "a" / "._ok1.png").write_bytes(b"junk")
    (tmp_path / "__MACOSX" / "a").mkdir(parents=True)
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "b" / "notes.jpg").write_text("this is not an image")
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "big.jpg", quality=95)
    good = (tmp_path / "big.jpg").read_bytes()
    (tmp_path / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    index = build_index(spec, spec.locate(tmp_path))
    assert index.class_names == ["a", "b"]  # __MACOSX is not a class
    bad = dict(zip(index.bad_files["path"], index.bad_files["reason"]))
    assert "a/empty.png" in bad and "0 bytes" in bad["a/empty.png"]
    assert "b/notes.jpg" in bad
    # A JPEG cut in half keeps a valid header: only the full decode (data check) finds it.
    assert "b/truncated.jpg" not in bad
    full = build_index(spec, spec.locate(tmp_path), decode=True)
    assert "b/truncated.jpg" in set(full.bad_files["path"])
    assert len(full.frame) == 4


# ---------------------------------------------------------------- finding
def test_search_order_explicit_env_cwd(synth_root, tmp_path, monkeypatch):
    spec = get_spec("sarscov2_ct")
    src = synth_root("sarscov2_ct")
    env_dir = tmp_path / "env"
    shutil.copytree(src, env_dir / "sarscov2_ct")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDTL_DATA_DIR", str(env_dir))
    assert spec.find() == (env_dir / "sarscov2_ct").resolve()
    assert spec.find(src) == Path(src).resolve()  # explicit wins
    monkeypatch.delenv("MEDTL_DATA_DIR")
    shutil.copytree(src, tmp_path / "data" / "sarscov2_ct")
    assert spec.find() == (tmp_path / "data" / "sarscov2_ct").resolve()


def test_not_found_message_lists_places_and_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDTL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError) as err:
        get_spec("brain_tumor_mri").find()
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "brain_tumor_mri") in msg
    assert "kaggle datasets download -d masoudnickparvar/brain-tumor-mri-dataset" in msg
    assert "medtl data synth brain_tumor_mri" in msg


def test_unknown_dataset_suggests():
    with pytest.raises(ValueError, match="Did you mean 'brain_tumor_mri'"):
        get_spec("brain_tumour_mri")


# ---------------------------------------------------------------- decoding
@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "LA", "1", "F"])
def test_any_mode_decodes_to_rgb(tmp_path, mode):
    arr = (np.arange(16 * 16).reshape(16, 16) % 200).astype(np.uint8)
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 300)
        assert img.mode == "I;16"
    elif mode == "F":
        img = Image.fromarray(arr.astype(np.float32) / 7.0, "F")
    else:
        img = Image.fromarray(arr, "L").convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "F") else ("x.jpg" if mode == "CMYK" else "x.png"))
    img.save(path)
    out = load_rgb(path)
    assert out.mode == "RGB" and out.size == (16, 16)
    px = np.asarray(out)
    assert px.max() > px.min()  # contrast survives (16-bit is rescaled, not clipped to white)


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (30, 10), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").size == (10, 30)


def test_bad_image_errors_name_the_file(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    (tmp_path / "t.txt.png").write_text("hello")
    for name in ("z.png", "t.txt.png"):
        with pytest.raises(BadImageError) as err:
            load_rgb(tmp_path / name)
        assert name in str(err.value)


# ---------------------------------------------------------------- splits
def _frame(n_per=(50, 30, 20)) -> pd.DataFrame:
    rows = [(f"c{c}/{i}.png", c) for c, n in enumerate(n_per) for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label"]).assign(
        class_name=lambda f: "c" + f["label"].astype(str), group=lambda f: f["path"],
        source_split=lambda f: np.where(np.arange(len(f)) % 5 == 0, "Testing", "Training"))


def test_stratified_split_fractions_and_seed():
    f = _frame()
    s = stratified_split(f, 0.1, 0.1, seed=1)
    assert s.value_counts().to_dict() == {"train": 80, "val": 10, "test": 10}
    for lab, n in ((0, 50), (1, 30), (2, 20)):  # each class split 0.8/0.1/0.1
        per = s[f["label"] == lab].value_counts()
        assert per["test"] == n // 10 and per["val"] == n // 10
    assert s.equals(stratified_split(f, 0.1, 0.1, seed=1))
    assert not s.equals(stratified_split(f, 0.1, 0.1, seed=2))
    with pytest.raises(ValueError):
        stratified_split(f, 0.5, 0.6)


def test_predefined_split_uses_test_folder():
    f = _frame()
    s = predefined_split(f, "Testing", 0.1, seed=0)
    assert (s[f["source_split"] == "Testing"] == "test").all()
    assert set(s[f["source_split"] == "Training"]) == {"train", "val"}


def test_split_manifest_roundtrip_and_changed_data(tmp_path):
    f = _frame()
    f = f.assign(split=stratified_split(f, seed=3))
    save_split(f, tmp_path / "split.csv")
    again = load_split(tmp_path / "split.csv", f.drop(columns="split"))
    assert again.tolist() == f["split"].tolist()
    with pytest.raises(ValueError, match="not in the dataset now"):
        load_split(tmp_path / "split.csv", f.iloc[1:].drop(columns="split"))
    extra = pd.concat([f, f.iloc[[0]].assign(path="new.png")], ignore_index=True)
    with pytest.raises(ValueError, match="does not cover 1 image"):
        load_split(tmp_path / "split.csv", extra)


# ---------------------------------------------------------------- grouped splits
def test_grouped_split_keeps_groups_together_and_stays_stratified():
    f = _frame((100, 60, 40))
    groups = f["path"].copy()
    for i in range(0, 60, 3):  # twenty groups of three copies in class 0
        groups.iloc[i:i + 3] = f"dup{i}"
    s = grouped_split(f, groups, 0.1, 0.1, seed=0)
    assert (s.groupby(groups).nunique() == 1).all()
    counts = s.value_counts()
    assert abs(counts["test"] - 20) <= 3 and abs(counts["val"] - 20) <= 3
    for lab, n in ((0, 100), (1, 60), (2, 40)):
        assert abs((s[f["label"] == lab] == "test").sum() - n / 10) <= 3
    assert s.equals(grouped_split(f, groups, 0.1, 0.1, seed=0))


def test_grouped_split_without_groups_is_the_papers_split():
    f = _frame()
    assert grouped_split(f, f["path"], seed=5).equals(stratified_split(f, seed=5))


def test_predefined_split_excludes_training_copies_of_test_images():
    f = _frame()
    groups = f["path"].copy()
    test_row = f.index[f["source_split"] == "Testing"][0]
    train_row = f.index[f["source_split"] == "Training"][0]
    groups[[test_row, train_row]] = "same-scan"
    s = predefined_split(f, "Testing", 0.1, seed=0, groups=groups)
    assert s[train_row] == "excluded" and s[test_row] == "test"
    assert (s == "excluded").sum() == 1


# ---------------------------------------------------------------- more bad input
def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header claims a huge size (a decompression bomb's signature)."""
    import struct
    import zlib

    _img(path, "L", (8, 8))
    raw = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then length + 'IHDR'
    raw[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(raw[12:ihdr + 13]))
    raw[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(raw))
    return path


def test_decompression_bomb_is_reported_not_decoded(tmp_path):
    spec = get_spec("folder")
    for cls in ("a", "b"):
        _img(tmp_path / cls / "ok.png")
    _png_claiming_size(tmp_path / "a" / "bomb.png", 40_000, 40_000)
    index = build_index(spec, spec.locate(tmp_path))
    bad = dict(zip(index.bad_files["path"], index.bad_files["reason"]))
    assert "DecompressionBomb" in bad["a/bomb.png"]
    with pytest.raises(BadImageError, match="too large|Decompression"):
        load_rgb(tmp_path / "a" / "bomb.png")


def test_one_pixel_image_goes_through_the_transforms(tmp_path):
    from medtl_lib.data.loaders import ImageDataset, build_transforms
    from medtl_lib.models.factory import create_model

    _img(tmp_path / "tiny.png", "RGB", (1, 1), (10, 20, 30))
    _, info = create_model("test_resnet", 2, weights="none", img_size=32)
    train_tf, eval_tf = build_transforms(info.data_config)
    frame = pd.DataFrame({"path": ["tiny.png"], "label": [1]})
    for tf in (train_tf, eval_tf):
        x, y = ImageDataset(tmp_path, frame, tf)[0]
        assert tuple(x.shape) == (3, 32, 32) and y == 1


def test_symlink_loops_are_not_followed(tmp_path):
    spec = get_spec("folder")
    for cls in ("a", "b"):
        _img(tmp_path / cls / "x.png")
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a", target_is_directory=True)
    index = build_index(spec, spec.locate(tmp_path))
    assert len(index.frame) == 2


def test_non_ascii_names_roundtrip(tmp_path):
    spec = get_spec("folder")
    _img(tmp_path / "tumör" / "Ünïcödé 脑 1.png")
    _img(tmp_path / "tumör" / "Ünïcödé 脑 2.png")
    _img(tmp_path / "normal" / "ok.png")
    _img(tmp_path / "normal" / "ok2.png")
    index = build_index(spec, spec.locate(tmp_path))
    assert "tumör" in index.class_names
    f = index.frame.assign(split="train")
    save_split(f, tmp_path / "split.csv")
    assert load_split(tmp_path / "split.csv", index.frame).eq("train").all()
    assert load_rgb(index.abspath(f.loc[f["class_name"] == "tumör", "path"].iloc[0])).mode == "RGB"


def test_breakhis_patient_grouping_keeps_patients_in_one_split(synth_root, tmp_path):
    from medtl_lib.config import RunConfig
    from medtl_lib.data.prepare import prepare_data

    data = synth_root("breakhis_400x", n_per_class=40, size=32)
    cfg = RunConfig(dataset="breakhis_400x", data_dir=str(data), group_by="patient",
                    val_frac=0.2, test_frac=0.2)
    index = prepare_data(cfg, out=tmp_path)
    f = index.frame
    patients = f["path"].map(lambda p: breakhis_patient(p.split("/")[-1]))
    assert (f.groupby(patients)["split"].nunique() == 1).all()
    assert set(f["split"]) == {"train", "val", "test"}
    info = json.loads((tmp_path / "split_info.json").read_text())
    assert info["group_by"] == "patient" and info["merged_groups"] >= 4
    image_level = prepare_data(RunConfig(dataset="breakhis_400x", data_dir=str(data),
                                         group_by="none", val_frac=0.2, test_frac=0.2)).frame
    assert (image_level.groupby(patients)["split"].nunique() > 1).any()  # what grouping prevents
