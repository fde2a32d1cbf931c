"""Small shared helpers: atomic writes and seeding. Nothing here holds state."""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename tmp onto ``path``.

    A kill at any moment leaves either the old file or the new one, never a torn file that a
    resumed run would trust.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so CPU runs repeat exactly."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def medtl_cache_dir(kind: str) -> Path:
    """Where reusable derived files live: ``$MEDTL_CACHE_DIR/<kind>``, else ``~/.cache/medtl``.

    One root for converted weights and decoded-image caches, so one variable moves (or one
    ``rm -r`` clears) everything the kit can rebuild.
    """
    base = os.environ.get("MEDTL_CACHE_DIR") or Path.home() / ".cache" / "medtl"
    return Path(base) / kind


def iterate_with_bar(iterable: Iterable, total: int | None = None, desc: str = "",
                     enabled: bool = True, **tqdm_kwargs) -> Iterator:
    """Yield from ``iterable`` while a tqdm bar counts the items; the bar never sees the iterable.

    Why not ``tqdm(loader)``: ``tqdm.auto`` (its asyncio variant) calls ``iter()`` on what it
    wraps as soon as it is built. For a DataLoader that makes a throwaway iterator every epoch,
    which starts its worker processes and draws a seed from its generator, shifting the shuffle
    order away from that of the same loader iterated plainly.
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, disable=not enabled, **tqdm_kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
