"""A run's data: scan the dataset, apply the bad-file policy and split it, recording the split in
the run folder so a resumed run trains on the same images. Moved out of train_run so a bench, a
test or a notebook prepares data exactly as a run does without the run's lifecycle."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .. import run_folder as rf
from ..utils import atomic_write, atomic_write_json
from .catalogue import get_spec
from .index import DataIndex, build_index
from .splits import (fold_split, grouped_split, load_split, predefined_split, save_split,
                     stratified_split)

if TYPE_CHECKING:  # the config layer sits above data: for annotations only
    from ..config import RunConfig


class SmallClassError(ValueError):
    """A class has too few images to appear in every split."""


def prepare_data(cfg: RunConfig, out: Path | None = None) -> DataIndex:
    """Scan the dataset, apply the bad-file policy and attach a ``split`` column.

    The split comes from, in order: the run folder's own split (resume), ``cfg.split_csv``,
    the dataset's test folder (``split='predefined'``), or the paper's stratified 0.8/0.1/0.1.
    By default (``group_by='duplicates'``) every group of duplicate images stays inside one
    split; the run folder records the grouping, the duplicate groups, and each image's group in
    its split's ``group`` column (file names: medtl_lib.run_folder).
    """
    spec = get_spec(cfg.dataset)
    root = spec.find(cfg.data_dir)
    index = build_index(spec, root, decode=True)  # seconds for these sets; finds truncated files
    if len(index.bad_files):
        if out is not None:
            atomic_write(out / rf.BAD_FILES, lambda p: index.bad_files.to_csv(p, index=False))
        msg = (f"{len(index.bad_files)} unreadable image(s) in {root}, e.g. "
               f"{index.bad_files.iloc[0]['path']}: {index.bad_files.iloc[0]['reason']}")
        if cfg.strict:
            raise ValueError(msg + ". Remove or fix them (medtl data check lists all), or run "
                             "without --strict to skip them.")
        warnings.warn(msg + (f"; skipped, listed in {out / rf.BAD_FILES}" if out else "; skipped"),
                      stacklevel=2)
    frame = index.frame
    own = out / rf.SPLIT if out is not None else None
    resuming = own is not None and own.is_file()
    if resuming:
        split = load_split(own, frame)
    elif cfg.split_csv:
        split = load_split(cfg.split_csv, frame)
    else:
        _check_splittable(frame, spec.test_folder if cfg.split == "predefined" else "")
        groups = split_groups(index, cfg.group_by, out)
        if groups is not None:
            frame = frame.assign(group=groups)
        if cfg.split == "folds":
            if not spec.folds:
                raise ValueError(f"dataset '{cfg.dataset}' has no folds of its paper; use "
                                 "split='stratified' or 'predefined'")
            n, state, val_fold, test_folds = spec.folds
            split = fold_split(frame, n, state, val_fold, tuple(test_folds), groups)
        elif cfg.split == "predefined":
            if not spec.test_folder:
                raise ValueError(f"dataset '{cfg.dataset}' has no predefined test folder; "
                                 "use split='stratified'")
            split = predefined_split(frame, spec.test_folder, cfg.val_frac, cfg.seed, groups)
        elif groups is not None:
            split = grouped_split(frame, groups, cfg.val_frac, cfg.test_frac, cfg.seed)
        else:
            split = stratified_split(frame, cfg.val_frac, cfg.test_frac, cfg.seed)
        if out is not None:
            info = _grouping_info(cfg.group_by, groups, split)
            if spec.group_required and cfg.group_by != "none":
                info["dataset_groups"] = "kept together (the dataset requires it: " \
                    "several images of one lesion or patient)"
            atomic_write_json(out / rf.SPLIT_INFO, info)
    index.frame = frame.assign(split=split)
    small = small_classes(index.frame, index.class_names)
    if small and not cfg.allow_small_classes:
        raise SmallClassError(
            "too few images for a train / validation / test split: "
            + "; ".join(f"class '{c}' ({n['total']} image(s): train {n['train']}, val "
                        f"{n['val']}, test {n['test']})" for c, n in small.items())
            + ". Every class needs at least one image in each split (with the 0.8/0.1/0.1 "
            "split, about 10 images). Add images, remove the class folder, or pass "
            "--allow-small-classes (allow_small_classes=True) to train anyway; the run then "
            f"records the classes in {rf.METRICS} and their test metrics mean little.")
    if own is not None and not resuming:
        save_split(index.frame, own)
    return index


def _check_splittable(frame: pd.DataFrame, test_folder: str) -> None:
    """A class with one image cannot be stratified at all (sklearn would stop with a label
    index); say which class, before any split is tried."""
    part = frame
    if test_folder:  # the predefined split draws validation images from the other folders
        part = frame[frame["source_split"].str.lower() != test_folder.lower()]
    counts = part["class_name"].value_counts()
    lonely = [f"'{c}' ({int(n)} image)" for c, n in counts.items() if n < 2]
    if lonely:
        raise SmallClassError(
            f"class {', '.join(lonely)} cannot be split into train, validation and test "
            f"{'(outside the test folder) ' if test_folder else ''}with one image. Add images "
            "(about 10 per class for the 0.8/0.1/0.1 split) or remove the class folder.")


def small_classes(frame: pd.DataFrame, class_names: list[str]) -> dict[str, dict[str, int]]:
    """Classes missing from the train, val or test split, with their counts per split."""
    counts = pd.crosstab(frame["class_name"], frame["split"])
    out = {}
    for c in class_names:
        n = {s: int(counts.loc[c, s]) if c in counts.index and s in counts.columns else 0
             for s in ("train", "val", "test")}
        if min(n.values()) == 0:
            out[c] = {**n, "total": sum(n.values())}
    return out


def split_groups(index: DataIndex, group_by: str, out: Path | None = None) -> pd.Series | None:
    """What must stay together in one split: copies of an image (exact or near duplicates, found
    by the leakage audit) and, with 'patient' or for a dataset whose spec requires it
    (HAM10000: one lesion, several images), everything of one patient or lesion. None for 'none' (the image-level split that leaks duplicates)."""
    if group_by == "none":
        return None
    from .audit import audit_index, duplicate_groups, write_audit

    keep = group_by == "patient" or index.spec.group_required  # e.g. HAM10000's lesions
    base = index if keep else dataclasses.replace(
        index, frame=index.frame.assign(group=index.frame["path"]))
    audit = audit_index(base, progress=False)
    if out is not None:
        write_audit(audit, out)
    return duplicate_groups(base, audit)


def _grouping_info(group_by: str, groups: pd.Series | None, split: pd.Series) -> dict:
    """Recorded with the run: which grouping made the split and how much it merged."""
    info: dict = {"group_by": group_by, "splits": split.value_counts().to_dict()}
    if groups is not None:
        sizes = groups.value_counts()
        info.update(groups=int(sizes.size), merged_groups=int((sizes > 1).sum()),
                    images_in_merged_groups=int(sizes[sizes > 1].sum()))
    return info


def leaked_test_images(split: pd.DataFrame, duplicates: pd.DataFrame) -> int:
    """Test images whose duplicate group also has a member in train or val: the leak.

    ``split``: a run's split manifest (path, split); ``duplicates``: the audit's (group, path).
    """
    group_of = dict(zip(duplicates["path"].astype(str), duplicates["group"].astype(str)))
    g = split["path"].astype(str).map(lambda p: group_of.get(p, "file:" + p))
    outside = set(g[split["split"].isin(["train", "val"])])
    return int((split["split"].eq("test") & g.isin(outside)).sum())
