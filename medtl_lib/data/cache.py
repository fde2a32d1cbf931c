"""A decoded-image cache: every image decoded once, stored as uint8 in one memory-mapped file.

Why: decoding a JPEG costs a few ms of CPU per image, so 2-4 cores cannot keep a GPU busy when
every epoch decodes every file again. Here each image is decoded once, resized so its short side
is ``size`` and centre-cropped to ``size x size``, and all images go into one ``.npy`` file that
epochs then read as a memory map (page cache, no decoding). Random crops, flips and normalisation
happen afterwards on whole batches, on the device (:mod:`medtl_lib.data.gpu_aug`).

Stored size (:func:`cache_size`): at least ``floor(img_size / crop_pct)`` (256 for 224 at timm's
default crop_pct 0.875), the size timm's eval transform resizes to before its centre crop, and, where
the images have the pixels, up to ``ceil(img_size / sqrt(crop_scale_min))``, so that random crops
are scaled down to the model's input as in the per-image pipeline, not up. So

* eval: a centre crop from the cache is timm's resize + centre crop (exactly so when the cache is
  stored at ``floor(img_size / crop_pct)``, else up to one antialiased resize);
* train: random-resized crops are drawn from that square instead of the original image. Crop
  areas keep their meaning (a fraction of the stored image), but content outside the centre square
  of a non-square image is never seen. For the square or near-square scans in the kit's datasets
  that is a small change.

The cache file is ``cache_dir/<key>.npy`` with a JSON sidecar ``<key>.json``; the key hashes every
file's relative path, byte size and mtime together with the stored size, interpolation and format
version, so any changed, added or removed file gives a new key (the old file is left for the user
to delete). The ``.npy`` is written under a temporary name and renamed when complete: a killed
build never leaves a file that looks finished.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

from ..faults import point as fault_point
from ..utils import atomic_write_json
from .images import BadImageError, load_rgb
from .batches import drop_single_last

FORMAT_VERSION = 1
_CHUNK = 32  # images per worker task: big enough to amortise IPC, small enough for smooth progress

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def stored_size(img_size: int, crop_pct: float | None = 0.875) -> int:
    """Side of the cached square for a model input of ``img_size``.

    ``floor(img_size / crop_pct)``, timm's eval rule (``transforms_imagenet_eval``), so the eval
    centre crop from the cache equals timm's eval transform and random-resized-crop areas are
    fractions of the same field of view. floor rather than round: that is what timm does.
    """
    pct = crop_pct or 0.875
    return int(math.floor(img_size / pct))


def cache_size(img_size: int, crop_scale_min: float, short_sides: Sequence[int] | np.ndarray,
               crop_pct: float | None = 0.875) -> int:
    """Side of the cached square for a run at ``img_size`` on images with these short sides.

    Never below :func:`stored_size` (eval needs that field of view at that resolution). Above it
    up to ``ceil(img_size / sqrt(crop_scale_min))``: then a square crop of the smallest area still
    has ``img_size`` pixels a side, so training crops are downscaled as in the per-image pipeline.
    Measured on brain MRI at 128 px (EfficientNet-Lite0, 3 epochs, 2 seeds): a cache of only
    ``stored_size`` (146 px) gave 1.1 to 1.6 points lower test accuracy than the per-image
    pipeline, the training crops being upscaled and blurrier than the test images. Never above
    the images' median short side either: upsampling into the cache adds no detail, only bytes.
    """
    lo = stored_size(img_size, crop_pct)
    hi = int(math.ceil(img_size / math.sqrt(crop_scale_min)))
    sides = np.asarray(short_sides)
    native = int(np.median(sides)) if sides.size else lo
    return max(lo, min(hi, native))


def decode_square(path: str | os.PathLike, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """Decode ``path`` and return its centre ``size x size`` square after a short-side resize.

    Same arithmetic as torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image (long
    side ``int(size * long / short)``, crop offset ``int(round(...))``), which timm's eval transform
    uses, so cached pixels equal the PIL path exactly. PIL's resize is antialiased on downscaling.
    """
    img = load_rgb(path)
    w, h = img.size
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _resample(interpolation))
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    if (new_w, new_h) != (size, size):
        img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.uint8)
    if arr.shape != (size, size, 3):  # cannot happen for RGB input; guard the file layout anyway
        raise BadImageError(path, f"decoded to unexpected shape {arr.shape}")
    return arr


def _resample(name: str) -> Image.Resampling:
    try:
        return _RESAMPLE[name]
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}; one of {sorted(_RESAMPLE)}") from None


def cache_key(root: str | os.PathLike, paths: Sequence[str | os.PathLike], size: int,
              interpolation: str = "bicubic") -> str:
    """Hex digest naming the cache for these files at this size.

    Hashes (relative path, byte size, mtime_ns) of every file in order (the order is the row
    order), the stored size, interpolation and format version. Stat only, no reading: cheap enough
    to run at every start, and any rewrite or ``touch`` changes the key.
    """
    _resample(interpolation)
    root = Path(root)
    h = hashlib.sha256(f"medtl-decoded-cache v{FORMAT_VERSION}\n{int(size)}\n{interpolation}\n"
                       .encode())
    for rel in paths:
        rel_s = Path(rel).as_posix()
        try:
            st = os.stat(root / rel_s)
        except OSError as exc:
            raise BadImageError(root / rel_s, f"cannot stat file ({exc.strerror or exc})") from None
        h.update(f"{rel_s}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


class DecodedCache:
    """Read-only view of a built cache: ``cache[i]`` is one uint8 ``(S, S, 3)`` image.

    Pickles as its file path (workers reopen the map) so DataLoader workers never copy the data.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.array: np.ndarray = np.load(self.path, mmap_mode="r")
        if self.array.ndim != 4 or self.array.shape[-1] != 3 or self.array.dtype != np.uint8 \
                or self.array.shape[1] != self.array.shape[2]:
            raise ValueError(f"{self.path}: not a decoded-image cache "
                             f"(shape {self.array.shape}, dtype {self.array.dtype})")
        sidecar = self.path.with_suffix(".json")
        self.meta: dict = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}

    @property
    def size(self) -> int:
        return int(self.array.shape[1])

    @property
    def paths(self) -> list[str]:
        return list(self.meta.get("paths", []))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.array[i]

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """One gather for a whole batch: a fresh, writable, contiguous (B, S, S, 3) array."""
        return self.array[np.asarray(indices, dtype=np.int64)]

    def nbytes_on_disk(self) -> int:
        return self.path.stat().st_size

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return f"DecodedCache({str(self.path)!r}, n={len(self)}, size={self.size})"


