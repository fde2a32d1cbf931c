"""Shared fixtures: synthetic stand-ins written once per session (no download, no ../shared)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from medtl_lib.data.synthetic import write_synthetic

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
# Decoded-image caches and converted weights go to a private folder, never the user's cache.
_CACHE = tempfile.mkdtemp(prefix="medtl-test-cache-")
os.environ["MEDTL_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """Factory: synth_root(name, n_per_class=..., size=...) -> path, cached per arguments."""
    cache: dict = {}

    def make(name: str, n_per_class: int = 20, size: int = 48, seed: int = 0):
        key = (name, n_per_class, size, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}_{n_per_class}_{size}_{seed}")
            cache[key] = write_synthetic(name, out, n_per_class=n_per_class, size=size, seed=seed)
        return cache[key]

    return make


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    """Keep converted weights out of the user's home during tests."""
    d = tmp_path / "medtl_cache"
    monkeypatch.setenv("MEDTL_CACHE_DIR", str(d))
    return d


@pytest.fixture()
def loaders(synth_root):
    """Tiny image loaders (the brain MRI stand-in's Training / Testing folders at 32 px) for
    trainer tests: (shuffled train loader with its own generator, val loader)."""
    from medtl_lib.data.index import build_index
    from medtl_lib.data.loaders import ImageDataset, build_transforms, make_loader
    from medtl_lib.data.registry import get_spec
    from medtl_lib.models.factory import create_model

    spec = get_spec("brain_tumor_mri")
    index = build_index(spec, spec.locate(synth_root("brain_tumor_mri")))
    _, info = create_model("test_resnet", 4, weights="none", img_size=32)
    train_tf, eval_tf = build_transforms(info.data_config)
    train = index.frame[index.frame["source_split"] == "Training"]
    val = index.frame[index.frame["source_split"] == "Testing"]
    return (make_loader(ImageDataset(index.root, train, train_tf), 16, True, 0, seed=1),
            make_loader(ImageDataset(index.root, val, eval_tf), 16, False, 0))
