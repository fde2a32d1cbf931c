"""Train/val/test assignment: the paper's stratified 0.8/0.1/0.1, or the dataset's own test
folder. The split is part of the result, so it is saved with every run and can be reloaded."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from ..utils import atomic_write

SPLITS = ("train", "val", "test", "excluded")


def stratified_split(frame: pd.DataFrame, val_frac: float = 0.1, test_frac: float = 0.1,
                     seed: int = 42) -> pd.Series:
    """Split label-stratified into train/val/test with fixed fractions (seed 000's protocol)."""
    _check_fracs(val_frac, test_frac)
    idx = frame.index.to_numpy()
    labels = frame["label"].to_numpy()
    rest, test = train_test_split(idx, test_size=test_frac, stratify=labels, random_state=seed)
    rel_val = val_frac / (1.0 - test_frac)
    train, val = train_test_split(rest, test_size=rel_val, stratify=frame.loc[rest, "label"],
                                  random_state=seed)
    return _assign(frame, train, val, test)


def grouped_split(frame: pd.DataFrame, groups: pd.Series, val_frac: float = 0.1,
                  test_frac: float = 0.1, seed: int = 42) -> pd.Series:
    """Like :func:`stratified_split`, but every group (duplicates, a patient) stays in one split.

    Without any group of two or more images this *is* the stratified split, so grouping changes
    nothing on clean data. Otherwise sklearn's StratifiedGroupKFold cuts one fold of about
    ``test_frac`` for test, then one of about ``val_frac`` (of the whole) from the rest for val.
    """
    _check_fracs(val_frac, test_frac)
    if groups.value_counts().max() <= 1:
        return stratified_split(frame, val_frac, test_frac, seed)
    idx = frame.index.to_numpy()
    test = _group_fold(idx, frame["label"].to_numpy(), groups.to_numpy(), round(1 / test_frac), seed)
    rest = idx[~frame.index.isin(test)]
    val = _group_fold(rest, frame.loc[rest, "label"].to_numpy(), groups.loc[rest].to_numpy(),
                      round((1 - test_frac) / val_frac), seed)
    train = rest[~pd.Index(rest).isin(val)]
    return _assign(frame, train, val, test)


def _group_fold(idx, labels, groups, n_splits: int, seed: int):
    folds = StratifiedGroupKFold(n_splits=max(2, n_splits), shuffle=True, random_state=seed)
    _, held_out = next(folds.split(idx, labels, groups))
    return idx[held_out]


def predefined_split(frame: pd.DataFrame, test_folder: str, val_frac: float = 0.1,
                     seed: int = 42, groups: pd.Series | None = None) -> pd.Series:
    """Test = the dataset's own test folder; val is a stratified ``val_frac`` of the rest.

    With ``groups``, images outside the test folder that share a group with a test image are
    'excluded' (the test folder is fixed, so their copies cannot move), and val is grouped too.
    """
    is_test = frame["source_split"].str.lower() == test_folder.lower()
    if not is_test.any():
        raise ValueError(f"split='predefined' needs a '{test_folder}' folder; none of the images "
                         "came from one. Use split='stratified'.")
    excluded = frame.index[0:0].to_numpy()
    if groups is not None:
        leaks = ~is_test & groups.isin(set(groups[is_test]))
        excluded = frame.index[leaks].to_numpy()
        is_rest = ~is_test & ~leaks
    else:
        is_rest = ~is_test
    rest = frame.index[is_rest].to_numpy()
    if groups is not None and groups[is_rest].value_counts().max() > 1:
        val = _group_fold(rest, frame.loc[rest, "label"].to_numpy(), groups.loc[rest].to_numpy(),
                          round(1 / val_frac), seed)
        train = rest[~pd.Index(rest).isin(val)]
    else:
        train, val = train_test_split(rest, test_size=val_frac, stratify=frame.loc[rest, "label"],
                                      random_state=seed)
    split = _assign(frame, train, val, frame.index[is_test].to_numpy())
    split.loc[excluded] = "excluded"
    return split


def fold_split(frame: pd.DataFrame, n_splits: int, random_state: int, val_fold: int,
               test_folds: tuple[int, ...], groups: pd.Series | None = None) -> pd.Series:
    """A paper's own k-fold split: fold ``val_fold`` is validation, ``test_folds`` are test, the
    rest train (seed 002: StratifiedKFold(5, shuffle=True, random_state=1), val 0, test 1 on
    BreaKHis). With ``groups`` the same folds are cut by StratifiedGroupKFold, so that no group
    (patient, duplicate) spans two splits: the leakage-free twin of the paper's image-level
    split."""
    from sklearn.model_selection import StratifiedKFold

    idx = frame.index.to_numpy()
    labels = frame["label"].to_numpy()
    if groups is None or groups.value_counts().max() <= 1:  # no group to keep: the paper's folds
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        parts = [held for _, held in folds.split(idx, labels)]
    else:
        folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        parts = [held for _, held in folds.split(idx, labels, groups.to_numpy())]
    val = idx[parts[val_fold]]
    test = idx[[i for k in test_folds for i in parts[k]]]
    taken = set(val) | set(test)
    train = [i for i in idx if i not in taken]
    return _assign(frame, train, val, test)


def _assign(frame: pd.DataFrame, train, val, test) -> pd.Series:
    split = pd.Series("", index=frame.index, name="split")
    split.loc[train], split.loc[val], split.loc[test] = "train", "val", "test"
    return split


def _check_fracs(val_frac: float, test_frac: float) -> None:
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 1):
        raise ValueError(f"val_frac ({val_frac}) and test_frac ({test_frac}) must be in (0, 1) "
                         "and sum to less than 1")


def save_split(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write the manifest (path, label, class_name, split, group) atomically."""
    cols = ["path", "label", "class_name", "split", "group", "source_split"]
    return atomic_write(path, lambda p: frame[cols].to_csv(p, index=False))


def load_split(path: str | Path, frame: pd.DataFrame) -> pd.Series:
    """Re-apply a saved manifest to a fresh index; every file must still be there."""
    saved = pd.read_csv(path, dtype={"path": str, "split": str}, keep_default_na=False)
    bad = set(saved["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{path}: unknown split names {sorted(bad)}")
    mapping = dict(zip(saved["path"], saved["split"]))
    present = set(frame["path"])
    missing = [p for p in saved["path"] if p not in present]
    if missing:
        raise ValueError(f"{path} lists {len(missing)} file(s) that are not in the dataset now "
                         f"(e.g. {missing[0]}); the data changed since the split was made. "
                         "Start a new run folder or restore the files.")
    split = frame["path"].map(mapping).fillna("")
    if (split == "").any():
        n = int((split == "").sum())
        raise ValueError(f"{path} does not cover {n} image(s) of the dataset (e.g. "
                         f"{frame.loc[split == '', 'path'].iloc[0]}); the data changed since the "
                         "split was made.")
    return split.rename("split")
