"""Checkpoint files that are verified before they are trusted.

Every checkpoint a run writes (the resume checkpoint, theta* and each stage's best; names in
:mod:`medtl_lib.run_folder`) gets its SHA-256 recorded in the run folder's checkpoint record;
loading one checks it, so a file cut short by a full disk or a copy, or damaged later, is named
instead of surfacing as a raw zip-reader error (or, for a finished run's theta*, not at all).
The resume checkpoint is kept one generation back: a damaged one resumes from the epoch before.

The record is written *before* the file is renamed into place and lists the new and the previous
digest of each name, so a kill between any two steps leaves a file whose digest is on record.
This module sits at the bottom layer, beside run_folder, so that models (rebuilding a run's
theta*) and training (resuming) both read checkpoints through it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import run_folder as rf
from .utils import atomic_write, atomic_write_json

RECORD = rf.CHECKPOINT_RECORD
PREVIOUS = {rf.LAST: rf.LAST_PREVIOUS}  # names kept one generation back


class CorruptCheckpointError(ValueError):
    """A checkpoint file does not match its recorded digest or cannot be read."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a file-size limit, a read-only folder)."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def recorded(folder: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((folder / RECORD).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_checkpoint(path: str | os.PathLike, obj: Any) -> Path:
    """torch.save ``obj`` atomically with its digest on record; a name in :data:`PREVIOUS` keeps
    its previous version under that name."""
    import torch

    path = Path(path)

    def write(tmp: Path) -> None:
        try:
            torch.save(obj, tmp)
        except (RuntimeError, OSError) as exc:  # torch reports a full disk as a RuntimeError
            raise CheckpointWriteError(
                f"{path} could not be written ({' '.join(str(exc).split())[:160]}): is the disk "
                "full? The previous checkpoint is kept; free space and rerun the same command to "
                "resume") from None
        digest = sha256(tmp)
        record = recorded(path.parent)
        previous = PREVIOUS.get(path.name)
        if previous and path.is_file():  # the file moved there is one of these two
            record[previous] = record.get(path.name, [])
        record[path.name] = [digest] + record.get(path.name, [])[:1]
        atomic_write_json(path.parent / RECORD, record)
        if previous and path.is_file():
            os.replace(path, path.parent / previous)

    return atomic_write(path, write)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` (weights only, to the CPU) after checking the digest on record. A file
    written before digests were recorded is loaded as is, its read errors named."""
    import torch

    path = Path(path)
    known = recorded(path.parent).get(path.name)
    if known is not None and sha256(path) not in known:
        raise CorruptCheckpointError(
            f"{path} is damaged: its SHA-256 matches none recorded in {path.parent / RECORD} "
            f"({path.stat().st_size:,} bytes now; cut short by a full disk or a copy?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptCheckpointError(f"{path} cannot be read ({' '.join(str(exc).split())[:160]})"
                                     ) from None


def forget(folder: Path, *names: str) -> None:
    """Delete checkpoints that are no longer needed, with their record."""
    record = recorded(folder)
    for name in names:
        (folder / name).unlink(missing_ok=True)
        record.pop(name, None)
    if (folder / RECORD).is_file():
        atomic_write_json(folder / RECORD, record)
