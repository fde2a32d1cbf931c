"""Seed 004's settings: pretrained / random x frozen / top / all, the ten presets, Keras-style heads."""
from __future__ import annotations

import pytest
import torch

from medtl_lib.models.factory import create_model, load_run_model, save_model_spec
from medtl_lib.models.names import PRESETS, SEED004_MODELS
from medtl_lib.training.strategies import get_strategy
from medtl_lib.training.strategy_top_layers import top_layer_names

# spec Section 4.2, verified: trainable parameters of a ResNet-18 stand-in with 4 classes
RESNET18_TRAINABLE = {"linear_probe": 2_052, "top_layers": 8_395_780, "full": 11_178_564}


def _trainable_after_epoch_start(model, strategy_name: str) -> int:
    strategy = get_strategy(strategy_name)
    stage = strategy.stages(1)[0]
    strategy.on_epoch_start(model, stage, 0)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("weights", ["none"])  # S4/S5 here; S1-S3 differ only in the weights
@pytest.mark.parametrize("strategy", sorted(RESNET18_TRAINABLE))
def test_trainable_counts_per_setting_match_the_spec(strategy, weights):
    model, _ = create_model("resnet18", 4, weights=weights, img_size=64)
    assert _trainable_after_epoch_start(model, strategy) == RESNET18_TRAINABLE[strategy]


def test_random_top_and_random_all_start_from_the_same_weights():
    """S4 and S5 differ only in what trains: the same seed gives the same random network."""
    torch.manual_seed(7)
    a, _ = create_model("resnet18", 4, weights="none", img_size=64)
    torch.manual_seed(7)
    b, _ = create_model("resnet18", 4, weights="none", img_size=64)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_top_layers_leaves_the_frozen_part_bit_for_bit(loaders):
    """After real optimizer steps the layers below the top stage, their BatchNorm statistics
    included, are unchanged; the top stage and the head moved."""
    from medtl_lib.device import select_device
    from medtl_lib.training.trainer import Trainer, schedule_factory

    train, val = loaders
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    top = top_layer_names(model)
    t = Trainer(model=model, strategy=get_strategy("top_layers"), device=select_device("cpu"), lr=1e-2, epochs=1,
                schedules=schedule_factory("none", {}), select_by="val_loss", progress=False)
    t.fit(train, val)
    after = t.model.state_dict()
    top_modules = {n.rsplit(".", 1)[0] for n in top}
    moved_top = frozen = 0
    for k, v in before.items():
        owner = k.rsplit(".", 1)[0]
        if owner in top_modules:
            moved_top += not torch.equal(after[k], v)
        else:
            assert torch.equal(after[k], v), f"{k} is below the top stage and changed"
            frozen += 1
    assert moved_top > 0 and frozen > 0
    assert any(n.startswith("head.") for n in top)


def test_top_groups_opens_more_stages_and_refuses_too_many():
    model, _ = create_model("resnet18", 4, weights="none", img_size=64)
    one, two = top_layer_names(model, 1), top_layer_names(model, 2)
    assert one < two and any(n.startswith("backbone.layer3.") for n in two - one)
    with pytest.raises(ValueError, match="4 stages"):
        top_layer_names(model, 5)


@pytest.mark.parametrize("name, prefixes", [
    ("inception_v3", ("Mixed_7a.", "Mixed_7b.", "Mixed_7c.")),
    ("legacy_xception", ("block12.", "conv3.", "bn3.", "conv4.", "bn4.")),
])
def test_exit_stage_is_listed_where_timm_groups_too_little(name, prefixes):
    model, _ = create_model(name, 2, weights="none", img_size=96)
    names = top_layer_names(model)
    backbone = {n[len("backbone."):] for n in names if n.startswith("backbone.")}
    assert backbone and all(n.startswith(prefixes) for n in backbone)
    assert {p for p in prefixes if any(n.startswith(p) for n in backbone)} == set(prefixes)
    with pytest.raises(ValueError, match="top_groups=1"):
        top_layer_names(model, 2)


# timm names and backbone sizes without a head, spec Section 4.2 [verified]
SIZES = {"vgg16_gap": 14_714_688, "vgg19_gap": 20_024_384, "resnet50_tv": 23_508_032,
         "resnet101_tv": 42_500_160, "resnet152_tv": 58_143_808, "inception_v3_tf": 21_785_568,
         "inception_resnet_v2_tf": 54_306_464, "xception_keras": 20_806_952,
         "densenet121_tv": 6_953_856, "densenet201_tv": 18_092_928}


def test_the_ten_presets_build_with_the_spec_sizes():
    assert set(SEED004_MODELS) == set(SIZES) and all(m in PRESETS for m in SEED004_MODELS)
    for name in SEED004_MODELS:
        with torch.device("meta"):
            model, info = create_model(name, 2, weights="none", img_size=256)
        assert sum(p.numel() for p in model.backbone.parameters()) == SIZES[name], name


def test_vgg_keras_head_pools_the_conv_features_and_rebuilds_from_the_run(tmp_path):
    """VGG without fc6/fc7: 512 pooled features into the head, recorded as surgery so that a
    run's model is rebuilt the same (13 conv layers: VGG16's 14.7 M conv parameters)."""
    torch.manual_seed(0)
    model, info = create_model("vgg16_gap", 3, weights="none", img_size=64)
    assert model.in_features == 512 and info.spec.surgery == [{"op": "drop_pre_logits"}]
    assert not any("pre_logits" in n for n, _ in model.named_parameters())
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "class_names": ["a", "b", "c"], "epoch": 1},
               run / "best.pt")
    save_model_spec(info.spec, run)
    loaded, spec, _ = load_run_model(run)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert spec.surgery == [{"op": "drop_pre_logits"}]


