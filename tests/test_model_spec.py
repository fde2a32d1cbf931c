"""The model as data: pools, head registry, ModelSpec / model.json, run folders, parameter groups,
MACs. Random weights throughout (weights='none'); tiny timm models unless an architecture is the
point of the test."""
from __future__ import annotations

import importlib
import json
import sys
from dataclasses import replace

import pytest
import timm
import torch
import yaml
from torch import nn

import medtl_lib.models as models_pkg
from medtl_lib.models import factory
from medtl_lib.models.factory import (
    Classifier,
    ModelSpec,
    build_model,
    create_model,
    load_run_model,
    register_head,
    save_model_spec,
)
from medtl_lib.models.groups import group_sizes, parameter_groups
from medtl_lib.models.info import count_macs, latency_ms, model_info


# --- pools -----------------------------------------------------------------------------------------
def test_avg_pool_linear_head_is_seed000_model_key_for_key():
    """Default pool/head = plain timm backbone (num_classes=0, global_pool='avg') + nn.Linear,
    built from the same seed: same modules, same keys in the same order, same tensors, same
    outputs (the bit-identical seed-000 regression depends on it)."""
    torch.manual_seed(0)
    ref_backbone = timm.create_model("test_resnet", pretrained=False, num_classes=0,
                                     global_pool="avg")
    ref_head = nn.Linear(ref_backbone.num_features, 3)
    ref = {**{f"backbone.{k}": v for k, v in ref_backbone.state_dict().items()},
           **{f"head.{k}": v for k, v in ref_head.state_dict().items()}}
    torch.manual_seed(0)
    clf, info = create_model("test_resnet", num_classes=3, weights="none", img_size=32)
    assert [n for n, _ in clf.named_children()] == ["backbone", "head"]
    assert type(clf.head) is nn.Linear
    sd = clf.state_dict()
    assert list(sd) == list(ref)
    for k in ref:
        assert torch.equal(sd[k], ref[k]), k
    x = torch.randn(2, 3, 32, 32)
    clf.eval(), ref_backbone.eval()
    with torch.no_grad():
        assert torch.equal(clf(x), ref_head(ref_backbone(x)))
    assert info.spec == ModelSpec("test_resnet", "test_resnet", 3, 32)
    assert clf.spec == info.spec and clf.num_classes == 3


def test_token_pool_takes_the_class_token():
    clf, info = create_model("test_vit", num_classes=3, weights="none", img_size=32, pool="token")
    assert clf.backbone.global_pool == "token" and info.spec.pool == "token"
    clf.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = clf.backbone.forward_features(x)  # (B, 1 + 4 patches, 64), final norm applied
        torch.testing.assert_close(clf.backbone(x), tokens[:, 0])
        assert clf(x).shape == (2, 3)
    assert all(k.startswith(("backbone.", "head.")) for k in clf.state_dict())


def test_token_pool_without_class_token_is_a_clear_error():
    with pytest.raises(ValueError, match="test_resnet.*pool='avg'"):
        create_model("test_resnet", num_classes=3, weights="none", pool="token")
    with pytest.raises(ValueError, match="Unknown pool 'max'"):
        create_model("test_resnet", num_classes=3, weights="none", pool="max")


def test_flatten_pool_sizes_the_head_at_img_size():
    clf, info = create_model("test_resnet", num_classes=3, weights="none", img_size=64,
                             pool="flatten")
    assert clf.head.in_features == 96 * 2 * 2  # test_resnet: 96 channels at stride 32
    assert clf.backbone.training  # the probe forward ran in eval mode and restored the mode
    assert torch.count_nonzero(clf.backbone.bn1.running_mean) == 0  # BN stats untouched
    x = torch.randn(2, 3, 64, 64)
    assert clf.backbone(x).shape == (2, 384)  # backbone(x) is the head's input (feature cache)
    assert clf(x).shape == (2, 3)
    assert all(k.startswith(("backbone.", "head.")) for k in clf.state_dict())
    with pytest.raises(RuntimeError):  # only the size it was built for
        clf(torch.randn(2, 3, 96, 96))
    vit, _ = create_model("test_vit", num_classes=3, weights="none", img_size=32, pool="flatten")
    assert vit.head.in_features == (1 + 4) * 64  # class token + 2x2 patches, 64-d


# --- head registry ---------------------------------------------------------------------------------
@pytest.fixture()
def clean_heads(monkeypatch):
    monkeypatch.setattr(factory.HEADS, "_items", dict(factory.HEADS._items))


