"""Decoded-image cache and device-side augmentation: same pixels as the PIL path, same crop
distribution as the timm train transform, and a cache file that is complete or absent."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import ks_2samp
from torchvision import transforms as T

from medtl_lib.data import cache as cache_mod
from medtl_lib.data.cache import (
    CachedDataset,
    DecodedCache,
    build_cache,
    cache_key,
    cached_loader,
    stored_size,
)
from medtl_lib.data.gpu_aug import DeviceAugment
from medtl_lib.data.images import BadImageError, is_image_file, load_rgb
from medtl_lib.data.loaders import build_transforms
from medtl_lib.data.synthetic import write_synthetic

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture()
def data(tmp_path):
    """A dozen synthetic MRI JPEGs (grayscale and RGB) plus non-square PNGs, in a private dir."""
    root = write_synthetic("brain_tumor_mri", tmp_path / "data", n_per_class=3, size=40, seed=1)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(root / "wide.png")
    Image.fromarray(rng.integers(0, 256, (61, 33), dtype=np.uint8)).save(root / "tall.png")
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if is_image_file(p.name))
    labels = [i % 4 for i in range(len(paths))]
    return root, paths, labels


def _pil_reference(path, size: int, interpolation=T.InterpolationMode.BICUBIC) -> np.ndarray:
    tf = T.Compose([T.Resize(size, interpolation=interpolation), T.CenterCrop(size)])
    return np.asarray(tf(load_rgb(path)))


def test_stored_size_is_timm_eval_resize():
    assert stored_size(224) == 256
    assert stored_size(384) == 438  # floor, as timm
    assert stored_size(224, crop_pct=1.0) == 224


def test_build_equals_pil_path_and_is_reused(data, tmp_path, monkeypatch):
    root, paths, _ = data
    cache = build_cache(root, paths, 32, tmp_path / "c", workers=0, progress=False)
    assert cache.array.shape == (len(paths), 32, 32, 3) and cache.array.dtype == np.uint8
    assert not cache.array.flags.writeable
    assert cache.paths == paths and cache.meta["size"] == 32 and cache.meta["build_seconds"] >= 0
    for i, rel in enumerate(paths):
        diff = np.abs(cache[i].astype(int) - _pil_reference(root / rel, 32).astype(int))
        assert diff.max() <= 1, rel

    mtime = cache.path.stat().st_mtime_ns

    def no_decode(*a, **k):
        raise AssertionError("cache was rebuilt")

    monkeypatch.setattr(cache_mod, "decode_square", no_decode)
    again = build_cache(root, paths, 32, tmp_path / "c", workers=0, progress=False)
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime


def test_parallel_build_equals_serial(data, tmp_path, monkeypatch):
    root, paths, _ = data
    monkeypatch.setattr(cache_mod, "_CHUNK", 3)  # several tasks even on a dozen images
    serial = build_cache(root, paths, 24, tmp_path / "a", workers=0, progress=False)
    parallel = build_cache(root, paths, 24, tmp_path / "b", workers=2, progress=False)
    assert serial.path.name == parallel.path.name
    np.testing.assert_array_equal(serial.array, parallel.array)


def test_key_changes_with_files_and_size(data, tmp_path):
    root, paths, _ = data
    k0 = cache_key(root, paths, 32)
    assert cache_key(root, list(paths), 32) == k0
    assert cache_key(root, paths, 33) != k0
    assert cache_key(root, paths[:-1], 32) != k0
    assert cache_key(root, paths, 32, interpolation="bilinear") != k0
    target = root / paths[0]
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touch
    k1 = cache_key(root, paths, 32)
    assert k1 != k0
    target.write_bytes(target.read_bytes() + b"\0")  # rewrite (size changes too)
    k2 = cache_key(root, paths, 32)
    assert k2 not in (k0, k1)
    built = build_cache(root, paths, 32, tmp_path / "c", workers=0, progress=False)
    assert built.path.name == f"{k2}.npy"


def test_bad_image_is_named(data, tmp_path, monkeypatch):
    root, paths, _ = data
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad_paths = paths + ["broken.jpg"]
    with pytest.raises(BadImageError, match="broken.jpg"):
        build_cache(root, bad_paths, 16, tmp_path / "c", workers=0, progress=False)
    monkeypatch.setattr(cache_mod, "_CHUNK", 4)
    with pytest.raises(BadImageError, match="broken.jpg"):
        build_cache(root, bad_paths, 16, tmp_path / "c", workers=2, progress=False)
    assert not [p for p in (tmp_path / "c").iterdir() if p.suffix != ".json"]


def test_killed_build_leaves_no_complete_looking_file(data, tmp_path, monkeypatch):
    root, paths, _ = data
    out = tmp_path / "c"
    key = cache_key(root, paths, 16)
    real = cache_mod.decode_square
    calls = {"n": 0}

    def dies_midway(*a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # as a Ctrl-C or kill mid-build
        return real(*a, **k)

    monkeypatch.setattr(cache_mod, "decode_square", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        build_cache(root, paths, 16, out, workers=0, progress=False)
    assert sorted(p.name for p in out.iterdir()) == []

    # A hard kill (SIGKILL) cannot clean up: its temp file stays, under a name that is never
    # taken for a cache, and the next build of the same key removes it.
    stale = out / f".{key}.npy.999999999.tmp"
    stale.write_bytes(b"half a cache")
    monkeypatch.setattr(cache_mod, "decode_square", real)
    built = build_cache(root, paths, 16, out, workers=0, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == [f"{key}.json", f"{key}.npy"]
    assert len(built) == len(paths)


def test_loader_yields_uint8_batches(data, tmp_path):
    root, paths, labels = data
    cache = build_cache(root, paths, 20, tmp_path / "c", workers=0, progress=False)
    n = len(paths)
    loader = cached_loader(cache, labels, batch_size=4, train=True, seed=3)
    seen, order = [], []
    for x, y in loader:
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 20, 20) and x.shape[0] <= 4
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
        seen.append(x)
        order.append(y)
    assert sum(len(b) for b in seen) == n and len(loader) == -(-n // 4)
    again = [y for _, y in cached_loader(cache, labels, batch_size=4, train=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(order, again))  # same seed, same order

    xs, ys = zip(*cached_loader(cache, labels, batch_size=5, train=False))
    x_all = torch.cat(xs)
    assert torch.equal(torch.cat(ys), torch.tensor(labels))
    assert torch.equal(x_all, torch.from_numpy(np.array(cache.array)).permute(0, 3, 1, 2))

    # worker processes reopen the map from its path instead of receiving the pixels
    xw, yw = zip(*cached_loader(cache, labels, batch_size=5, train=False, num_workers=2))
    assert torch.equal(torch.cat(xw), x_all) and torch.equal(torch.cat(yw), torch.cat(ys))

    img, label = CachedDataset(cache, labels)[2]
    assert img.shape == (3, 20, 20) and label == labels[2]
    img.zero_()  # a private copy: the read-only map is untouched
    assert cache.array[2].any()
    assert DecodedCache(cache.path).array.shape == cache.array.shape


# ------------------------------------------------------------------------- augmentation


@pytest.fixture()
def restore_rng():
    """timm's transform draws from the global python and torch RNGs; give them back afterwards."""
    py, th = random.getstate(), torch.get_rng_state()
    yield
    random.setstate(py)
    torch.set_rng_state(th)