def test_unknown_surgery_is_refused_before_building():
    from medtl_lib.models.factory import ModelSpec, build_model

    with pytest.raises(NotImplementedError, match="prune.*known: drop_pre_logits"):
        build_model(ModelSpec("resnet18", "resnet18", 2, 64, surgery=[{"op": "prune"}]),
                    weights="none")


# ---------------------------------------------------------------- the tables of notebook 13
def test_settings_table_gain_and_ranking_from_run_folders(tmp_path):
    import numpy as np

    from medtl_lib.evaluation.paper004 import (
        SETTING_ORDER,
        collect,
        family_ranking,
        pretraining_gain,
        settings_table,
    )
    from seed004_support import fake_profile, fake_run

    labels = fake_profile(tmp_path)
    # a combination the paper did not train is left out, not mislabelled
    fake_run(tmp_path / "random_frozen", "resnet50_tv", "none", "linear_probe",
             np.full((len(labels), 2), 0.5), labels)
    runs = collect(tmp_path)
    assert len(runs) == 10 and set(runs["setting"]) == set(SETTING_ORDER)
    table = settings_table(runs, "chest_xray_pneumonia")
    assert list(table.columns) == list(SETTING_ORDER) and table.shape == (2, 5)
    cell = table.loc["resnet50_tv", "pretrained + all"]
    value, low, high = (float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").split())
    assert low <= value <= high
    # a binary set: DeLong's interval of the same AUC beside the bootstrap's, close to it
    row = runs[(runs["model"] == "resnet50_tv") & (runs["setting"] == "pretrained + all")].iloc[0]
    assert row["auroc_delong"] == pytest.approx(row["auroc_macro"])
    assert abs(row["auroc_delong_low"] - row["auroc_macro_low"]) < 0.02
    assert settings_table(runs, "chest_xray_pneumonia", "auroc_delong").loc[
        "resnet50_tv", "pretrained + all"].startswith(f"{row['auroc_delong']:.3f} [")
    gain = pretraining_gain(runs, n_boot=300).set_index("model")
    assert (gain["gain"] > 0).all() and (gain["low"] <= gain["gain"]).all()
    assert (gain["gain"] <= gain["high"]).all()
    ranks = family_ranking(runs)
    assert ranks.loc[("ResNet", "resnet101_tv"), "chest_xray_pneumonia"] == 1


def test_profiles_with_settings_name_runs_by_setting(tmp_path):
    from medtl_lib import orchestration as profiles

    p = profiles.load_profile("seed004_cpu", runs_dir=tmp_path)
    assert p.name == "seed004_cpu"  # a loop variable once overwrote it
    assert p.shape() == "15 run(s) = 1 dataset x 3 models x 5 settings x 1 seed"
    by_name = {p.run_name(r): r for r in p.runs}
    r = by_name["brain_tumor_mri__efficientnet_lite1__random_top__s1"]
    assert (r.weights, r.strategy, r.lr, r.img_size) == ("none", "top_layers", 1e-3, 128)
    steps = [s.name for s in profiles.plan(p)]
    # seed 004's reports, then the results page last; no other paper's
    assert steps[-3:] == ["13_init_settings", "14_confidence_intervals", "05_results"]
    assert not {"02_dual_monitor_walkthrough", "07_strategies", "08_strategy_comparison"} & set(steps)
    binary = profiles.load_profile("seed004_binary_cpu", runs_dir=tmp_path)
    assert binary.shape() == "5 run(s) = 1 dataset x 1 model x 5 settings x 1 seed"
    # the binary check is the same protocol on another label set: same settings, same defaults
    def key(r):
        return (r.weights, r.strategy, r.lr, r.img_size, r.epochs, r.optimizer, r.schedule,
                r.select_by, r.split)
    lite0 = {key(r) for r in p.runs if r.model == "efficientnet_lite0"}
    assert {key(r) for r in binary.runs} == lite0 and len(lite0) == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [brain_tumor_mri]\nmodels: [efficientnet_lite0]\n"
                   "settings: {a: {weights: none}}\n")
    with pytest.raises(ValueError, match="'strategy' among them"):
        profiles.load_profile(bad, runs_dir=tmp_path)


def test_direct_runner_summarises_a_settings_profile_by_setting(tmp_path, capsys):
    """scripts/run_profile_direct.py once printed seed 001's strategy table for seed 004, which
    pooled pretrained + all with random + all as one 'full' strategy with two 'seeds'."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "run_profile_direct.py"
    spec = importlib.util.spec_from_file_location("run_profile_direct", script)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    from seed004_support import fake_profile

    fake_profile(tmp_path, models=("resnet50_tv",))
    runner._print_settings_tables(tmp_path)
    out = capsys.readouterr().out
    assert "random + all" in out and "pretrained + all" in out and "2 seeds" not in out
    gain_line = [line for line in out.splitlines() if line.startswith("chest_xray_pneumonia")
                 and "resnet50_tv" in line and "+" in line][-1]
    gain, low, high = (float(x) for x in gain_line.split()[-3:])
    assert low <= gain <= high and gain > 0
