"""The fast path inside real runs: the cached pipeline against the per-image one, the per-image
resize it replaces, feature caching for a frozen backbone, and the benchmarks' own logic."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from medtl_lib.cli import main as cli_main
from medtl_lib.config import RunConfig
from medtl_lib.data.gpu_aug import DeviceAugment
from medtl_lib.models.factory import create_model
from medtl_lib.train_run import train_run
from medtl_lib.training.features import feature_cache_decision
from medtl_lib.training.strategies import get_strategy
from medtl_lib.training.trainer import is_convolutional

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _photo(size: int, seed: int = 0) -> np.ndarray:
    """Smooth random image: resampling differences show, but only as small ones."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC))


@pytest.mark.parametrize("interp", ["bilinear", "bicubic"])
@pytest.mark.parametrize("as_float", [False, True], ids=["uint8-cpu", "float (GPU path)"])
def test_train_crop_is_pil_resized_crop_of_the_same_box(interp, as_float):
    """Given the sampled boxes, each output is PIL's crop + resize (+ flip), as timm does it."""
    stored, out, n = 64, 56, 24
    imgs = np.stack([_photo(stored, s) for s in range(n)])
    batch = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    aug = DeviceAugment(out, MEAN, STD, scale=(0.3, 1.0), interpolation=interp)
    params = aug.sample_params(n, stored, stored, torch.Generator().manual_seed(5))
    ours = aug(batch.float() if as_float else batch, torch.Generator().manual_seed(5))
    ours = (ours * 127.5 + 127.5).permute(0, 2, 3, 1).numpy()  # back to 0..255
    resample = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[interp]
    diffs = []
    for k in range(n):
        i, j, h, w = (int(params[key][k]) for key in "ijhw")
        ref = Image.fromarray(imgs[k]).crop((j, i, j + w, i + h)).resize((out, out), resample)
        if params["flip"][k]:
            ref = ref.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        diffs.append(np.abs(ours[k] - np.asarray(ref, dtype=np.float64)))
    diffs = np.stack(diffs)
    assert diffs.mean() < 0.6 and diffs.max() <= 6, (diffs.mean(), diffs.max())
    assert params["flip"].any() and not params["flip"].all()


def test_eval_for_other_crop_pct_keeps_timm_field_of_view():
    """ResNet-50 a1 (crop_pct 0.95) from a cache stored for 0.875: timm's view within grey levels."""
    from torchvision import transforms as T

    from medtl_lib.data.cache import stored_size

    out = 56
    src = Image.fromarray(_photo(96, 3))
    cached = T.CenterCrop(stored_size(out))(T.Resize(stored_size(out), T.InterpolationMode.BICUBIC)(src))
    x = torch.from_numpy(np.asarray(cached)).permute(2, 0, 1)[None]
    ours = DeviceAugment(out, MEAN, STD, train=False, interpolation="bicubic", crop_pct=0.95)(x)
    ours = (ours[0] * 127.5 + 127.5).permute(1, 2, 0).numpy()
    timm_view = T.CenterCrop(out)(T.Resize(int(out / 0.95), T.InterpolationMode.BICUBIC)(src))
    diff = np.abs(ours - np.asarray(timm_view, dtype=np.float64))
    assert diff.mean() < 2.0, diff.mean()
    plain = DeviceAugment(out, MEAN, STD, train=False, crop_pct=0.875)(x)  # a different view
    plain = (plain[0] * 127.5 + 127.5).permute(1, 2, 0).numpy()
    assert np.abs(plain - np.asarray(timm_view, dtype=np.float64)).mean() > 2 * diff.mean()


def test_cache_size_rule():
    from medtl_lib.data.cache import cache_size

    assert cache_size(128, 0.5, [224] * 5) == 182  # ceil(128 / sqrt(0.5)): crops scale down
    assert cache_size(224, 0.5, [224] * 5) == 256  # eval's field of view wins over the native size
    assert cache_size(128, 0.5, [150, 160, 170]) == 160  # never upsampled into the cache
    assert cache_size(128, 1.0, [512]) == 146  # no random crops to serve: timm's eval size


