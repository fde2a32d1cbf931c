"""``medtl data check``: what a dataset folder holds and *everything* wrong with it, in one report
and one exit code (0: usable, 1: not usable as it is).

Problems are collected, not raised one at a time: a user fixing a folder should see the empty
class, all unreadable files, the class folders that differ only in case, the DICOM files the kit
skips, the classes too small to split and the images filed under two classes in one pass.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .images import IMAGE_EXTENSIONS, is_image_file
from .index import scan_images
from .catalogue import SKIP_DIRS, DatasetLayoutError, DatasetNotFoundError, get_spec

#: a class with fewer images is likely missing from the validation or test split (0.8/0.1/0.1)
MIN_PER_CLASS = 10
#: formats people bring that the kit does not read, with what to do
UNSUPPORTED = {".dcm": "DICOM: convert to PNG first (e.g. pydicom + Pillow)",
               ".dicom": "DICOM: convert to PNG first (e.g. pydicom + Pillow)",
               ".nii": "NIfTI volumes: export 2-D slices as PNG first",
               ".gz": "compressed (.nii.gz?): export 2-D slices as PNG first",
               ".mha": "MetaImage volumes: export 2-D slices as PNG first",
               ".nrrd": "NRRD volumes: export 2-D slices as PNG first",
               ".jp2": "JPEG 2000: convert to PNG first",
               ".heic": "HEIC: convert to JPEG or PNG first",
               ".svs": "whole-slide images: extract tiles as PNG first"}


@dataclass
class Problem:
    fatal: bool  # True: training refuses the folder as it is
    kind: str
    message: str


def find_problems(spec, root: Path, frame, bad: list[tuple[str, str]], audit: bool = True
                  ) -> list[Problem]:
    """Every problem of a scanned dataset folder, fatal ones first."""
    out: list[Problem] = []
    class_names = spec.class_names(root)
    counts = frame["class_name"].value_counts()
    if not class_names:
        out.append(Problem(True, "no classes", "no class folders: expected one subfolder per "
                           "class with images inside"))
    elif len(class_names) < 2:
        out.append(Problem(True, "one class", f"only one class ({class_names[0]}); "
                           "classification needs at least two class folders"))
    for c in class_names:
        if counts.get(c, 0) == 0:
            out.append(Problem(True, "empty class", f"class '{c}' has no usable image: add "
                               "images or remove its folder"))
    twins = _case_twins(root)
    for names in twins:
        out.append(Problem(True, "case twins", f"folders {', '.join(names)} differ only in case: "
                           "one class filed twice (merge them), or two classes a reader cannot "
                           "tell apart (rename one)"))
    for c in class_names:
        n = int(counts.get(c, 0))
        if 0 < n < MIN_PER_CLASS:
            out.append(Problem(False, "small class", f"class '{c}' has {n} image(s): with the "
                               "0.8/0.1/0.1 split it may miss the validation or test split, and "
                               "training then refuses it (unless --allow-small-classes)"))
    for rel, reason in bad:
        out.append(Problem(False, "unreadable", f"{rel}: {reason} (skipped; stops a --strict run)"))
    for ext, files in sorted(_unsupported(root).items()):
        out.append(Problem(False, "unsupported format",
                           f"{len(files)} {ext} file(s) skipped, e.g. {files[0]}: "
                           f"{UNSUPPORTED.get(ext, 'not an image format the kit reads')}"))
    if audit and len(frame):
        out.extend(_conflicting_labels(root, frame))
    return sorted(out, key=lambda p: not p.fatal)


def _case_twins(root: Path) -> list[list[str]]:
    """Sibling folders whose names differ only in case, anywhere below ``root``."""
    twins = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_DIRS]
        by_lower: dict[str, list[str]] = {}
        for d in dirnames:
            by_lower.setdefault(d.lower(), []).append(d)
        rel = Path(dirpath).relative_to(root)
        twins += [[f"'{(rel / n).as_posix()}/'" for n in sorted(v)]
                  for v in by_lower.values() if len(v) > 1]
    return twins


def _unsupported(root: Path) -> dict[str, list[str]]:
    """Files the scan skips because their extension is not an image's (system files aside)."""
    found: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d.lower() not in SKIP_DIRS]
        for fn in filenames:
            ext = os.path.splitext(fn)[1].lower()
            if is_image_file(fn) or fn.startswith(".") or fn.lower() in ("thumbs.db",) \
                    or ext in IMAGE_EXTENSIONS or ext in (".csv", ".txt", ".md", ".json", ""):
                continue
            found.setdefault(ext, []).append((Path(dirpath) / fn).relative_to(root).as_posix())
    return found


def _conflicting_labels(root: Path, frame) -> list[Problem]:
    """Byte-identical images filed under two classes (label noise the split cannot fix)."""
    import hashlib

    by_digest: dict[str, list[tuple[str, str]]] = {}
    for rel, cls in zip(frame["path"], frame["class_name"]):
        digest = hashlib.blake2b((root / rel).read_bytes(), digest_size=16).hexdigest()
        by_digest.setdefault(digest, []).append((cls, rel))
    return [Problem(False, "conflicting labels", "identical files in classes "
                    + ", ".join(f"'{c}' ({p})" for c, p in group))
            for group in by_digest.values() if len({c for c, _ in group}) > 1]


def check_dataset(path: str, dataset: str = "folder", out=print, audit: bool = True) -> int:
    """Decode every image; print counts per class and every problem. 0: usable, 1: not usable."""
    spec = get_spec(dataset)
    try:
        root = spec.locate(path)
    except (DatasetLayoutError, DatasetNotFoundError) as exc:
        out(f"NOT USABLE: {exc}")
        return 1
    try:
        frame, bad = scan_images(spec, root, decode=True)
        problems = find_problems(spec, root, frame, bad, audit)
    except DatasetLayoutError as exc:  # e.g. a spec's class folders that cannot be matched
        out(f"NOT USABLE: {exc}")
        return 1
    out(f"{spec.title}\nroot: {root}\n")
    if len(frame):
        by = ["class_name"] + (["source_split"] if frame["source_split"].ne("").any() else [])
        out(frame.groupby(by).size().rename("images").to_string())
    out(f"\n{len(frame)} usable images, {frame['class_name'].nunique()} classes")
    if spec.paper_count:
        out(f"the paper reports {spec.paper_count} images")
    if len(frame):
        sizes = frame.groupby(["width", "height"]).size().sort_values(ascending=False)
        out(f"modes: {frame['mode'].value_counts().to_dict()}; most common sizes: "
            + ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.head(3).items()))
    if not problems:
        out("no problems found")
        return 0
    kinds = Counter(p.kind for p in problems)
    fatal = [p for p in problems if p.fatal]
    out(f"\n{len(problems)} problem(s) ({', '.join(f'{n} {k}' for k, n in kinds.items())}):")
    for p in problems:
        out(f"  {'ERROR' if p.fatal else 'warning'} [{p.kind}] {p.message}")
    out("\nNOT USABLE as it is: fix the errors above." if fatal else
        "\nusable: the warnings above are skipped files or risks to the numbers")
    return 1 if fatal else 0
