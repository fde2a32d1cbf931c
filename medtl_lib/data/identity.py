"""What data a run folder was trained on, so that a rerun on other data is refused instead of
answered with the old data's results.

The identity is the dataset's content as the kit sees it: every image's path relative to the
dataset root, its class and its size in bytes, hashed. It does not depend on where the folder
lives (a run copied to another machine with the data elsewhere still resumes) nor on decoding,
so it is computed from a directory scan in well under a second for these datasets.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from .. import run_folder as rf
from ..utils import atomic_write_json
from .catalogue import DatasetSpec

IDENTITY_FILE = rf.DATA_IDENTITY


class RunDataMismatchError(ValueError):
    """The run folder holds a run trained on other data."""


def data_identity(spec: DatasetSpec, root: Path) -> dict:
    """``{"root", "images", "per_class", "digest"}`` of the dataset at ``root``."""
    lines, per_class = [], Counter()
    for rec in spec.scan(root):
        rel = rec.path.relative_to(root).as_posix()
        lines.append(f"{rel}\t{rec.class_name}\t{rec.source_split}\t{rec.path.stat().st_size}")
        per_class[rec.class_name] += 1
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]
    return {"root": str(root), "images": len(lines), "per_class": dict(sorted(per_class.items())),
            "digest": digest}


def saved_identity(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / IDENTITY_FILE).read_text())
    except (OSError, ValueError):
        return None


def save_identity(run_dir: Path, identity: dict) -> None:
    atomic_write_json(run_dir / IDENTITY_FILE, identity)


def describe_difference(old: dict, new: dict) -> str:
    """What changed, in words a user can act on."""
    parts = [f"{old['images']} image(s) at {old['root']} then, {new['images']} at {new['root']} now"]
    a, b = old.get("per_class", {}), new.get("per_class", {})
    changed = [f"{c}: {a.get(c, 0)} -> {b.get(c, 0)}" for c in sorted(set(a) | set(b))
               if a.get(c, 0) != b.get(c, 0)]
    if changed:
        parts.append("per class " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else ""))
    else:
        parts.append("same counts per class, but files differ (renamed, replaced or edited)")
    return "; ".join(parts)