def build_cache(root: str | os.PathLike, paths: Sequence[str | os.PathLike], size: int,
                cache_dir: str | os.PathLike, workers: int | None = None, progress: bool = True,
                interpolation: str = "bicubic") -> DecodedCache:
    """Decode ``paths`` (relative to ``root``) once into ``cache_dir/<key>.npy``; reuse it if there.

    Workers write straight into the memory-mapped temp file (no pixel data through pipes); the
    file is renamed to its final name only after every image is in and flushed. An unreadable
    image raises :class:`BadImageError` naming it: filter bad files first (``medtl data check``).
    ``workers`` defaults to min(4, cores); 0 or 1 decodes in this process.
    """
    root = Path(root)
    rels = [Path(p).as_posix() for p in paths]
    if not rels:
        raise ValueError("no images to cache")
    key = cache_key(root, rels, size, interpolation)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"{key}.npy"
    if final.exists():
        return DecodedCache(final)
    check_writable(cache_dir, "the decoded-image cache", "or use pipeline='per_image' "
                   "(--pipeline per_image), which needs no cache")
    _remove_stale_temps(cache_dir, key)
    need = len(rels) * size * size * 3
    free = shutil.disk_usage(cache_dir).free
    if free < need + (256 << 20):  # keep a margin for everything else on that disk
        raise OSError(errno.ENOSPC, f"the decoded cache needs {need / 2**30:.2f} GiB in "
                      f"{cache_dir}, which has {free / 2**30:.2f} GiB free. Point MEDTL_CACHE_DIR "
                      "at a larger disk, delete old caches there, or use pipeline='per_image' "
                      "(--pipeline per_image)")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    tmp = cache_dir / f".{key}.npy.{os.getpid()}.tmp"
    t0 = time.perf_counter()
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(rels), size, size, 3))
        chunks = [(start, rels[start:start + _CHUNK]) for start in range(0, len(rels), _CHUNK)]
        bar = tqdm(total=len(rels), desc=f"decoding {len(rels)} images to cache", unit="img",
                   disable=not progress)
        with bar:
            if workers <= 1 or len(chunks) == 1:
                for start, chunk in chunks:
                    for k, rel in enumerate(chunk):
                        arr[start + k] = decode_square(root / rel, size, interpolation)
                    bar.update(len(chunk))
                    fault_point("cache.chunk")
            else:
                arr.flush()
                with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                                         initargs=(os.getpid(),)) as pool:
                    futures = {pool.submit(_decode_chunk, str(tmp), str(root), chunk, start, size,
                                           interpolation): len(chunk) for start, chunk in chunks}
                    try:
                        for fut in as_completed(futures):
                            bad = fut.result()
                            if bad is not None:
                                raise BadImageError(*bad)
                            bar.update(futures[fut])
                            fault_point("cache.chunk")
                    except BaseException:
                        pool.shutdown(wait=True, cancel_futures=True)  # stop before unlinking
                        raise
        arr.flush()
        del arr
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        seconds = time.perf_counter() - t0
        atomic_write_json(final.with_suffix(".json"), {
            "format": FORMAT_VERSION, "key": key, "size": size, "interpolation": interpolation,
            "root": str(root), "n": len(rels), "build_seconds": round(seconds, 3),
            "workers": workers, "paths": rels})
        os.replace(tmp, final)  # the only step that makes the cache look complete
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # still mapped on Windows; the next build of this key removes it
            pass
        raise
    return DecodedCache(final)