def test_feature_cache_rule():
    full, probe = get_strategy("full").stages(3)[0], get_strategy("linear_probe").stages(3)[0]
    assert feature_cache_decision(probe, augment=False)[0]
    ok, why = feature_cache_decision(probe, augment=True)
    assert not ok and "augment=False" in why
    assert not feature_cache_decision(full, augment=False)[0]
    assert not feature_cache_decision(probe, augment=False, requested=False)[0]


def test_channels_last_only_for_convolution_stacks():
    cnn, _ = create_model("test_resnet", 3, weights="none")
    vit, _ = create_model("vit_tiny_patch16_224", 3, weights="none", img_size=32)
    assert is_convolutional(cnn) and not is_convolutional(vit)


def _cfg(data, out, **kw) -> RunConfig:
    base = dict(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                weights="none", img_size=32, epochs=2, batch_size=16, seed=1, group_by="none",
                out=str(out))
    return RunConfig(**{**base, **kw})


def test_cached_and_per_image_runs_agree_and_share_one_cache(synth_root, tmp_path, monkeypatch):
    cache_root = tmp_path / "cache"
    monkeypatch.setenv("MEDTL_CACHE_DIR", str(cache_root))
    data = synth_root("brain_tumor_mri", n_per_class=24, size=40)
    lines: list[str] = []
    a = train_run(_cfg(data, tmp_path / "cached"), progress=False, log=lines.append)
    assert a.metrics["pipeline"] == "cached" and "cached pipeline" in a.metrics["input"]
    assert str(tmp_path) not in json.dumps(a.metrics)  # no machine paths in results
    files = list((cache_root / "decoded").glob("*.npy"))
    assert len(files) == 1
    arr = np.load(files[0], mmap_mode="r")
    # every usable image, at the images' own 40 px: between floor(32 / 0.875) and 32 / sqrt(0.5)
    assert arr.shape == (96, 40, 40, 3)
    mtime = files[0].stat().st_mtime_ns

    # another model, seed and strategy on the same dataset and size: the same cache, not rebuilt
    train_run(_cfg(data, tmp_path / "again", seed=2, strategy="linear_probe"), progress=False,
              log=lines.append)
    assert list((cache_root / "decoded").glob("*.npy")) == files
    assert files[0].stat().st_mtime_ns == mtime

    b = train_run(_cfg(data, tmp_path / "per_image", pipeline="per_image"), progress=False,
                  log=lines.append)
    assert "per-image pipeline" in b.metrics["input"]
    # same split, same evaluation images: eval pixels of the two pipelines are equal, so the
    # untrained-equal models would agree; here we check both runs are complete and comparable
    sa = pd.read_csv(tmp_path / "cached" / "predictions_test.csv")["path"].tolist()
    sb = pd.read_csv(tmp_path / "per_image" / "predictions_test.csv")["path"].tolist()
    assert sa == sb
    assert a.metrics["compute"] == b.metrics["compute"] == "cpu, fp32, channels_last off"


def test_eval_batches_of_both_pipelines_are_the_same_pixels(synth_root, tmp_path, monkeypatch):
    from medtl_lib.data.loaders import run_loaders
    from medtl_lib.data.prepare import prepare_data

    monkeypatch.setenv("MEDTL_CACHE_DIR", str(tmp_path / "cache"))
    # 36 px images: the cache is stored at floor(32 / 0.875) = 36, where eval crops are exact
    data = synth_root("brain_tumor_mri", n_per_class=24, size=36)
    _, info = create_model("test_resnet", 4, weights="none", img_size=32)
    info.data_config.update(interpolation="bicubic", crop_pct=0.875)
    xs = {}
    for pipeline in ("cached", "per_image"):
        cfg = _cfg(data, tmp_path / pipeline, pipeline=pipeline)
        index = prepare_data(cfg)
        splits = {s: index.frame[index.frame["split"] == s] for s in ("train", "val", "test")}
        loaders = run_loaders(cfg, index.root, index.frame, splits, info.data_config,
                              torch.device("cpu"), progress=False)
        xs[pipeline] = torch.cat([x for x, _ in loaders.evals["test"]])
    torch.testing.assert_close(xs["cached"], xs["per_image"], atol=1e-5, rtol=0)


