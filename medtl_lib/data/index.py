"""Scan a dataset into one DataFrame (path, label, class_name, source_split, group) and report
every file that cannot be used, by path."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image

from .images import BadImageError, load_rgb
from .catalogue import DatasetLayoutError, DatasetSpec

INDEX_COLUMNS = ["path", "label", "class_name", "source_split", "group", "width", "height", "mode"]


@dataclass
class DataIndex:
    """Everything known about a dataset on disk after one scan."""

    spec: DatasetSpec
    root: Path
    class_names: list[str]
    frame: pd.DataFrame  # usable images, one row each; ``path`` is relative to ``root``
    bad_files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))

    def counts(self) -> pd.DataFrame:
        """Images per class (rows) and per source split (columns), as people read it."""
        df = self.frame
        col = df["source_split"].replace("", "all")
        table = pd.crosstab(df["class_name"], col).reindex(self.class_names, fill_value=0)
        table["total"] = table.sum(axis=1)
        return table

    def abspath(self, rel: str) -> Path:
        return self.root / rel


def scan_images(spec: DatasetSpec, root: Path, decode: bool = False
                ) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every image of ``root`` (as returned by ``spec.locate``) and every unreadable file, nothing
    refused yet (``medtl data check`` reports all problems at once from this).

    ``decode=False`` reads only each header (fast: catches empty, non-image and most corrupt
    files); ``decode=True`` decodes every pixel, as ``medtl data check`` does.
    """
    rows, bad = [], []
    for rec in spec.scan(root):
        rel = rec.path.relative_to(root).as_posix()
        try:
            if decode:
                img = load_rgb(rec.path)
                size, mode = img.size, _header_mode(rec.path)
            else:
                size, mode = _header(rec.path)
        except BadImageError as exc:
            bad.append((rel, exc.reason))
            continue
        rows.append((rel, rec.class_name, rec.source_split, rec.group, size[0], size[1], mode))
    frame = pd.DataFrame(rows, columns=["path", "class_name", "source_split", "group",
                                        "width", "height", "mode"])
    return frame, bad


def build_index(spec: DatasetSpec, root: Path, decode: bool = False) -> DataIndex:
    """Scan ``root`` (see :func:`scan_images`) and refuse what cannot be trained on."""
    frame, bad = scan_images(spec, root, decode)
    class_names = spec.class_names(root)
    if not class_names:
        raise DatasetLayoutError(
            f"{root}: no class folders found. Expected one subfolder per class with images "
            "inside (e.g. root/benign/1.png, root/malignant/2.png).")
    empty = [c for c in class_names if not (frame["class_name"] == c).any()]
    if empty:
        raise DatasetLayoutError(
            f"{root}: class(es) {empty} have no usable images"
            + (f" ({len(bad)} unreadable file(s), e.g. {bad[0][0]}: {bad[0][1]})" if bad else "")
            + ". Every class needs images: add them, or remove the empty folder.")
    if len(class_names) < 2:
        raise DatasetLayoutError(
            f"{root}: only one class ({class_names}) found; classification needs at least two "
            "class folders side by side.")
    frame.insert(1, "label", frame["class_name"].map({c: i for i, c in enumerate(class_names)}))
    frame = frame[INDEX_COLUMNS].reset_index(drop=True)
    return DataIndex(spec, root, class_names, frame, pd.DataFrame(bad, columns=["path", "reason"]))


def _header(path: Path) -> tuple[tuple[int, int], str]:
    try:
        if path.stat().st_size == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with Image.open(path) as img:
            if min(img.size) < 1:
                raise BadImageError(path, "image has no pixels")
            return img.size, img.mode
    except BadImageError:
        raise
    except Exception as exc:  # PIL raises a zoo of types for broken headers
        raise BadImageError(path, f"unreadable image header ({type(exc).__name__}: {exc})") from None


def _header_mode(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode
