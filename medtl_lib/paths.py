"""Where the kit's own folders are, independent of the working directory.

Why: a notebook opened from `jupyter lab notebooks/` runs in notebooks/, `jupyter lab` from the root
runs in the root, and papermill runs wherever it is told. A relative path such as `runs/smoke` must
mean the same folder in all three, so relative paths in parameters are the repository's.

`MEDTL_WORKDIR` moves that base elsewhere: a teacher's read-only install where each student writes
runs and stand-ins into a folder of their own, and tests that must not write into the checkout.
"""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this library was imported from; the working directory for an installed copy
    without notebooks beside it (then relative paths keep their usual meaning)."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "notebooks").is_dir() and (here / "medtl_lib").is_dir() else Path.cwd()


def workdir() -> Path:
    """The base of relative paths: $MEDTL_WORKDIR when set, else the repository root."""
    env = os.environ.get("MEDTL_WORKDIR")
    return Path(os.path.expanduser(env)).resolve() if env else repo_root()


def in_repo(path: str | os.PathLike) -> Path:
    """An absolute path as given; a relative one under :func:`workdir`. `~` is expanded."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else workdir() / p
