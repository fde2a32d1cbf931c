"""Shared fixtures: synthetic stand-ins written once per session (no download, no ../shared).

Test tiers (markers registered in pyproject.toml; `pytest_collection_modifyitems` below applies
them, so test files carry no marker lines of their own):

* ``slow``: the test (or a fixture or tests/ helper it uses) starts another program: papermill
  executes a notebook, Playwright drives a browser, or a subprocess runs python / ``medtl`` /
  torchrun. Found by searching that source for ``SLOW_SOURCE``.
  ``EXTRA_MARKS`` adds the few that take seconds for another reason (measured).
* ``training``: the test trains a model in this process (``Trainer.fit``, ``train_run``,
  ``medtl train`` through ``cli.main``, a cut search, the ``loaders`` fixture ...):
  ``TRAINING_SOURCE``.

The source searched is the test function's, its fixtures' and, transitively, that of the
functions and classes of tests/ that they name.
Fast tier: ``bash tests/run_fast.sh`` (= ``run_tests.sh -m "not slow and not training"``).
"""
from __future__ import annotations

import atexit
import inspect
import os
import re
import shutil
import tempfile
import types
from pathlib import Path

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


@pytest.fixture(scope="session")
def _loader_datasets(synth_root):
    """The datasets behind ``loaders``, built once per session (index, model config, transforms:
    the expensive part). Read-only: tests get fresh loaders over them."""
    from medtl_lib.data.catalogue import get_spec
    from medtl_lib.data.index import build_index
    from medtl_lib.data.loaders import ImageDataset, build_transforms
    from medtl_lib.models.factory import create_model

    spec = get_spec("brain_tumor_mri")
    index = build_index(spec, spec.locate(synth_root("brain_tumor_mri")))
    _, info = create_model("test_resnet", 4, weights="none", img_size=32)
    train_tf, eval_tf = build_transforms(info.data_config)
    train = index.frame[index.frame["source_split"] == "Training"]
    val = index.frame[index.frame["source_split"] == "Testing"]
    return ImageDataset(index.root, train, train_tf), ImageDataset(index.root, val, eval_tf)


@pytest.fixture()
def loaders(_loader_datasets):
    """Tiny image loaders (the brain MRI stand-in's Training / Testing folders at 32 px) for
    trainer tests: (shuffled train loader with its own generator, val loader). New loaders each
    test (a fresh generator, seed 1) over datasets shared by the session."""
    from medtl_lib.data.loaders import make_loader

    train, val = _loader_datasets
    return make_loader(train, 16, True, 0, seed=1), make_loader(val, 16, False, 0)


# ---- test tiers ------------------------------------------------------------------------------
_TESTS = Path(__file__).resolve().parent
SLOW_SOURCE = re.compile(
    r"sys\.executable|torch\.distributed\.run|torchrun|execute_notebook|run_smoke_once"
    r"|sync_playwright|chromium_page|jupyter_lab\(|run_profile\(|run_steps\(|\[\s*[\"']medtl[\"']"
    r"|\b(profiles|orchestration|notebooks)\.execute\(")  # the kit's papermill wrapper
TRAINING_SOURCE = re.compile(
    r"\.fit\(|\btrain_run\(|\bsearch_cut\(|fit_logreg_head\(|fit_stage\(|\bloaders\b"
    r"|\bbench_(memory|train)\("
    r"|[\[(]\s*[\"'](train|run|search|bench)[\"']\s*,")  # the argv of `medtl train` ...
# "file.py::test_name" (parameters ignored) or "file.py" -> markers the search cannot see: tests
# that take seconds on an idle machine for another reason are "slow" too (measured, --durations).
EXTRA_MARKS: dict[str, tuple[str, ...]] = {
    "test_cdtm.py::test_cdtm_adds_exactly_the_spec_counts": ("slow",),  # builds ViT-B, ConvNeXt-B
    "test_cdtm.py::test_table_vii_measured_for_the_cdtm_rows": ("slow",),  # MACs of a ViT-B
    "test_engine.py::test_model_info_json": ("slow",),  # MACs and latency of a ResNet-18
    "test_seed003.py::test_ttl_model_info_reproduces_table_1": ("slow",),  # MACs of ResNet-50s
    "test_svcca.py::test_random_baseline_is_high_when_n_is_small_and_seeded": ("slow",),  # SVDs
    # its fixtures (request.getfixturevalue, unseen here) execute notebook 05
    "test_results_page.py::test_page_loads_nothing_from_outside": ("slow",),
}


def _in_tests(obj) -> bool:
    try:
        return Path(inspect.getsourcefile(obj) or "").resolve().is_relative_to(_TESTS)
    except TypeError:
        return False


def _reachable_source(roots) -> str:
    """Source of ``roots`` and of the tests/ functions and classes they name, transitively."""
    seen, parts, todo = set(), [], list(roots)
    while todo:
        try:
            obj = inspect.unwrap(todo.pop())
        except ValueError:
            continue
        if id(obj) in seen or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        seen.add(id(obj))
        if not _in_tests(obj):
            continue
        try:
            parts.append(inspect.getsource(obj))
        except (OSError, TypeError):
            continue
        funcs = [v for v in vars(obj).values() if inspect.isfunction(v)] if inspect.isclass(obj) \
            else [obj]
        for f in funcs:
            names, codes = set(), [f.__code__]
            while codes:
                c = codes.pop()
                names.update(c.co_names)
                codes.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            glb = f.__globals__
            for n in names:
                v = glb.get(n)
                if isinstance(v, types.ModuleType) and _in_tests(v):
                    todo.extend(getattr(v, m) for m in names if hasattr(v, m))
                elif v is not None:
                    todo.append(v)
    return "\n".join(parts)


def pytest_collection_modifyitems(config, items):
    cache: dict = {}  # the marks of (test function, fixtures), shared by its parameter sets
    for item in items:
        fn = getattr(item, "function", None)
        if fn is None:
            continue
        roots = [fn]
        info = getattr(item, "_fixtureinfo", None)
        for defs in (info.name2fixturedefs.values() if info else ()):
            roots.extend(d.func for d in defs)
        key = (*map(id, roots), *item.fixturenames)
        if key not in cache:
            src = _reachable_source(roots) + "\n" + " ".join(item.fixturenames)
            cache[key] = [m for m, rx in (("slow", SLOW_SOURCE), ("training", TRAINING_SOURCE))
                          if rx.search(src)]
        rel = item.path.name
        extra = EXTRA_MARKS.get(rel, ()) + EXTRA_MARKS.get(f"{rel}::{item.originalname}", ())
        for m in dict.fromkeys([*cache[key], *extra]):
            item.add_marker(m)