def test_box_params_match_torchvision(restore_rng):
    n, size = 3000, 64
    aug = DeviceAugment(56, MEAN, STD, scale=(0.5, 1.0))
    ours = aug.sample_params(n, size, size, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    img = torch.zeros(3, size, size)
    ref = np.array([T.RandomResizedCrop.get_params(img, [0.5, 1.0], [3 / 4, 4 / 3])
                    for _ in range(n)])
    for k, name in enumerate("ijhw"):
        res = ks_2samp(ours[name].numpy(), ref[:, k])
        assert res.pvalue > 1e-3, (name, res)
    assert (ours["h"] <= size).all() and (ours["i"] + ours["h"] <= size).all()
    assert (ours["j"] + ours["w"] <= size).all() and (ours["i"] >= 0).all()


def test_box_fallback_is_torchvision_centre_crop():
    aug = DeviceAugment(8, MEAN, STD, scale=(0.99, 1.0), ratio=(2.0, 3.0))  # never fits a square
    p = aug.sample_params(5, 40, 40, torch.Generator().manual_seed(0))
    ref = T.RandomResizedCrop.get_params(torch.zeros(3, 40, 40), [0.99, 1.0], [2.0, 3.0])
    assert ref == (10, 0, 20, 40)
    for k, name in enumerate("ijhw"):
        assert (p[name] == ref[k]).all()


def _coordinate_image(size: int) -> np.ndarray:
    """R encodes x, G encodes y: a crop's mean R/G is its centre and their spread its size."""
    ramp = (np.arange(size) * (252 // (size - 1)) + 2).astype(np.uint8)
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 0] = ramp[None, :]
    img[..., 1] = ramp[:, None]
    img[..., 2] = 128
    return img


def _implied_boxes(batch: torch.Tensor, stored: int) -> dict[str, np.ndarray]:
    """Recover each crop's integer box (and flip) from the pixels of the normalised output.

    On the coordinate image a crop of width w resampled to S columns has R values 4 * (w/S)
    apart, so its spread gives w and its mean gives the left edge j (G likewise gives h and the
    top i). Working from integers makes the test blind to sub-pixel filter details (PIL's
    antialias vs bilinear sampling move the spread by ~0.05 px) but not to any change in the
    crop boxes, their distribution or the normalisation.
    """
    px = batch * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    px = px.double() * 255
    r, g = px[:, 0], px[:, 1]
    s = batch.shape[-1]
    unit = 4 * np.sqrt((s * s - 1) / 12) / s  # spread of R per pixel of crop width
    w = np.rint(r.std((1, 2)).numpy() / unit)
    h = np.rint(g.std((1, 2)).numpy() / unit)
    j = np.rint((r.mean((1, 2)).numpy() - 2) / 4 + 0.5 - w / 2)
    i = np.rint((g.mean((1, 2)).numpy() - 2) / 4 + 0.5 - h / 2)
    assert (w <= stored).all() and (j >= 0).all() and (j + w <= stored).all()
    return {"i": i, "j": j, "h": h, "w": w, "area": w * h / stored**2,
            "flip": (r[:, :, -1].mean(1) < r[:, :, 0].mean(1)).numpy(),
            "blue": px[:, 2].mean((1, 2)).numpy()}


def test_train_crops_match_timm_distribution(restore_rng):
    n, stored, out = 2000, 64, 56
    arr = _coordinate_image(stored)
    config = {"input_size": (3, out, out), "mean": MEAN, "std": STD,
              "interpolation": "bilinear", "crop_pct": 0.875}
    train_tf, _ = build_transforms(config, crop_scale_min=0.5, hflip=0.5)
    random.seed(0)
    torch.manual_seed(0)
    pil = Image.fromarray(arr)
    ref = _implied_boxes(torch.stack([train_tf(pil) for _ in range(n)]), stored)

    aug = DeviceAugment(out, MEAN, STD, scale=(0.5, 1.0), hflip=0.5)
    batch = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1)
    ours = _implied_boxes(aug(batch, torch.Generator().manual_seed(1)), stored)

    for name in ("i", "j", "h", "w", "area"):
        res = ks_2samp(ours[name], ref[name])
        assert res.pvalue > 1e-3, (name, res)
    assert abs(ours["flip"].mean() - 0.5) < 0.05 and abs(ref["flip"].mean() - 0.5) < 0.05
    np.testing.assert_allclose(ours["blue"], 128, atol=1e-3)  # normalisation is timm's
    np.testing.assert_allclose(ref["blue"], 128, atol=1e-3)


def test_generator_makes_it_repeatable_and_eval_is_deterministic():
    batch = torch.from_numpy(_coordinate_image(32)).permute(2, 0, 1).unsqueeze(0).repeat(8, 1, 1, 1)
    aug = DeviceAugment(28, MEAN, STD)
    a = aug(batch, torch.Generator().manual_seed(5))
    b = aug(batch, torch.Generator().manual_seed(5))
    c = aug(batch, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    aug.eval()
    e = aug(batch)
    assert torch.equal(e, aug(batch)) and torch.equal(e[0], e[7])
    f = batch.float()
    DeviceAugment(28, MEAN, STD, train=False)(f)
    assert torch.equal(f, batch.float())  # input never modified in place


def test_eval_from_cache_equals_timm_eval(data, tmp_path):
    root, paths, _ = data
    img_size = 28
    config = {"input_size": (3, img_size, img_size), "mean": MEAN, "std": STD,
              "interpolation": "bicubic", "crop_pct": 0.875}
    _, eval_tf = build_transforms(config)
    cache = build_cache(root, paths, stored_size(img_size), tmp_path / "c", workers=0,
                        progress=False, interpolation="bicubic")
    x, _ = CachedDataset(cache, [0] * len(paths))[list(range(len(paths)))]
    ours = DeviceAugment(img_size, MEAN, STD, train=False)(x)
    ref = torch.stack([eval_tf(load_rgb(root / p)) for p in paths])
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