def test_register_head(clean_heads):
    @register_head("test_mlp")
    def mlp(in_features: int, num_classes: int, hidden: int = 4) -> nn.Module:
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    clf, info = create_model("test_resnet", 3, weights="none", img_size=32, head="test_mlp",
                             head_args={"hidden": 8})
    assert clf.head[0].out_features == 8 and clf(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    assert info.spec.head == "test_mlp" and info.spec.head_args == {"hidden": 8}
    with pytest.raises(ValueError, match="already registered"):
        register_head("linear")(mlp)
    with pytest.raises(ValueError, match="Unknown head 'nope'.*linear"):
        create_model("test_resnet", 3, weights="none", head="nope")


def test_a_new_head_is_one_new_file(clean_heads, tmp_path, monkeypatch):
    """medtl_lib/models/head_<name>.py registering itself is found without editing the factory
    (here the file lives in a temporary folder added to the package path)."""
    (tmp_path / "head_demo.py").write_text(
        "from torch import nn\n"
        "from medtl_lib.models.factory import register_head\n\n"
        "@register_head('demo')\n"
        "def demo(in_features, num_classes, scale=1.0):\n"
        "    return nn.Linear(in_features, num_classes, bias=False)\n")
    monkeypatch.setattr(models_pkg, "__path__", [*models_pkg.__path__, str(tmp_path)])
    importlib.invalidate_caches()
    try:
        assert "demo" in factory.available_heads()
        clf, _ = create_model("test_resnet", 3, weights="none", img_size=32, head="demo")
        assert clf.head.bias is None
    finally:
        sys.modules.pop("medtl_lib.models.head_demo", None)


# --- ModelSpec -------------------------------------------------------------------------------------
def test_model_spec_round_trip(tmp_path):
    spec = ModelSpec("lite0", "tf_efficientnet_lite0", 4, 128, "flatten", "linear", {"a": [1, 2]},
                     [{"op": "truncate", "cut": "stage3"}])
    d = spec.to_dict()
    assert ModelSpec.from_dict(json.loads(json.dumps(d))) == spec
    d["head_args"]["a"].append(3)  # a copy: the frozen spec does not change
    assert spec.head_args == {"a": [1, 2]}
    path = save_model_spec(spec, tmp_path / "run")
    assert path.name == "model.json" and ModelSpec.from_dict(json.loads(path.read_text())) == spec
    with pytest.raises(ValueError, match="unknown fields"):
        ModelSpec.from_dict({**spec.to_dict(), "width": 2})
    with pytest.raises(ValueError, match="stage3.*not a cut point"):  # the op exists, the cut not
        build_model(spec, weights="none")
    with pytest.raises(NotImplementedError, match="prune"):  # an op of a newer kit
        build_model(replace(spec, surgery=[{"op": "prune"}]), weights="none")


# --- run folders -----------------------------------------------------------------------------------
def _fake_run(run, model, class_names, **extra):
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "class_names": class_names, "epoch": 1, **extra},
               run / "best.pt")


def _perturbed(model: nn.Module) -> nn.Module:
    with torch.no_grad():  # "trained": every tensor differs from a fresh init
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.1)
    return model.eval()


def test_load_run_model_from_model_json(tmp_path):
    torch.manual_seed(1)
    model, info = create_model("test_vit", num_classes=3, weights="none", img_size=32, pool="token")
    _perturbed(model)
    run = tmp_path / "run"
    _fake_run(run, model, ["a", "b", "c"])
    save_model_spec(info.spec, run)
    torch.manual_seed(5)
    expected_draw = torch.rand(3)
    torch.manual_seed(5)
    loaded, spec, meta = load_run_model(run)
    assert torch.equal(torch.rand(3), expected_draw)  # loading leaves the caller's RNG alone
    assert spec == info.spec and not loaded.training
    assert meta == {"class_names": ["a", "b", "c"], "epoch": 1}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_run_model_falls_back_to_config_yaml(tmp_path):
    torch.manual_seed(2)
    model, _ = create_model("test_resnet", num_classes=2, weights="none", img_size=32)
    _perturbed(model)
    run = tmp_path / "old_run"
    _fake_run(run, model, ["benign", "malignant"], timm_name="test_resnet", img_size=32)
    (run / "config.yaml").write_text(yaml.safe_dump({"dataset": "breakhis", "model": "test_resnet",
                                                     "img_size": 32, "lr": 0.001}))
    loaded, spec, meta = load_run_model(run)
    assert spec == ModelSpec("test_resnet", "test_resnet", 2, 32)
    assert meta["class_names"] == ["benign", "malignant"] and meta["img_size"] == 32
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_run_model_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"best\.pt is missing.*medtl train"):
        load_run_model(empty)
    model, _ = create_model("test_resnet", num_classes=2, weights="none", img_size=32)
    bare = tmp_path / "bare"
    _fake_run(bare, model, ["a", "b"])  # weights but no model.json, config.yaml or timm_name
    with pytest.raises(FileNotFoundError, match=r"neither model\.json nor config\.yaml"):
        load_run_model(bare)