def check_writable(folder: Path, what: str, fallback: str) -> None:
    """Create ``folder`` and a file in it, or say which variable moves it and what else works
    (instead of a bare errno from deep inside a build)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        hint = ("Set MEDTL_CACHE_DIR to a writable folder (e.g. export MEDTL_CACHE_DIR="
                "/tmp/medtl-cache), " if "cache" in what else "Make it writable, ")
        raise OSError(exc.errno, f"{what} cannot be written in {folder} ({exc.strerror}). "
                      f"{hint}{fallback}") from None


def _die_with_parent(parent: int) -> None:
    """Pool initializer: a decode worker ends when the run that started it is killed, instead of
    decoding its chunk on as an orphan. Linux: the kernel's parent-death signal; elsewhere (and
    if the parent is already gone) a watcher thread."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _decode_chunk(tmp: str, root: str, rels: list[str], start: int, size: int,
                  interpolation: str) -> tuple[str, str] | None:
    """Worker task: decode a run of images into rows ``start..`` of the temp map.

    Returns (path, reason) for a bad image instead of raising: BadImageError does not survive
    pickling (its __init__ takes two arguments).
    """
    arr = np.load(tmp, mmap_mode="r+")
    try:
        for k, rel in enumerate(rels):
            try:
                arr[start + k] = decode_square(Path(root) / rel, size, interpolation)
            except BadImageError as exc:
                return exc.path, exc.reason
        arr.flush()
    finally:
        del arr
    return None


def _remove_stale_temps(cache_dir: Path, key: str) -> None:
    """Delete temp files of this key left by killed builds (their process is gone)."""
    for p in cache_dir.glob(f".{key}.npy.*.tmp"):
        try:
            pid = int(p.name.rsplit(".", 2)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            p.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class CachedDataset(Dataset):
    """(uint8 CHW image, label) from a :class:`DecodedCache`, over all its rows or a subset.

    ``rows`` picks cache rows (a split of the dataset the cache holds); ``labels`` align with
    them. Indexed with a list of positions (what :func:`cached_loader` does) it returns a whole
    batch: one gather from the map, then ``(B, 3, S, S)`` as a free permuted view of the
    (B, S, S, 3) array, i.e. channels_last strides, the layout convolutions on GPU want anyway.
    A single int returns one image copied out of the read-only map (safe to modify in place).
    """

    def __init__(self, cache: DecodedCache, labels: Iterable[int],
                 rows: Sequence[int] | np.ndarray | None = None) -> None:
        self.cache = cache
        self.rows = np.arange(len(cache), dtype=np.int64) if rows is None else \
            np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(list(labels), dtype=np.int64))
        if len(self.labels) != len(self.rows):
            raise ValueError(f"{len(self.labels)} labels for {len(self.rows)} cached images")
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(cache)):
            raise IndexError(f"rows outside the cache's {len(cache)} images")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            img = torch.from_numpy(np.array(self.cache[int(self.rows[int(i)])]))
            return img.permute(2, 0, 1), int(self.labels[int(i)])
        idx = np.asarray(i, dtype=np.int64)
        batch = torch.from_numpy(self.cache.take(self.rows[idx]))  # zero-copy wrap of the gather
        return batch.permute(0, 3, 1, 2), self.labels[torch.from_numpy(idx)]


def cached_loader(cache: DecodedCache, labels: Iterable[int], batch_size: int, train: bool,
                  seed: int = 0, pin_memory: bool = False, num_workers: int = 0,
                  rows: Sequence[int] | np.ndarray | None = None,
                  shard: tuple[int, int] | None = None) -> DataLoader:
    """DataLoader of uint8 batches ``(B, 3, S, S)`` and int64 labels from the cache.

    A batch sampler hands whole index lists to the dataset (one memmap gather per batch instead
    of B item fetches and a collate). Shuffling uses ``loader.generator`` (also the sampler's), so
    the trainer's per-epoch reseed of that generator applies here as to ``make_loader``;
    ``shard`` = (rank, world size) keeps this rank's part of the order. A last
    training batch of one image is dropped (BatchNorm), nothing else. No workers by default: a
    gather from page cache is ~1 ms per batch, cheaper than shipping it between processes.
    """
    ds = CachedDataset(cache, labels, rows)
    gen = torch.Generator().manual_seed(seed) if train else None
    if train and shard is not None:  # this rank's part of the order (medtl_lib.distributed)
        from ..distributed import ShardSampler

        base = ShardSampler(len(ds), gen, *shard)
    else:
        base = RandomSampler(ds, generator=gen) if train else SequentialSampler(ds)
    drop_last = drop_single_last(len(base), batch_size, train)
    batches = BatchSampler(base, batch_size, drop_last)
    return DataLoader(ds, batch_size=None, sampler=batches, num_workers=num_workers,
                      pin_memory=pin_memory, generator=gen,
                      prefetch_factor=4 if num_workers else None,
                      persistent_workers=False)