def test_linear_probe_on_cached_features_equals_running_the_backbone(synth_root, tmp_path):
    data = synth_root("brain_tumor_mri", n_per_class=24, size=40)
    kw = dict(strategy="linear_probe", augment=False, lr=5e-2, epochs=3)
    lines: list[str] = []
    fast = train_run(_cfg(data, tmp_path / "fast", **kw), progress=False, log=lines.append)
    slow = train_run(_cfg(data, tmp_path / "slow", cache_features=False, **kw), progress=False,
                     log=lines.append)
    assert fast.metrics["features_cached"] and not slow.metrics["features_cached"]
    assert any(line.startswith("stage 'probe': features cached") for line in lines)
    n_head = 96 * 4 + 4  # test_resnet's 96 features -> 4 classes
    assert any(line.startswith(f"linear_probe: {n_head:,} of ") for line in lines)  # before epoch 1
    pd.testing.assert_frame_equal(fast.history[["train_loss", "val_loss"]],
                                  slow.history[["train_loss", "val_loss"]], atol=1e-5, rtol=0)
    pa = pd.read_csv(tmp_path / "fast" / "predictions_test.csv")
    pb = pd.read_csv(tmp_path / "slow" / "predictions_test.csv")
    prob_cols = [c for c in pa.columns if c.startswith("p_")] or pa.select_dtypes("float").columns
    np.testing.assert_allclose(pa[prob_cols].to_numpy(), pb[prob_cols].to_numpy(), atol=1e-5)
    # the saved checkpoint is a whole model (backbone + head), usable like any other
    state = torch.load(tmp_path / "fast" / "best.pt", weights_only=True)["model"]
    assert any(k.startswith("backbone.") for k in state) and "head.weight" in state


def test_bench_loader_reports_both_pipelines(synth_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDTL_CACHE_DIR", str(tmp_path / "cache"))
    data = synth_root("brain_tumor_mri", n_per_class=24, size=40)
    rc = cli_main(["bench", "loader", "--dataset", "brain_tumor_mri", "--data-dir", str(data),
                   "--img-size", "32", "--batch-size", "8", "--repeats", "1", "--workers", "0"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("authors_images_per_s", "cached_images_per_s", "cached_augmented_images_per_s",
                "cache_build_s"):
        assert out[key] > 0, key
    assert out["images"] == 76 and out["stored_size"] == 40  # the training split (80%)
    assert not list((tmp_path / "cache" / "bench").iterdir())  # its private cache is removed


def test_bench_memory_cache_grows_linearly(synth_root, tmp_path, monkeypatch):
    from medtl_lib.bench import bench_memory

    monkeypatch.setenv("MEDTL_CACHE_DIR", str(tmp_path / "cache"))
    data = synth_root("brain_tumor_mri", n_per_class=24, size=40)
    report = bench_memory("brain_tumor_mri", str(data), fractions=(0.5, 1.0), img_size=32,
                          model="test_resnet", epochs=1, weights="none")
    small, big = report["runs"]
    assert (small["images"], big["images"]) == (48, 96)
    per_image = 40 * 40 * 3  # bytes (40 px images, stored at their size); plus the .npy header
    assert small["cache_bytes"] == pytest.approx(48 * per_image, abs=4096)
    assert big["cache_bytes"] == pytest.approx(96 * per_image, abs=4096)
    assert small["peak_rss_mib"] > 50 and big["peak_rss_mib"] > 50


def test_cache_refuses_to_fill_the_disk(synth_root, tmp_path, monkeypatch):
    from collections import namedtuple

    from medtl_lib.data import cache as cache_mod

    data = synth_root("brain_tumor_mri", n_per_class=24, size=40)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 10**6))
    paths = [p.relative_to(data).as_posix() for p in sorted(data.rglob("*.jpg"))]
    with pytest.raises(OSError, match="MEDTL_CACHE_DIR.*per_image"):
        cache_mod.build_cache(data, paths, 36, tmp_path / "c", workers=0, progress=False)
    assert not list((tmp_path / "c").glob("*.npy*"))
