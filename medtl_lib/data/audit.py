"""``medtl data audit``: byte-identical and near-duplicate images, within and across classes and
across the dataset's own split folders.

Small medical datasets often hold the same scan more than once: copied between Training/ and
Testing/ (test images the model has already seen), filed under two classes (conflicting labels),
or saved again at another size, quality or colour mode. A random or predefined split then leaks.
This module finds such files and gives :func:`duplicate_groups`, a group key under which a
grouped split keeps every copy of an image inside one split.

How files are compared
----------------------
* **exact**: the BLAKE2b digest of the file's bytes. Files with one digest form a byte-identical
  set ("exact group", the definition a dataset README uses when it counts identical files).
* **near**: a 256-bit DCT perceptual hash (pHash), computed here with Pillow + numpy + scipy:
  decode, convert to 8-bit grayscale (as :func:`~medtl_lib.data.images.to_rgb` sees the image,
  then ITU-R 601 luma), resize to 64x64 with a Lanczos (antialiasing) filter, 2-D DCT-II, keep
  the 16x16 lowest frequencies, drop the DC term (overall brightness), and set one bit per
  remaining coefficient that is above their median (255 bits used; the top bit is always 0).
  Resizing, JPEG re-encoding and RGB <-> grayscale conversion barely move these coarse
  frequencies; a different image moves about half of them. (A 64-bit 8x8 pHash was measured
  too: too coarse for MRI, where every slice is a bright ellipse on black; synthetic heads that
  differ came as close as 4-6 of 63 bits, as close as its edited copies.)
* Two files are near duplicates when their hashes differ in at most ``max_distance`` bits
  (:data:`HAMMING_THRESHOLD`, 12 of 256). The search compares every pair of distinct hashes
  with vectorised XOR + popcount on uint64 blocks (7k images = 25M pairs, ~0.3 s), no Python
  loop over pairs.

Grouping rule
-------------
Union-find over files: files with identical bytes are joined, then files (or whole
byte-identical sets) whose hashes are within ``max_distance`` are joined. Each connected set of
two or more files is one *group*; a file is in at most one group. Group ids are 1, 2, ...
ordered by the group's first path. A group whose members are all byte-identical has ``kind``
``exact`` on all its rows; any other group (it holds at least two different files) has
``kind`` ``near`` on all its rows, including members that also have a byte-identical twin.
Those twins are still visible: ``exact_group`` gives every row its byte-identical set (1, 2, ...
by first path; -1 when the file's bytes are unique), so no exact relation is lost when a
near relation merges two sets.

Summary counts
--------------
``exact_groups``/``exact_files``/``exact_groups_spanning_splits`` count byte-identical sets,
whether or not a near relation also merged them into a larger group (so they match what a
dataset's README reports). ``near_*`` count groups of kind ``near``. ``groups``,
``groups_spanning_splits`` and ``groups_spanning_labels`` count the final groups (the CSV's
``group`` column), which is what a grouped split has to respect. A group spans splits when its
files sit in more than one of the dataset's split folders (e.g. Training and Testing); it spans
labels (conflicting labels) when its files are filed under more than one class.

Unreadable files are never fatal: those the index already rejected are not looked at; a file
whose bytes cannot be read is skipped; a file whose bytes are read but whose pixels cannot be
decoded takes part in exact matching only. Both kinds are listed in ``AuditResult.skipped``.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.fft import dctn

from .. import run_folder as rf
from ..utils import atomic_write, atomic_write_json
from .images import to_rgb
from .index import DataIndex, build_index
from .catalogue import get_spec

# Maximum Hamming distance (of 256 bits) between two pHashes for "near duplicate". Measured with
# phash_image as implemented here:
#   edited copies, image vs its copy resized down and up (224->128->224) / re-encoded as JPEG q75
#   / resized down + JPEG q75 (+ grayscale) / grayscale- or RGB-converted:
#     real brain MRI (224 px, 300 random images): max 6 / 4 / 8 / 0 bits;
#     synthetic MRI stand-ins (64-224 px, 24-160 images each): max 6 / 8 / 10 / 0 bits.
#   different images:
#     synthetic: minimum 28 bits over all pairs (any class, 64-224 px), median 116;
#     real brain MRI, distance from each file to its nearest file with other bytes (7019 files):
#       0-8 bits: 1293 files (re-encoded / re-windowed copies of one scan), 10: 30, 12: 41,
#       14: 50, 16: 68, 18: 70, 20: 93, 22: 137, 24: 167, rising to a bulk at 30-60; all pairs
#       with other bytes: 0.1th percentile 68, median 124. Looked at: pairs up to ~12 are one
#       scan with other contrast, crop or burned-in text; 14-30 are mostly neighbouring slices
#       of one study (same patient; a patient-grouped split would need them together too, raise
#       max_distance to ~20 to catch most of them).
# 12 is above every edited copy measured, at the valley of the real nearest-neighbour histogram,
# and far below any two different synthetic images (so the tests see no false positives).
HAMMING_THRESHOLD: int = 12

_HASH_SIZE = 64  # side of the grayscale thumbnail the DCT runs on
_LOW = 16  # keep the LOW x LOW lowest frequencies: LOW*LOW - 1 = 255 informative bits
HASH_BITS = _LOW * _LOW  # 256 (the top bit is always 0)
_WORDS = HASH_BITS // 64
_BLOCK = 512  # rows per block in the pairwise search (block x n uint64 temporaries) ...
_BLOCK_ELEMENTS = 4_000_000  # ... and at most this many (32 MB) per temporary

DUPLICATE_COLUMNS = ["group", "kind", "path", "label", "split", "exact_group", "distance",
                     "blake2b", "phash"]


@dataclass
class AuditResult:
    """What :func:`audit_index` found.

    ``duplicates``: one row per file that is in a group (columns :data:`DUPLICATE_COLUMNS`:
    group, kind, path (relative to the dataset root), label (class name), split (the dataset's
    own split folder or ""), exact_group, distance (Hamming distance of the file's pHash to the
    group's first file), blake2b, phash (64 hex digits)).
    ``summary``: counts (see the module docstring). ``seconds``: wall time.
    ``skipped``: files not (fully) hashed, with the reason.
    """

    duplicates: pd.DataFrame
    summary: dict
    seconds: float
    skipped: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))


# ------------------------------------------------------------------------- hashing
def phash_image(img: Image.Image) -> int:
    """256-bit DCT perceptual hash of a PIL image (any mode), as an int (bit 255 always 0)."""
    gray = to_rgb(img).convert("L")  # to_rgb: EXIF orientation, 16-bit rescale, alpha on black
    small = gray.resize((_HASH_SIZE, _HASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    coeffs = dctn(pixels, type=2, norm="ortho")[:_LOW, :_LOW].ravel()[1:]  # no DC
    bits = np.zeros(HASH_BITS, dtype=bool)
    bits[:-1] = coeffs > np.median(coeffs)
    return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def _words(values: list[int]) -> np.ndarray:
    """(n, HASH_BITS // 64) uint64 array of hashes, for vectorised distances."""
    raw = b"".join(v.to_bytes(HASH_BITS // 8, "little") for v in values)
    return np.frombuffer(raw, dtype="<u8").reshape(len(values), _WORDS).astype(np.uint64)


def _hash_file(path: Path) -> tuple[str | None, int | None, str]:
    """(blake2b hex or None, phash or None, reason when something failed)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, None, f"cannot read file ({type(exc).__name__}: {exc})"
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            # JPEG: decode straight to luma at a reduced scale (DCT-domain downscaling, ~2.5x
            # faster on 1024 px scans). Keeping >= 4x the thumbnail side (256 px) keeps the hash
            # within 0-2 bits of a full decode's (measured), so e.g. a PNG copy of a large JPEG
            # still matches it; images below 512 px are decoded in full.
            if img.format == "JPEG":
                img.draft("L", (4 * _HASH_SIZE, 4 * _HASH_SIZE))
            img.load()
            if min(img.size) < 1:
                return digest, None, "image has no pixels"
            return digest, phash_image(img), ""
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        return digest, None, f"cannot decode pixels ({type(exc).__name__}: {exc})"


def hash_files(paths: list[Path], workers: int | None = None, progress: bool = True
               ) -> list[tuple[str | None, int | None, str]]:
    """Hash ``paths`` with a thread pool (file reads, hashing, decoding and resizing release the
    GIL). ``workers`` defaults to min(4, cpu count); 1 hashes in this thread."""
    from tqdm.auto import tqdm

    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(paths), desc="hashing", unit="img", disable=not progress, leave=False)
    try:
        if workers <= 1 or len(paths) < 2:
            out = []
            for p in paths:
                out.append(_hash_file(p))
                bar.update()
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            out = []
            for r in pool.map(_hash_file, paths, chunksize=1):
                out.append(r)
                bar.update()
            return out
    finally:
        bar.close()


def hamming(a: int, b: int) -> int:
    return int((a ^ b).bit_count())


def near_pairs(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """All index pairs (i < j) with Hamming(hashes[i], hashes[j]) <= max_distance, as (k, 2).

    ``hashes``: (n, words) uint64 (or (n,) for 64-bit hashes). Vectorised: a block of rows
    XORs all later rows word by word, popcount, sum, threshold; no Python loop over pairs.
    Temporaries are at most 32 MB; 7k 256-bit hashes take ~0.3 s.
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    if h.ndim == 1:
        h = h[:, None]
    n = len(h)
    block = max(16, min(_BLOCK, _BLOCK_ELEMENTS // max(n, 1)))  # bounded memory for large n
    found = []
    for s in range(0, n, block):
        e = min(n, s + block)
        d = np.zeros((e - s, n - s), dtype=np.uint16)
        for w in range(h.shape[1]):
            d += np.bitwise_count(h[s:e, w, None] ^ h[None, s:, w])
        d[np.tril_indices(e - s, 0, n - s)] = np.iinfo(np.uint16).max  # only j > i
        i, j = np.nonzero(d <= max_distance)
        if len(i):
            found.append(np.stack([i + s, j + s], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def components(self) -> list[list[int]]:
        comps: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            comps.setdefault(self.find(i), []).append(i)
        return list(comps.values())


# ------------------------------------------------------------------------- audit
def audit_index(index: DataIndex, near: bool = True, max_distance: int = HAMMING_THRESHOLD,
                workers: int | None = None, progress: bool = True) -> AuditResult:
    """Find exact (and, with ``near``, near) duplicates among the usable files of ``index``."""
    t0 = time.perf_counter()
    frame = index.frame.reset_index(drop=True)
    paths = frame["path"].tolist()
    results = hash_files([index.abspath(p) for p in paths], workers=workers, progress=progress)

    keep, skipped = [], []
    for k, (digest, ph, reason) in enumerate(results):
        if digest is None:
            skipped.append((paths[k], reason))
            continue
        if ph is None:
            skipped.append((paths[k], reason + " (exact match only)"))
        keep.append(k)
    rows = frame.iloc[keep].reset_index(drop=True)
    digests = [results[k][0] for k in keep]
    phashes = [results[k][1] for k in keep]
    n = len(rows)

    uf = _UnionFind(n)
    by_digest: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        by_digest.setdefault(d, []).append(i)
    for members in by_digest.values():
        for m in members[1:]:
            uf.union(members[0], m)

    if near and n > 1:
        # one representative per distinct hash value: identical bytes (or identical hashes)
        # need not be compared twice
        by_hash: dict[int, list[int]] = {}
        for i, ph in enumerate(phashes):
            if ph is not None:
                by_hash.setdefault(ph, []).append(i)
        for members in by_hash.values():
            for m in members[1:]:
                uf.union(members[0], m)
        values = list(by_hash)
        reps = [by_hash[v][0] for v in values]
        if len(values) > 1:
            for a, b in near_pairs(_words(values), max_distance):
                uf.union(reps[a], reps[b])

    rel = rows["path"].tolist()
    labels = rows["class_name"].astype(str).tolist()
    splits = rows["source_split"].fillna("").astype(str).tolist()

    # byte-identical sets, numbered by first path
    exact_sets = sorted((sorted(m, key=rel.__getitem__) for m in by_digest.values() if len(m) > 1),
                        key=lambda m: rel[m[0]])
    exact_id = [-1] * n
    for gid, members in enumerate(exact_sets, start=1):
        for m in members:
            exact_id[m] = gid

    groups = sorted((sorted(c, key=rel.__getitem__) for c in uf.components() if len(c) > 1),
                    key=lambda c: rel[c[0]])
    out = []
    for gid, members in enumerate(groups, start=1):
        kind = "exact" if len({digests[m] for m in members}) == 1 else "near"
        first = phashes[members[0]]
        for m in members:
            dist = hamming(first, phashes[m]) if first is not None and phashes[m] is not None else -1
            out.append((gid, kind, rel[m], labels[m], splits[m], exact_id[m], dist, digests[m],
                        f"{phashes[m]:0{HASH_BITS // 4}x}" if phashes[m] is not None else ""))
    dup = pd.DataFrame(out, columns=DUPLICATE_COLUMNS)

    def spans(members: list[int], values: list[str]) -> bool:
        return len({values[m] for m in members}) > 1

    near_groups = [g for g in groups if len({digests[m] for m in g}) > 1]
    seconds = time.perf_counter() - t0
    summary = {
        "files": int(len(frame)),
        "exact_groups": len(exact_sets),
        "exact_files": sum(len(g) for g in exact_sets),
        "near_groups": len(near_groups),
        "near_files": sum(len(g) for g in near_groups),
        "groups": len(groups),
        "grouped_files": int(len(dup)),
        "groups_spanning_splits": sum(spans(g, splits) for g in groups),
        "groups_spanning_labels": sum(spans(g, labels) for g in groups),
        "exact_groups_spanning_splits": sum(spans(g, splits) for g in exact_sets),
        "exact_groups_spanning_labels": sum(spans(g, labels) for g in exact_sets),
        "near_groups_spanning_splits": sum(spans(g, splits) for g in near_groups),
        "near_groups_spanning_labels": sum(spans(g, labels) for g in near_groups),
        "has_splits": any(splits),
        "near": bool(near),
        "threshold": int(max_distance),
        "skipped": len(skipped),
        "seconds": round(seconds, 3),
    }
    return AuditResult(dup, summary, seconds, pd.DataFrame(skipped, columns=["path", "reason"]))


def audit_dataset(path: str | os.PathLike, dataset: str = "folder", **kw) -> AuditResult:
    """Locate ``path`` as dataset ``dataset``, index it and audit it (``kw`` go to
    :func:`audit_index`). ``seconds`` then includes scanning the folder."""
    t0 = time.perf_counter()
    spec = get_spec(dataset)
    index = build_index(spec, spec.locate(path))
    result = audit_index(index, **kw)
    result.seconds = time.perf_counter() - t0
    result.summary["seconds"] = round(result.seconds, 3)
    if len(index.bad_files):
        bad = index.bad_files.assign(reason="rejected by the index: " + index.bad_files["reason"])
        result.skipped = pd.concat([bad, result.skipped], ignore_index=True)
        result.summary["skipped"] = int(len(result.skipped))
    return result


def write_audit(result: AuditResult, out_dir: str | os.PathLike) -> Path:
    """Write the audit's duplicate groups and summary into ``out_dir`` (both atomically);
    return the groups' CSV path."""
    out_dir = Path(out_dir)
    csv = atomic_write(out_dir / rf.DUPLICATES, lambda p: result.duplicates.to_csv(p, index=False))
    atomic_write_json(out_dir / rf.AUDIT_SUMMARY, result.summary)
    return csv


def format_summary(result: AuditResult) -> str:
    """The human summary ``medtl data audit`` prints."""
    s = result.summary
    has_splits = s.get("has_splits", True)

    def span(prefix: str) -> str:
        parts = []
        if has_splits:
            parts.append(f"{s[prefix + 'spanning_splits']} span split folders")
        parts.append(f"{s[prefix + 'spanning_labels']} have conflicting labels")
        return ", ".join(parts)

    lines = [f"Audited {s['files']} files in {s['seconds']:.1f} s"
             + (f" (near = pHash distance <= {s['threshold']} of {HASH_BITS} bits)" if s.get("near", True)
                else " (exact only)") + "."]
    lines.append(f"  exact: {s['exact_groups']} groups of byte-identical files "
                 f"({s['exact_files']} files); {span('exact_groups_')}")
    if s.get("near", True):
        lines.append(f"  near:  {s['near_groups']} groups of resized/re-encoded/similar files "
                     f"({s['near_files']} files); {span('near_groups_')}")
    lines.append(f"  all:   {s['groups']} groups ({s['grouped_files']} files); {span('groups_')}")
    if s.get("skipped"):
        lines.append(f"  skipped: {s['skipped']} unreadable file(s) (see `medtl data check`)")
    if s["groups"] == 0:
        lines.append("No duplicates found: random or stratified splits will not leak copies.")
    else:
        hint = ("Training keeps each group inside one split by default (--group-by duplicates; "
                "--group-by none is the leaky image-level split)")
        if has_splits and s["groups_spanning_splits"]:
            hint += (f"; the dataset's own split folders share {s['groups_spanning_splits']} "
                     "groups, so scores on its test folder are inflated")
        if s["groups_spanning_labels"]:
            hint += "; review or drop groups with conflicting labels"
        lines.append(hint + ".")
    return "\n".join(lines)


def duplicate_groups(index: DataIndex, result: AuditResult) -> pd.Series:
    """A group key per row of ``index.frame`` for grouped splits.

    Starts from the index's own ``group`` column (e.g. a patient id) and merges, with
    union-find, every set of rows that share a base key or sit in one duplicate group of
    ``result`` (exact or near). The merged key is the smallest base key of the set, so a file
    that is in no duplicate group keeps its own key. ``result`` must come from the same index
    (paths relative to the same root).
    """
    frame = index.frame
    base = frame["group"].astype(str).tolist()
    uf = _UnionFind(len(frame))
    first_of_key: dict[str, int] = {}
    for i, key in enumerate(base):
        if key in first_of_key:
            uf.union(first_of_key[key], i)
        else:
            first_of_key[key] = i
    pos = {p: i for i, p in enumerate(frame["path"].tolist())}
    for _, members in result.duplicates.groupby("group", sort=False)["path"]:
        idx = [pos[p] for p in members if p in pos]
        for m in idx[1:]:
            uf.union(idx[0], m)
    key_of_root: dict[int, str] = {}
    for i, key in enumerate(base):
        r = uf.find(i)
        if r not in key_of_root or key < key_of_root[r]:
            key_of_root[r] = key
    return pd.Series([key_of_root[uf.find(i)] for i in range(len(frame))], index=frame.index,
                     name="group")
