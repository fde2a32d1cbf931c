"""Seed 003's model surgery and strategies: the spec's structural numbers (Section 3.1/3.6),
bit-for-bit prefixes, rebuild from a run folder, and what LWFT trains at which rate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from medtl_lib.models.factory import create_model, load_run_model, save_model_spec
from medtl_lib.models.surgery import slim, truncate
from medtl_lib.training.strategies import get_strategy


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, cut, params", [
    ("resnet50", "stem", 9_536), ("resnet50", "layer1", 225_344), ("resnet50", "layer2", 1_444_928),
    ("resnet50", "layer3.3", 6_308_928), ("resnet50", "layer3", 8_543_296),
    ("resnet50", "layer4", 23_508_032), ("resnet18", "layer1.0", 83_520),
    ("resnet18", "layer3", 2_782_784), ("densenet121", "features.transition1", 377_856),
    ("densenet121", "features.transition2", 1_429_632),
    ("densenet121", "features.transition3", 4_793_728),
    ("tf_efficientnet_lite0", "blocks.0", 1_824), ("tf_efficientnet_lite0", "blocks.4", 700_768),
    ("tf_efficientnet_lite0", "blocks.6", 2_958_848),
])
def test_truncation_keeps_the_spec_parameter_counts(name, cut, params):
    assert _n(truncate(timm.create_model(name, num_classes=0), cut)) == params


def test_densenet_is_cut_after_the_transition_as_the_authors_did():
    m = truncate(timm.create_model("densenet121", num_classes=0), "features.transition2")
    assert m.num_features == 256 and m(torch.zeros(1, 3, 224, 224)).shape == (1, 256)


@pytest.mark.parametrize("slim_from, params", [("layer4", 5_210_176), ("layer3", 3_390_272),
                                                ("layer2", 2_934_976), ("layer1", 2_814_976)])
def test_transfusion_halves_the_top_and_keeps_the_prefix(slim_from, params):
    torch.manual_seed(0)
    base = timm.create_model("resnet18", num_classes=0)
    slimmed = slim(base, slim_from)
    assert _n(slimmed) == params and slimmed.num_features == 256
    stages = ["layer1", "layer2", "layer3", "layer4"]
    kept = ("conv1.", "bn1.", *(f"{s}." for s in stages[:stages.index(slim_from)]))
    ref = base.state_dict()
    for k, v in slimmed.state_dict().items():
        if k.startswith(kept):
            assert torch.equal(v, ref[k]), k  # pretrained prefix, bit for bit
        elif k.endswith("bn1.weight") or k.endswith("bn3.weight"):
            assert torch.equal(v, torch.ones_like(v)), k  # no zero-init of the last BN


def test_ttl_model_info_reproduces_table_1():
    """TTL-1 (ResNet-50 cut after layer3, 2 classes): 8.55 M pooled, 8,944,706 flatten at 224 px."""
    s = get_strategy("ttl", {"cut": "layer3"}).surgery()
    pooled, _ = create_model("resnet50", 2, weights="none", img_size=224, surgery=s)
    flat, _ = create_model("resnet50", 2, weights="none", img_size=224, pool="flatten", surgery=s)
    assert _n(pooled) == 8_545_346 and _n(flat) == 8_944_706
    tf, _ = create_model("resnet50", 2, weights="none", img_size=224,
                         surgery=get_strategy("transfusion", {"slim_from": "layer4"}).surgery())
    assert _n(tf) == 12_945_472 + 2 * 1024 + 2  # "12.9" in Table 1
    tf_flat, _ = create_model("resnet50", 2, weights="none", img_size=224, pool="flatten",
                              surgery=get_strategy("transfusion", {"slim_from": "layer4"}).surgery())
    assert _n(tf_flat) == 12_945_472 + 2 * 1024 * 7 * 7 + 2  # the slimmed map, unpooled
    assert tf_flat(torch.zeros(1, 3, 224, 224)).shape == (1, 2)


def test_truncated_run_model_rebuilds_from_model_json(tmp_path):
    torch.manual_seed(3)
    s = get_strategy("ttl", {"cut": "layer2.0"}).surgery()
    model, info = create_model("resnet18", 3, weights="none", img_size=64, surgery=s)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "class_names": ["a", "b", "c"], "epoch": 1},
               run / "best.pt")
    save_model_spec(info.spec, run)
    loaded, spec, _ = load_run_model(run)
    assert spec.surgery == [{"op": "truncate", "cut": "layer2.0"}]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_bad_cut_points_are_named():
    with pytest.raises(ValueError, match="layer5.*not a cut point"):
        truncate(timm.create_model("resnet18", num_classes=0), "layer5")
    with pytest.raises(ValueError, match="blocks 0..1, not 7"):
        truncate(timm.create_model("resnet18", num_classes=0), "layer2.7")
    with pytest.raises(ValueError, match="ResNet, DenseNet and EfficientNet"):
        truncate(timm.create_model("vit_tiny_patch16_224", num_classes=0), "blocks.3")
    with pytest.raises(ValueError, match="needs a cut point"):
        get_strategy("ttl")


def test_lwft_freezes_the_bottom_and_trains_the_top_at_a_tenth(loaders):
    from medtl_lib.device import select_device
    from medtl_lib.training.trainer import Trainer, schedule_factory

    train, val = loaders
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    first = [n for n, _ in model.backbone.named_children() if n.startswith("layer")][-1]
    strategy = get_strategy("lwft", {"finetune_from": first})
    groups = strategy.param_groups(model, 1e-3, strategy.stages(1)[0])
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 1e-3), ("backbone", 1e-4)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = Trainer(model=model, strategy=strategy, device=select_device("cpu"), lr=1e-2, epochs=1,
                schedules=schedule_factory("none", {}), select_by="val_loss", progress=False)
    t.fit(train, val)
    after = t.model.state_dict()
    for k, v in before.items():
        if not k.startswith((f"backbone.{first}.", "head.")):
            assert torch.equal(after[k], v), f"{k} is below {first} and changed"
    assert not torch.equal(after["head.weight"], before["head.weight"])


def test_search_cut_block_then_layers_resumes_and_reports_the_chosen(synth_root, tmp_path):
    """The block search, then the layers between the boundaries around the best block; chosen by
    validation AUROC (ties: the smaller model); rerun trains nothing again."""
    import json

    import pandas as pd

    from medtl_lib.cli import main
    from medtl_lib.config import RunConfig
    from medtl_lib.search_cut import search_cut

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    base = RunConfig(dataset="brain_tumor_mri", data_dir=str(data), model="resnet18",
                     weights="none", img_size=32, epochs=1, batch_size=16)
    lines: list[str] = []
    table = search_cut(base, "ttl", tmp_path / "s", log=lines.append)
    blocks = table[table["stage"] == "block"]
    assert blocks["point"].tolist() == ["layer1", "layer2", "layer3", "layer4"]
    best_block = blocks.sort_values(["val_auroc", "params"], ascending=[False, True]).iloc[0]
    layers = table[table["stage"] == "layer"]["point"].tolist()
    assert layers and all(p.split(".")[0] in (best_block["point"], f"layer{int(best_block['point'][-1]) + 1}")
                          for p in layers)
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["val_auroc"] == table["val_auroc"].max()
    assert chosen["params"] == table[table["val_auroc"] == chosen["val_auroc"]]["params"].min()
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["chosen"] == chosen["point"] and "accuracy" in saved["test"]
    assert pd.read_csv(tmp_path / "s" / "search.csv").shape[0] == len(table)
    # rerun from the command line: every candidate is read back, none trained again
    assert main(["search-cut", "--method", "ttl", "--dataset", "brain_tumor_mri", "--data-dir",
                 str(data), "--model", "resnet18", "--weights", "none", "--img-size", "32",
                 "--epochs", "1", "--batch-size", "16", "--out", str(tmp_path / "s")]) == 0
    assert pd.read_csv(tmp_path / "s" / "search.csv")["skipped"].all()


@pytest.mark.parametrize("strategy, args, paper_gmacs", [
    ("full", {}, 4.12), ("ttl", {"cut": "layer3"}, 3.31), ("ttl", {"cut": "layer3.3"}, 2.87),
    ("transfusion", {"slim_from": "layer4"}, 3.56)])
def test_macs_in_the_authors_convention_match_table_1(strategy, args, paper_gmacs):
    """ptflops (the authors' counter) adds biases, norms, activations and pooling to conv +
    linear; with it the kit's counts round to Table 1's at 224 px."""
    from medtl_lib.models.info import count_macs

    model, _ = create_model("resnet50", 2, weights="none", img_size=224,
                            surgery=get_strategy(strategy, args).surgery())
    ours = count_macs(model, 224, convention="ptflops") / 1e9
    assert round(ours, 2) == paper_gmacs
    assert count_macs(model, 224) / 1e9 < ours  # conv + linear alone is the smaller count


def test_per_class_auprc_trapezoid_differs_from_average_precision():
    """On a hand example the trapezoidal PR area (the authors' AUPRC) and average precision differ
    by more than rounding; a perfect ranker gets 1 on both and AUROC 1."""
    import numpy as np

    from medtl_lib.evaluation.paper003 import per_class_auc

    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    p1 = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    table = per_class_auc(labels, np.stack([1 - p1, p1], 1), ["neg", "pos"])
    pos = table.loc["pos"]
    assert abs(pos["auprc_trapezoid"] - pos["average_precision"]) > 0.02
    assert pos["auroc"] == pytest.approx(11 / 15)  # 11 of the 15 positive-negative pairs ordered
    perfect = per_class_auc(labels, np.stack([1 - labels, labels], 1).astype(float), ["neg", "pos"])
    assert (perfect[["auroc", "auprc_trapezoid", "average_precision"]] == 1.0).all().all()


def test_complexity_table_has_table_1s_columns():
    from medtl_lib.evaluation.paper003 import complexity_table

    t = complexity_table("resnet18", {"FTL": [], "TTL layer3": [{"op": "truncate", "cut": "layer3"}]},
                         img_size=128, latency=False)
    assert list(t.columns) == ["params_M", "macs_G", "macs_ptflops_G", "latency_ms"]
    assert t.loc["TTL layer3", "params_M"] < t.loc["FTL", "params_M"]
    assert abs(t.loc["FTL", "macs_G"] - 0.5922) < 0.001  # spec 3.6: 592.2 M at 128 px
    assert abs(t.loc["TTL layer3", "macs_G"] - 0.4580) < 0.001  # 458.0 M


@pytest.mark.parametrize("name, cut", [("resnet18", None), ("resnet18", "layer3"),
                                       ("resnet18", "layer2.0"), ("tf_efficientnet_lite0", "blocks.4"),
                                       ("densenet121", "features.transition2")])
def test_grad_cam_on_the_last_kept_block(name, cut):
    from medtl_lib.analysis.gradcam import grad_cam, last_block

    surgery = [{"op": "truncate", "cut": cut}] if cut else []
    torch.manual_seed(0)
    model, _ = create_model(name, 3, weights="none", img_size=64, surgery=surgery)
    layer = last_block(model)
    if name == "resnet18":
        stage = cut.split(".")[0] if cut else "layer4"
        assert layer is getattr(model.backbone, stage)[-1]
    maps = grad_cam(model, torch.randn(2, 3, 64, 64), target_class=1)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    assert maps.min() >= 0 and maps.max() <= 1


def test_a_profile_searches_beside_its_ftl_runs_and_the_summary_compares_them(synth_root, tmp_path):
    """``searches:`` puts one search per FTL run beside it; notebook 09 gets the run's settings;
    search_summary pairs each chosen cut with its baseline on the same test images."""

    from medtl_lib import orchestration as profiles
    from medtl_lib.evaluation.paper003 import search_summary
    from medtl_lib.search_cut import search_cut
    from medtl_lib.train_run import train_run

    data = synth_root("brain_tumor_mri", n_per_class=10, size=32)
    spec = tmp_path / "p.yaml"
    spec.write_text("name: s3\ndatasets: [brain_tumor_mri]\nmodels: [resnet18]\n"
                    "strategies: [full]\nsearches: [ttl]\nseeds: [1]\n"
                    f"data_dirs: {{brain_tumor_mri: {data}}}\n"
                    "defaults: {weights: none, img_size: 32, epochs: 1, batch_size: 16}\n")
    p = profiles.load_profile(spec, runs_dir=tmp_path / "runs")
    assert p.shape().endswith("+ 1 cut search")
    (search,) = p.searches
    assert search.name == "search_ttl__brain_tumor_mri__resnet18"
    assert search.folder.parent == Path(p.runs[0].out).parent
    step = [s for s in profiles.plan(p) if s.name.endswith("09_truncation")][0]
    assert step.parameters["search_dir"] == str(search.folder)
    assert step.parameters["search_config"]["img_size"] == 32 and "out" not in step.parameters["search_config"]
    svcca_step = [s for s in profiles.plan(p) if s.name.endswith("10_representations")]
    assert [s.parameters["run_dir"] for s in svcca_step] == [p.runs[0].out]  # one per FTL run
    with pytest.raises(ValueError, match="cut-search methods"):
        spec.write_text(spec.read_text().replace("searches: [ttl]", "searches: [tll]"))
        profiles.load_profile(spec, runs_dir=tmp_path / "runs")

    assert search_summary(p.out_root).empty  # nothing finished yet
    train_run(p.runs[0], progress=False, log=lambda *a: None)
    search_cut(search.base, "ttl", search.folder, fine=False, log=lambda *a: None)
    row = search_summary(p.out_root, n_boot=200).iloc[0]
    assert (row["method"], row["run"]) == ("ttl", "brain_tumor_mri__resnet18")
    assert 0 < row["params_share"] <= 1
    eps = 1e-9  # the bootstrap's rank AUROC and sklearn's may differ in the last bit
    assert row["auroc_low"] - eps <= row["auroc"] <= row["auroc_high"] + eps
    assert row["diff"] == pytest.approx(row["auroc"] - row["ftl_auroc"])
    assert row["diff_low"] - eps <= row["diff"] <= row["diff_high"] + eps

    # under a parameter budget: the best validation AUROC among the candidates inside it
    table = pd.read_csv(search.folder / "search.csv")
    ftl_params = row["params"] / row["params_share"]
    inside = table[table["params"] <= 0.5 * ftl_params]
    assert 0 < len(inside) < len(table)
    budget = search_summary(p.out_root, n_boot=200, max_share=0.5).iloc[0]
    best = inside.sort_values(["val_auroc", "params"], ascending=[False, True]).iloc[0]
    assert budget["chosen"] == best["point"] and budget["params_share"] <= 0.5
    tested = json.loads((Path(best["path"]) / "metrics.json").read_text())["test"]
    assert budget["auroc"] == pytest.approx(tested["auroc_macro"])
    assert budget["diff"] == pytest.approx(budget["auroc"] - budget["ftl_auroc"])
    assert search_summary(p.out_root, n_boot=200, max_share=1e-6).empty  # nothing that small
