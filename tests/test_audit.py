"""``medtl data audit``: exact and near duplicates, spans across splits and labels, grouped keys.

A tiny synthetic brain-MRI set (4 classes x 6 images, 64 px; 5 Training + 1 Testing per class)
gets hand-made copies planted into it; the audit must find exactly those and nothing among the
originals (different procedural heads differ by >= 28 of 256 pHash bits, 36 in this set; the
threshold, 12, is far below that).
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medtl_lib.data.audit import (
    DUPLICATE_COLUMNS,
    HAMMING_THRESHOLD,
    AuditResult,
    _hash_file,
    _words,
    audit_dataset,
    audit_index,
    duplicate_groups,
    format_summary,
    hamming,
    near_pairs,
    phash_image,
    write_audit,
)
from medtl_lib.data.catalogue import get_spec
from medtl_lib.data.index import build_index
from medtl_lib.data.synthetic import write_synthetic

TR, TE = "Training", "Testing"


def _copy(root: Path, src: str, dst: str) -> str:
    (root / dst).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / src, root / dst)
    return dst


def _resized_jpeg(root: Path, src: str, dst: str, side: int, quality: int) -> str:
    img = Image.open(root / src)
    w, h = img.size
    img.resize((side, side), Image.Resampling.BILINEAR).resize((w, h), Image.Resampling.BILINEAR) \
        .save(root / dst, format="JPEG", quality=quality)
    return dst


# the planted copies, as frozensets of relative paths
GL1 = frozenset({f"{TR}/glioma/Tr-gl_0001.jpg", f"{TR}/glioma/copy_gl1.jpg"})  # bytes, same class
ME2 = frozenset({f"{TR}/meningioma/Tr-me_0002.jpg", f"{TE}/meningioma/copy_me2.jpg"})  # bytes, splits
NO3 = frozenset({f"{TR}/notumor/Tr-no_0003.jpg", f"{TR}/pituitary/conflict_no3.jpg"})  # bytes, labels
PI4 = frozenset({f"{TR}/pituitary/Tr-pi_0004.jpg", f"{TE}/pituitary/resized_pi4.jpg"})  # near, splits
GL2 = frozenset({f"{TR}/glioma/Tr-gl_0002.jpg", f"{TR}/glioma/gray_gl2.png"})  # near (RGB -> L)
ME3 = frozenset({f"{TR}/meningioma/Tr-me_0003.jpg", f"{TR}/meningioma/copy_me3.jpg",
                 f"{TR}/meningioma/resized_me3.jpg"})  # an exact pair inside a near group
PLANTED = {GL1, ME2, NO3, PI4, GL2, ME3}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = write_synthetic("brain_tumor_mri", tmp_path_factory.mktemp("mri") / "mri",
                           n_per_class=6, size=64, seed=0)
    originals = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert Image.open(root / f"{TR}/glioma/Tr-gl_0002.jpg").mode == "RGB"  # odd images are RGB
    _copy(root, f"{TR}/glioma/Tr-gl_0001.jpg", f"{TR}/glioma/copy_gl1.jpg")
    _copy(root, f"{TR}/meningioma/Tr-me_0002.jpg", f"{TE}/meningioma/copy_me2.jpg")
    _copy(root, f"{TR}/notumor/Tr-no_0003.jpg", f"{TR}/pituitary/conflict_no3.jpg")
    _resized_jpeg(root, f"{TR}/pituitary/Tr-pi_0004.jpg", f"{TE}/pituitary/resized_pi4.jpg",
                  side=24, quality=50)
    Image.open(root / f"{TR}/glioma/Tr-gl_0002.jpg").convert("L").save(root / f"{TR}/glioma/gray_gl2.png")
    _copy(root, f"{TR}/meningioma/Tr-me_0003.jpg", f"{TR}/meningioma/copy_me3.jpg")
    _resized_jpeg(root, f"{TR}/meningioma/Tr-me_0003.jpg", f"{TR}/meningioma/resized_me3.jpg",
                  side=32, quality=50)
    spec = get_spec("brain_tumor_mri")
    index = build_index(spec, spec.locate(root))
    return root, index, originals


@pytest.fixture(scope="module")
def result(planted):
    _, index, _ = planted
    return audit_index(index, workers=2, progress=False)


def _groups(df: pd.DataFrame) -> dict[frozenset, str]:
    out = {}
    for _, g in df.groupby("group"):
        assert g["kind"].nunique() == 1
        out[frozenset(g["path"])] = g["kind"].iloc[0]
    return out


def test_finds_exactly_the_planted_groups_with_kinds(result, planted):
    assert len(planted[1].frame) == 24 + 7
    assert _groups(result.duplicates) == {GL1: "exact", ME2: "exact", NO3: "exact",
                                          PI4: "near", GL2: "near", ME3: "near"}
    dup = result.duplicates.set_index("path")
    # the exact pair inside the near group keeps its byte-identity in exact_group
    me3 = dup.loc[sorted(ME3)]
    assert me3.loc[f"{TR}/meningioma/Tr-me_0003.jpg", "exact_group"] == \
        me3.loc[f"{TR}/meningioma/copy_me3.jpg", "exact_group"] != -1
    assert me3.loc[f"{TR}/meningioma/resized_me3.jpg", "exact_group"] == -1
    assert (dup.loc[sorted(GL1 | ME2 | NO3), "distance"] == 0).all()
    # the resized + re-encoded copies really differ (the threshold is exercised) but are within it
    # (distance is to the group's first path)
    for g in (PI4, ME3):
        assert 0 < dup.loc[sorted(g), "distance"].max() <= HAMMING_THRESHOLD
    assert dup.loc[f"{TE}/pituitary/resized_pi4.jpg", "blake2b"] != \
        dup.loc[f"{TR}/pituitary/Tr-pi_0004.jpg", "blake2b"]


def test_summary_counts_and_spans(result):
    s = result.summary
    assert s["files"] == 31
    assert (s["exact_groups"], s["exact_files"]) == (4, 8)  # GL1, ME2, NO3 and the pair in ME3
    assert (s["near_groups"], s["near_files"]) == (3, 7)
    assert (s["groups"], s["grouped_files"]) == (6, 13)
    assert s["groups_spanning_splits"] == 2  # ME2 (bytes) and PI4 (resized)
    assert s["exact_groups_spanning_splits"] == 1 and s["near_groups_spanning_splits"] == 1
    assert s["groups_spanning_labels"] == 1 and s["exact_groups_spanning_labels"] == 1
    assert s["near_groups_spanning_labels"] == 0
    assert s["threshold"] == HAMMING_THRESHOLD and s["skipped"] == 0 and s["has_splits"]
    assert result.seconds > 0 and s["seconds"] == pytest.approx(result.seconds, abs=1e-3)


def test_rows_label_split_and_stable_ids(result):
    df = result.duplicates
    assert list(df.columns[:5]) == ["group", "kind", "path", "label", "split"]
    assert list(df.columns) == DUPLICATE_COLUMNS
    rows = df.set_index("path")
    assert rows.loc[f"{TR}/pituitary/conflict_no3.jpg", "label"] == "pituitary"
    assert rows.loc[f"{TR}/notumor/Tr-no_0003.jpg", "label"] == "notumor"
    assert rows.loc[f"{TE}/meningioma/copy_me2.jpg", "split"] == TE
    assert rows.loc[f"{TR}/meningioma/Tr-me_0002.jpg", "split"] == TR
    # ids 1..k ordered by each group's first path; rows sorted by path inside a group
    firsts = df.groupby("group")["path"].first()
    assert list(firsts.index) == list(range(1, 7))
    assert list(firsts) == sorted(firsts)
    assert all(list(g) == sorted(g) for _, g in df.groupby("group")["path"])
    assert df["path"].is_unique  # a file is in one group only


def test_no_false_positives_among_originals(planted, result):
    root, _, originals = planted
    grouped = set(result.duplicates["path"])
    planted_sources = {p for g in PLANTED for p in g}
    assert grouped == planted_sources
    # and with margin: the closest two different originals are far beyond the threshold
    hashes = [_hash_file(root / p)[1] for p in originals]
    dmin = min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:])
    assert dmin > 2 * HAMMING_THRESHOLD, dmin


def test_edited_copies_are_within_threshold_and_different_images_are_not(planted):
    root, _, _ = planted
    src = root / f"{TR}/glioma/Tr-gl_0002.jpg"  # RGB
    img = Image.open(src)
    img.load()
    h = _hash_file(src)[1]
    big = img.resize((224, 224), Image.Resampling.BICUBIC)
    hb = phash_image(big)
    resized = big.resize((128, 128), Image.Resampling.BILINEAR).resize((224, 224), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=75)
    jpeg = Image.open(io.BytesIO(buf.getvalue()))
    assert hamming(hb, phash_image(resized)) <= HAMMING_THRESHOLD
    assert hamming(hb, phash_image(jpeg)) <= HAMMING_THRESHOLD
    assert hamming(h, phash_image(img.convert("L"))) <= 2
    other = _hash_file(root / f"{TR}/glioma/Tr-gl_0003.jpg")[1]
    assert hamming(h, other) > 2 * HAMMING_THRESHOLD


def test_near_off_finds_only_byte_identical(planted):
    _, index, _ = planted
    r = audit_index(index, near=False, workers=1, progress=False)
    me3_exact = frozenset({f"{TR}/meningioma/Tr-me_0003.jpg", f"{TR}/meningioma/copy_me3.jpg"})
    assert _groups(r.duplicates) == {GL1: "exact", ME2: "exact", NO3: "exact", me3_exact: "exact"}
    assert r.summary["near_groups"] == 0 and r.summary["exact_groups"] == 4
    assert "near:" not in format_summary(r)


def test_threshold_zero_keeps_only_equal_hashes(planted):
    _, index, _ = planted
    r = audit_index(index, max_distance=0, workers=2, progress=False)
    groups = _groups(r.duplicates)
    assert {GL1, ME2, NO3} <= set(groups) and PI4 not in groups
    assert f"{TR}/meningioma/resized_me3.jpg" not in set(r.duplicates["path"])
    assert (r.duplicates["distance"] == 0).all() and r.summary["threshold"] == 0


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(1)
    values = [int(v) for v in rng.integers(0, 2**62, size=(700,), dtype=np.int64)]
    values = [(v << 190) | (v << 120) | v for v in values]  # spread over all four words
    values[10] = values[3] ^ (1 << 5) ^ (1 << 70) ^ (1 << 200)  # distance 3
    values[600] = values[599] ^ (1 << 129)  # distance 1
    values[520] = values[4] ^ 0b11  # distance 2, rows in different blocks (block = 512 rows)
    pairs = {tuple(p) for p in near_pairs(_words(values), 3).tolist()}
    brute = {(i, j) for i in range(len(values)) for j in range(i + 1, len(values))
             if hamming(values[i], values[j]) <= 3}
    assert pairs == brute and {(3, 10), (599, 600), (4, 520)} <= pairs
    assert near_pairs(_words(values[:1]), 3).shape == (0, 2)


def test_write_audit_files(result, tmp_path):
    csv = write_audit(result, tmp_path / "audit")
    assert csv == tmp_path / "audit" / "duplicates.csv"
    back = pd.read_csv(csv, keep_default_na=False)
    assert list(back.columns[:5]) == ["group", "kind", "path", "label", "split"]
    assert len(back) == len(result.duplicates) == 13
    assert set(back["kind"]) == {"exact", "near"}
    summary = json.loads((tmp_path / "audit" / "audit_summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    assert not [p for p in (tmp_path / "audit").iterdir() if p.name.endswith(".tmp")]


def test_format_summary(result):
    text = format_summary(result)
    assert "4 groups of byte-identical files (8 files)" in text
    assert "3 groups" in text and "1 span split folders" in text
    assert "6 groups (13 files); 2 span split folders, 1 have conflicting labels" in text
    assert "--group-by duplicates" in text


def test_duplicate_groups_merges_planted_and_keeps_others(planted, result):
    _, index, _ = planted
    keys = duplicate_groups(index, result)
    assert isinstance(keys, pd.Series) and keys.index.equals(index.frame.index)
    by_path = dict(zip(index.frame["path"], keys))
    for g in PLANTED:
        assert len({by_path[p] for p in g}) == 1, g
    # every file outside the planted groups keeps its own key; groups do not merge together
    assert keys.nunique() == len(index.frame) - (13 - 6)
    assert len({by_path[min(g)] for g in PLANTED}) == len(PLANTED)
    ungrouped = index.frame.loc[~index.frame["path"].isin(set().union(*PLANTED))]
    assert (keys[ungrouped.index] == ungrouped["group"]).all()

    # the index's own group (e.g. a patient) is the base: two files of one patient share a key,
    # and a duplicate of either joins them
    frame = index.frame.copy()
    a, b = f"{TR}/glioma/Tr-gl_0003.jpg", f"{TR}/glioma/Tr-gl_0001.jpg"
    frame.loc[frame["path"] == a, "group"] = "patient-7"
    frame.loc[frame["path"] == b, "group"] = "patient-7"
    index2 = type(index)(index.spec, index.root, index.class_names, frame, index.bad_files)
    by_path2 = dict(zip(frame["path"], duplicate_groups(index2, result)))
    assert by_path2[a] == by_path2[b] == by_path2[f"{TR}/glioma/copy_gl1.jpg"]
    assert by_path2[f"{TR}/glioma/Tr-gl_0002.jpg"] != by_path2[a]


def test_unreadable_files_do_not_crash(tmp_path):
    root = write_synthetic("brain_tumor_mri", tmp_path / "mri", n_per_class=2, size=32, seed=3)
    good = f"{TR}/glioma/Tr-gl_0001.jpg"
    _copy(root, good, f"{TR}/glioma/twin.jpg")
    (root / f"{TR}/notumor/empty.jpg").write_bytes(b"")  # rejected by the index already
    data = (root / good).read_bytes()
    sos = data.index(b"\xff\xda")  # start of scan: the header before it stays whole
    cut = data[:sos + 40]
    (root / f"{TR}/glioma/cut.jpg").write_bytes(cut)  # header ok, pixels cut
    (root / f"{TR}/glioma/cut2.jpg").write_bytes(cut)
    spec = get_spec("brain_tumor_mri")
    index = build_index(spec, spec.locate(root))
    assert "Training/notumor/empty.jpg" in set(index.bad_files["path"])
    assert {f"{TR}/glioma/cut.jpg", f"{TR}/glioma/cut2.jpg"} <= set(index.frame["path"])
    (root / f"{TR}/meningioma/Tr-me_0001.jpg").unlink()  # vanishes after indexing
    r = audit_index(index, workers=2, progress=False)
    skipped = dict(zip(r.skipped["path"], r.skipped["reason"]))
    assert "cannot read" in skipped[f"{TR}/meningioma/Tr-me_0001.jpg"]
    groups = _groups(r.duplicates)
    assert groups[frozenset({good, f"{TR}/glioma/twin.jpg"})] == "exact"
    # truncated files: pixels cannot be decoded, the bytes still match each other exactly
    assert "exact match only" in skipped[f"{TR}/glioma/cut.jpg"]
    assert groups[frozenset({f"{TR}/glioma/cut.jpg", f"{TR}/glioma/cut2.jpg"})] == "exact"
    assert r.summary["files"] == len(index.frame)

    r2 = audit_dataset(root, "brain_tumor_mri", progress=False)
    assert "Training/notumor/empty.jpg" in set(r2.skipped["path"])
    assert "skipped" in format_summary(r2)


def test_audit_dataset_without_split_folders(planted):
    root, _, _ = planted
    r = audit_dataset(root / TR, "folder", workers=2, progress=False)
    assert isinstance(r, AuditResult)
    assert (r.duplicates["split"] == "").all() and not r.summary["has_splits"]
    assert r.summary["groups_spanning_splits"] == 0
    paths = {p.split("/", 1)[1] for g in (GL1, NO3, GL2, ME3) for p in g}
    assert set(r.duplicates["path"]) == paths
    assert "split folders" not in format_summary(r)