# --- parameter groups ------------------------------------------------------------------------------
C = 3
# Methods spec, Section 1.3.0 [verified counts]; the kit's head is Linear(features, C).
SPEC_GROUPS = {
    "resnet50": (161, [9_536, 215_808, 1_219_584, 7_098_368, 14_964_736, 2048 * C + C]),
    "resnet18": (62, [9_536, 147_968, 525_568, 2_099_712, 8_393_728, 512 * C + C]),
    # G5 = norm5 is its own group: the kit's head is a separate module (see groups.py)
    "densenet121": (364, [9_536, 368_320, 1_051_776, 3_364_096, 2_158_080, 2_048, 1024 * C + C]),
    "vgg19": (38, [38_720, 221_440, 2_065_408, 8_259_584, 9_439_232, 119_545_856, 4096 * C + C]),
    "tf_efficientnet_lite0": (149, [928, 896, 13_968, 39_712, 198_480, 446_784, 1_652_640,
                                    1_017_600, 1280 * C + C]),
}


def _assert_ordered_partition(model: nn.Module, groups) -> None:
    """Groups concatenated = named_parameters() in order: bottom -> top, each parameter once."""
    assert [n for _, names in groups for n in names] == [n for n, _ in model.named_parameters()]
    assert groups[-1] == ("head", [n for n, _ in model.named_parameters() if n.startswith("head.")])
    labels = [g for g, _ in groups]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("name", list(SPEC_GROUPS))
def test_parameter_groups_match_the_spec_table(name):
    torch.manual_seed(0)
    model, _ = create_model(name, num_classes=C, weights="none")
    n_tensors, sizes = SPEC_GROUPS[name]
    assert len(list(model.parameters())) == n_tensors
    got = group_sizes(model)
    assert [s for _, s in got] == sizes
    assert got[0][0] == "stem" and got[-1][0] == "head"
    _assert_ordered_partition(model, parameter_groups(model))
    if name == "densenet121":
        assert dict(parameter_groups(model))["pre_logits"] == ["backbone.features.norm5.weight",
                                                               "backbone.features.norm5.bias"]
    if name == "vgg19":  # the head sits on the 4096-d pre-logits, not on the 512 conv channels
        groups = dict(parameter_groups(model))
        assert groups["stem"] == [f"backbone.features.{i}.{p}" for i in (0, 2)
                                  for p in ("weight", "bias")]
        with torch.no_grad():
            assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, C)


@pytest.mark.parametrize("name,labels", [
    ("convnext_tiny", ["stem", "stage1", "stage2", "stage3", "stage4", "pre_logits", "head"]),
    ("vit_small_patch16_224", ["stem"] + [f"stage{i}" for i in range(1, 13)]
     + ["pre_logits", "head"]),
])
def test_parameter_groups_cover_convnext_and_vit(name, labels):
    model, _ = create_model(name, num_classes=C, weights="none")
    groups = parameter_groups(model)
    assert [g for g, _ in groups] == labels
    _assert_ordered_partition(model, groups)


# --- MACs, latency, info ---------------------------------------------------------------------------
class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4)
        self.tok = nn.Linear(8, 6)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(torch.relu(self.conv1(x)))  # (1, 8, 4, 4)
        tokens = self.tok(x.flatten(2).transpose(1, 2))  # (1, 16 tokens, 6)
        return self.fc(tokens.mean(1))


def test_count_macs_by_hand():
    net = _TinyNet().train()
    expected = (8 * 8 * 8) * 3 * 9 + (8 * 4 * 4) * (8 // 4) * 9 + 16 * 8 * 6 + 6 * 10
    assert count_macs(net, 8) == expected == 16_956
    assert net.training  # mode restored, hooks removed
    assert all(not m._forward_hooks for m in net.modules())


def test_count_macs_resnet50_published_figure():
    model, _ = create_model("resnet50", num_classes=1000, weights="none")
    assert count_macs(model, 224) == pytest.approx(4.1e9, rel=0.02)


def test_model_info_and_latency():
    model, info = create_model("test_resnet", num_classes=3, weights="none", img_size=32)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    out = model_info(model, 32)
    assert out["params"] == sum(p.numel() for p in model.parameters())
    assert out["trainable_params"] == model.head.weight.numel() + model.head.bias.numel()
    assert out["macs"] == count_macs(model, 32) > 0
    assert out["latency_ms"] > 0 and out["latency_device"].startswith("cpu (")
    assert out["img_size"] == 32 and out["spec"] == info.spec.to_dict()
    assert model.training
    quick = model_info(model, 32, trainable_params=7, latency=False)
    assert quick["trainable_params"] == 7 and quick["latency_ms"] is None
    assert latency_ms(_TinyNet(), 8, warmup=1, reps=3) > 0
    hand = model_info(Classifier(timm.create_model("test_resnet", num_classes=0), 3), 32,
                      latency=False)
    assert hand["spec"] == {"pool": "avg", "head": "linear", "num_classes": 3}
