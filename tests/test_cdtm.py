"""Seed 002's CDTM head on the kit's token pool: the spec's exact parameter counts, the
attention's invariants, the einsum against the authors' repeat, and clear errors (spec 2.7)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medtl_lib.metrics import classification_metrics, f1_of_macro_pr
from medtl_lib.models.factory import create_model
from medtl_lib.models.head_cdtm import CDTM


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, tokens, dim, code_params", [
    ("vit_base_patch16_224", 196, 768, 17_074_368),
    ("convnext_base", 49, 1024, 10_479_020),
])
def test_cdtm_adds_exactly_the_spec_counts(name, tokens, dim, code_params):
    with torch.no_grad():
        model, _ = create_model(name, 4, weights="none", img_size=224, pool="tokens",
                                head="cdtm")
    cdtm = model.head.cdtm
    assert (cdtm.num_tokens, cdtm.dim) == (tokens, dim)
    assert _count(cdtm) == code_params
    assert _count(model.head.fc) == dim * 4 + 4
    paper = CDTM(dim, tokens, 300, "paper")
    assert _count(paper) == code_params - (dim * dim + dim) - 4 * dim


def test_tokens_of_a_cnn_and_the_forward_shape():
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 3, weights="none", img_size=64, pool="tokens",
                            head="cdtm", head_args={"centers": 7})
    x = torch.randn(2, 3, 64, 64)
    tokens = model.backbone(x)
    assert tokens.shape == (2, model.head.cdtm.num_tokens, model.in_features)
    fmap = model.backbone.forward_features(x)
    assert torch.equal(tokens, fmap.flatten(2).transpose(1, 2))
    assert model(x).shape == (2, 3)
    with pytest.raises(ValueError, match="CDTM was built for .* tokens"):
        model(torch.randn(1, 3, 96, 96))


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_attention_weights_mixing_and_the_authors_repeat(variant):
    torch.manual_seed(1)
    cdtm = CDTM(dim=16, num_tokens=5, centers=9, variant=variant)
    x = torch.randn(3, 5, 16)
    a = cdtm.weights(x)
    assert torch.allclose(a.sum(1), torch.ones(3), atol=1e-6) and (a > 0).all()
    # the authors' code: attn repeated to (B, n, p, p), times M, summed over the centres
    ref = (a[:, :, None, None].repeat(1, 1, 5, 5) * cdtm.mixing[None]).sum(1)
    assert torch.allclose(cdtm.mixed_matrix(x), ref, atol=1e-6)
    assert cdtm(x).shape == (3, 5, 16)
    if variant == "paper":  # cosine / sqrt(d): the logits stay within +-1/sqrt(d)
        q = torch.nn.functional.normalize(x.sum(1), dim=-1)
        logits = q @ torch.nn.functional.normalize(cdtm.centers, dim=0) / math.sqrt(16)
        assert logits.abs().max() <= 1 / math.sqrt(16) + 1e-6
        assert torch.allclose(a, logits.softmax(-1))


def test_one_centre_mixes_with_its_own_matrix():
    cdtm = CDTM(dim=8, num_tokens=4, centers=1)
    x = torch.randn(2, 4, 8)
    assert torch.equal(cdtm.weights(x), torch.ones(2, 1))
    assert torch.equal(cdtm.mixed_matrix(x), cdtm.mixing.expand(2, 4, 4))


def test_pools_and_heads_must_fit():
    with pytest.raises(ValueError, match="does not take"):
        create_model("test_resnet", 3, weights="none", img_size=64, pool="tokens")
    with pytest.raises(ValueError, match="pool='tokens'"):
        create_model("test_resnet", 3, weights="none", img_size=64, head="cdtm")
    with pytest.raises(ValueError, match="variant"):
        CDTM(8, 4, 3, variant="poster")


def test_f1_of_macro_pr_is_the_papers_f1_and_not_macro_f1():
    assert round(f1_of_macro_pr(0.9274, 0.9108) * 100, 2) == 91.90  # Table IV, ViT-B-CDTM-SFT
    labels = np.array([0] * 10 + [1] * 10)  # class 0 over-called, class 1 under-called
    pred = np.array([0] * 10 + [0] * 8 + [1] * 2)
    m = classification_metrics(labels, np.eye(2)[pred], ["a", "b"])
    assert f1_of_macro_pr(m["precision_macro"], m["recall_macro"]) > m["f1_macro"] + 0.05


# ---------------------------------------------------------------- cdtm_lp and sft
def _cdtm_model():
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32, pool="tokens",
                            head="cdtm", head_args={"centers": 5})
    return model


def test_cdtm_lp_trains_the_head_only_and_needs_one(loaders):
    from test_strategies_seed001 import _model, _snapshot, _trainer

    train, val = loaders
    t = _trainer("cdtm_lp", model=_cdtm_model(), epochs=1)
    before = _snapshot(t.model)
    t.fit(train, val)
    after = t.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("head.") for k in moved)
    assert {k for k in before if k.startswith("head.cdtm.")} & moved  # the module trains
    with pytest.raises(ValueError, match="--pool tokens --head cdtm"):
        _trainer("cdtm_lp", model=_model(), epochs=1).fit(train, val)


def test_sft_stages_the_probe_then_everything_at_a_tenth(loaders, tmp_path):
    from medtl_lib.training.strategies import get_strategy
    from test_strategies_seed001 import _trainer

    stages = get_strategy("sft").stages(3)
    assert [(s.name, s.epochs, s.lr_factor, s.frozen_backbone) for s in stages] == [
        ("lp", 3, 1.0, True), ("ft", 3, 0.1, False)]
    train, val = loaders
    t = _trainer("sft", model=_cdtm_model(), epochs=2, ckpt=tmp_path)
    h = t.fit(train, val).history
    assert h["stage"].tolist() == ["lp", "lp", "ft", "ft"]
    assert h["lr"].iloc[2] == pytest.approx(h["lr"].iloc[0] / 10)
    lp = h[h["stage"] == "lp"]
    assert (lp["trainable_params"] == _count(t.model.head)).all()


@pytest.mark.parametrize("strategy", ["sft", "lp_ft"])
def test_ft_bn_frozen_keeps_the_running_statistics_the_probe_was_fitted_with(loaders, strategy):
    """With ft_bn=frozen, stage 2 trains every weight (BN's affine ones too) but no BatchNorm
    running statistic moves; with the default, they move as in full fine-tuning."""
    from medtl_lib.training.strategies import get_strategy
    from test_strategies_seed001 import _snapshot, _trainer

    assert get_strategy(strategy).args["ft_bn"] == "batch"  # the authors' code: the default
    train, val = loaders
    moved = {}
    for ft_bn in ("batch", "frozen"):
        t = _trainer(strategy, {"ft_bn": ft_bn}, model=_cdtm_model(), epochs=2)
        before = _snapshot(t.model)
        t.fit(train, val)
        after = t.model.state_dict()
        stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
        affine = [k.replace("running_mean", "weight") for k in stats if k.endswith("running_mean")]
        assert stats and affine
        moved[ft_bn] = sum(not torch.equal(before[k], after[k]) for k in stats)
        assert all(not torch.equal(before[k], after[k]) for k in affine)  # still trained
    assert moved["frozen"] == 0 and moved["batch"] > 0
    with pytest.raises(ValueError, match="ft_bn"):
        get_strategy(strategy, {"ft_bn": "none"})


def test_cdtm_from_the_command_line(synth_root, tmp_path, capsys):
    import json

    from medtl_lib.cli import main

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "brain_tumor_mri", "--data-dir", str(data), "--model",
                 "test_resnet", "--weights", "none", "--img-size", "32", "--epochs", "1",
                 "--pool", "tokens", "--head", "cdtm", "--head-arg", "centers=6",
                 "--head-arg", "variant=paper", "--strategy", "cdtm_lp", "--out", str(out),
                 "--no-progress"]) == 0
    spec = json.loads((out / "model.json").read_text())
    assert spec["head"] == "cdtm" and spec["head_args"] == {"centers": 6, "variant": "paper"}
    capsys.readouterr()
    assert main(["model", "info", "--model", "test_resnet", "--img-size", "32", "--pool",
                 "tokens", "--head", "cdtm", "--head-arg", "centers=6", "--strategy", "cdtm_lp",
                 "--no-latency", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 0 < info["trainable_params"] < info["params"]
    assert main(["model", "info", "--model", "test_resnet", "--pool", "tokens", "--head", "cdtm",
                 "--head-arg", "centre=6", "--no-latency"]) == 2
    assert "unexpected keyword argument 'centre'" in capsys.readouterr().err


def test_scratch_discards_the_starting_weights_of_the_backbone_only():
    from medtl_lib.training.strategies import get_strategy

    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    get_strategy("scratch").setup(model)
    after = model.state_dict()
    weights = [k for k in before if k.startswith("backbone.") and k.endswith("weight")]
    assert sum(not torch.equal(before[k], after[k]) for k in weights) >= len(weights) // 2
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("head."))


def test_seed002_presets_name_timm_pretrained_weights():
    import timm

    from medtl_lib.models.names import PRESETS, resolve_model_name

    pretrained = set(timm.list_pretrained())
    for key in ("vit_b_in21k", "vit_b_laion400m", "vit_b_laion2b", "convnext_b_in21k",
                "convnext_b_laion2b"):
        name, preset = resolve_model_name(key)
        assert name in pretrained and preset.lr == 1e-4, key
    assert PRESETS["vit_b_laion2b"].label == "ViT-B (LAION-2B)"


# ---------------------------------------------------------------- seed 002's augmentation
def test_cdtm_augmentation_draws_and_eval_is_the_resize_alone():
    from medtl_lib.data.aug_cdtm import CDTMAugment

    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    plain = CDTMAugment(32, mean, std, train=False)(x)
    resized = torch.nn.functional.interpolate(x.float() / 255, size=(32, 32), mode="bilinear",
                                              antialias=True, align_corners=False)
    assert torch.allclose(plain, (resized.clamp(0, 1) - 0.5) / 0.25, atol=1e-6)
    off = CDTMAugment(32, mean, std, flip=0, color=0, affine=0)
    assert torch.allclose(off(x), plain, atol=1e-5)  # nothing drawn: the eval picture
    aug = CDTMAugment(32, mean, std)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (8, 3, 32, 32)  # reproducible with a generator
    assert not torch.allclose(a, plain)
    flips = CDTMAugment(32, mean, std, flip=1.0, color=0, affine=0)(x)
    assert torch.allclose(flips, plain.flip(-1).flip(-2), atol=1e-5)


def test_cdtm_augmentation_needs_the_cached_pipeline():
    from medtl_lib.config import RunConfig

    with pytest.raises(ValueError, match="pipeline='cached'"):
        RunConfig(augmentation="cdtm", pipeline="per_image")
    with pytest.raises(ValueError, match="augmentation must be one of"):
        RunConfig(augmentation="albumentations")


# ---------------------------------------------------------------- seed 002's tables
def test_paper_cells_beside_the_kits_with_the_papers_f1():
    import pandas as pd

    from medtl_lib.evaluation.paper002 import TABLE_VI, side_by_side

    runs = pd.DataFrame({"model": ["vit_b_laion2b"] * 2, "strategy": ["sft"] * 2,
                         "status": ["complete"] * 2, "precision": [0.92, 0.94],
                         "recall": [0.90, 0.92], "test_acc": [0.93, 0.95], "f1": [0.0, 0.0],
                         "test_acc_ci_low": [0.91, 0.93], "test_acc_ci_high": [0.95, 0.97]})
    t = side_by_side(TABLE_VI, runs)
    row = t.loc[("vit_b_laion2b", "sft")]
    assert (row["Acc kit low"], row["Acc kit high"]) == pytest.approx((92.0, 96.0))
    assert math.isnan(row["Pre kit low"])  # runs without that interval: none, not a made-up one
    assert "F1 kit low" not in t.columns  # the paper's F1 of macro P and R gets no interval
    assert row["Pre kit"] == pytest.approx(93.0) and row["Rec kit"] == pytest.approx(91.0)
    assert row["F1 kit"] == pytest.approx(100 * f1_of_macro_pr(0.93, 0.91))
    assert row["Acc diff"] == pytest.approx(94.0 - 94.24) and row["seeds"] == 2
    other = t.loc[("vit_b_in21k", "cdtm_lp")]
    assert other["Pre paper"] == 80.02 and math.isnan(other["Pre kit"]) and other["seeds"] == 0


def test_orderings_pair_the_seeds_and_say_when_one_fails(tmp_path):
    import yaml

    from medtl_lib.evaluation.paper002 import orderings
    from medtl_lib.evaluation.report import collect_runs
    from results_support import BRAIN, write_run

    def run(strategy, seed, accuracy):
        out = write_run(tmp_path, "brain_tumor_mri", "efficientnet_lite0", BRAIN, accuracy,
                        tmp_path / "data", seed=seed, n_test=200,
                        folder=f"brain_tumor_mri__efficientnet_lite0__{strategy}__s{seed}")
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        (out / "config.yaml").write_text(yaml.safe_dump({**cfg, "strategy": strategy}))

    for seed in (1, 2):
        run("linear_probe", seed, 0.6)
        run("cdtm_lp", seed, 0.85)
    run("cdtm_lp", 3, 0.85)  # no linear probe with this seed: not paired
    run("sft", 1, 0.65)  # worse than the CDTM probe it started from
    t = orderings(collect_runs(tmp_path), n_boot=300).set_index("ordering")
    lp = t.loc["cdtm_lp ≥ linear_probe"]
    assert lp["holds"] and lp["seeds paired"] == 2 and lp["seeds holding"] == 2
    assert lp["difference"] > 0.1 and lp["per-seed paired 95% CI"].count("s") == 2
    low = float(lp["per-seed paired 95% CI"].split("[")[1].split(",")[0])
    assert low > 0  # 200 images, 25 points apart: the paired interval excludes 0
    sft = t.loc["sft ≥ cdtm_lp"]
    assert not sft["holds"] and sft["seeds paired"] == 1 and sft["seeds holding"] == 0
    assert math.isnan(sft["sft sd"])  # one seed has no spread
    with pytest.raises(ValueError, match="metric must be one of"):
        orderings(collect_runs(tmp_path), metric="auroc")


def test_table_vii_measured_for_the_cdtm_rows():
    from medtl_lib.evaluation.paper002 import table_vii_measured

    t = table_vii_measured(("ViT-B-CDTM-LP",))
    row = t.loc["ViT-B-CDTM-LP"]
    assert round(row["Train % kit"], 1) == 16.6 == row["Train % paper"]
    assert row["Params (M) kit"] == pytest.approx(102.876100)
    assert row["MACs (G) kit"] == pytest.approx(17.89, abs=0.01)


def test_avg_raw_is_the_token_mean_without_convnexts_head_norm():
    x = torch.randn(2, 3, 64, 64)
    for name, same in (("test_resnet", True), ("convnext_atto", False)):
        torch.manual_seed(0)
        avg, _ = create_model(name, 3, weights="none", img_size=64, pool="avg")
        torch.manual_seed(0)
        raw, _ = create_model(name, 3, weights="none", img_size=64, pool="avg_raw")
        raw.load_state_dict(avg.state_dict())
        avg.eval(), raw.eval()
        with torch.no_grad():
            fa, fr = avg.backbone(x), raw.backbone(x)
            expected = raw.backbone.forward_features(x).mean((2, 3))
        assert fr.shape == fa.shape and torch.allclose(fr, expected, atol=1e-6)
        assert torch.allclose(fa, fr, atol=1e-5) == same, name


def test_clip_normalisation_is_recorded_with_the_run(synth_root, tmp_path):
    from medtl_lib.config import RunConfig
    from medtl_lib.data.augmentations import CLIP_MEAN, CLIP_STD
    from medtl_lib.models.factory import load_run_model
    from medtl_lib.train_run import train_run

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    train_run(RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="test_resnet",
                        weights="none", img_size=32, epochs=1, normalize="clip",
                        out=str(tmp_path / "r")), progress=False, log=lambda *a: None)
    _, _, meta = load_run_model(tmp_path / "r")
    assert tuple(meta["data_config"]["mean"]) == CLIP_MEAN
    assert tuple(meta["data_config"]["std"]) == CLIP_STD
    with pytest.raises(ValueError, match="normalize must be one of"):
        RunConfig(normalize="imagenet")


def test_sft_killed_inside_stage_two_resumes_identically(loaders, tmp_path):
    from test_strategies_seed001 import _trainer, assert_same_run

    train, val = loaders

    def make(ckpt):
        return _trainer("sft", model=_cdtm_model(), epochs=2, ckpt=ckpt, schedule="cosine")

    ref = make(tmp_path / "ref").fit(train, val, seed=4)
    t = make(tmp_path / "run")

    def kill(row):
        if row["epoch"] == 3:  # the first epoch of stage ft
            raise KeyboardInterrupt

    t.callbacks.append(kill)
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val, seed=4)
    resumed = make(tmp_path / "run").fit(train, val, seed=4)
    assert resumed.resumed_from == 3
    assert_same_run(ref, resumed, tmp_path / "ref", tmp_path / "run")
    lp = torch.load(tmp_path / "run" / "best_lp.pt", weights_only=True)["model"]
    start = _cdtm_model().state_dict()  # stage lp kept the backbone at its starting weights
    assert all(torch.equal(lp[k], start[k]) for k in start if k.startswith("backbone."))
