"""BatchNorm modes of the references (issue 27, items 3 and 4): Auto-RGN's ``bn_mode`` (the
reference code's default ``train_mode: eval`` keeps every pretrained statistic) and LWFT's
``frozen_bn`` (the authors' ``model.train()`` lets the frozen layers' statistics follow the new
data while their weights never move); and the seed profiles that opt into them."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medtl_lib import orchestration as profiles
from medtl_lib.device import select_device
from medtl_lib.models.factory import create_model
from medtl_lib.training.strategies import get_strategy
from medtl_lib.training.strategy_truncation import trained_from
from medtl_lib.training.trainer import Trainer, schedule_factory


def _model() -> nn.Module:
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    for m in model.modules():  # no zero-initialised residual branch: every tensor gets a gradient
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    return model


def _fit(model: nn.Module, strategy: str, args: dict, loaders, epochs: int = 1) -> nn.Module:
    train, val = loaders
    t = Trainer(model=model, strategy=get_strategy(strategy, args), device=select_device("cpu"), lr=1e-2,
                epochs=epochs, schedules=schedule_factory("none", {}), select_by="val_loss",
                progress=False)
    t.fit(train, val)
    return t.model


def _bn_buffers(model: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """running_mean, running_var and num_batches_tracked of every BatchNorm (under ``prefix``)."""
    return {f"{n}.{b}": buf.detach().clone() for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and n.startswith(prefix)
            for b, buf in m.named_buffers(recurse=False)}


# ---------------------------------------------------------------- Auto-RGN, item 3
@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_auto_rgn_reference_bn_mode_keeps_every_pretrained_bn_buffer(bn_mode, loaders):
    model = _model()
    before = _bn_buffers(model)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    after_model = _fit(model, "auto_rgn", {"rgn_batches": 2, "bn_mode": bn_mode}, loaders, 2)
    after = _bn_buffers(after_model)
    assert before
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if bn_mode == "eval":  # the reference's default: nothing moves the statistics
        assert changed == []
    else:  # every statistic of every BatchNorm follows the batches
        assert sorted(changed) == sorted(before)
    # the weights train in both modes
    assert any(not torch.equal(p, weights[n]) for n, p in after_model.named_parameters())


def test_auto_rgn_default_bn_mode_is_train_in_the_probe_and_the_epoch(loaders):
    s = get_strategy("auto_rgn", {})
    assert s.args["bn_mode"] == "train"  # the kit's behaviour before the option: unchanged
    model = _model()
    model.eval()
    s.on_epoch_start(model, s.stages(1)[0], 0)
    assert all(m.training for m in model.modules())
    s = get_strategy("auto_rgn", {"bn_mode": "eval"})
    s.on_epoch_start(model, s.stages(1)[0], 0)
    assert not any(m.training for m in model.modules())
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        get_strategy("auto_rgn", {"bn_mode": "frozen"})


# ---------------------------------------------------------------- LWFT, item 4
@pytest.mark.parametrize("frozen_bn", ["train", "eval"])
def test_lwft_frozen_bn_train_moves_the_frozen_statistics_never_the_weights(frozen_bn, loaders):
    model = _model()
    first = "layer3"
    trained = trained_from(model, first)
    frozen = [n for n, _ in model.named_parameters() if n not in trained]
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_bn_names = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
                       and all(f"{n}.{k}" in frozen for k, _ in m.named_parameters())]
    assert frozen and frozen_bn_names  # the stem's, layer1's and layer2's
    stats0 = {n: _bn_buffers(model, n) for n in frozen_bn_names}
    model = _fit(model, "lwft", {"finetune_from": first, "frozen_bn": frozen_bn}, loaders)
    params = dict(model.named_parameters())
    # frozen weights: bit for bit the initial ones, in both modes
    assert max(float((params[n] - w0[n]).abs().max()) for n in frozen) == 0.0
    assert any(not torch.equal(params[n], w0[n]) for n in trained)
    moved = [n for n in frozen_bn_names
             if any(not torch.equal(v, stats0[n][k]) for k, v in _bn_buffers(model, n).items())]
    assert moved == (frozen_bn_names if frozen_bn == "train" else [])


def test_lwft_default_frozen_bn_is_eval():
    assert get_strategy("lwft", {"finetune_from": "layer3"}).args["frozen_bn"] == "eval"
    with pytest.raises(ValueError, match="frozen_bn must be one of"):
        get_strategy("lwft", {"finetune_from": "layer3", "frozen_bn": "batch"})


# ---------------------------------------------------------------- the seed profiles
@pytest.mark.parametrize("name", ["seed001", "seed001_cpu"])
def test_seed001_profiles_run_auto_rgn_in_the_reference_bn_mode(name, tmp_path):
    p = profiles.load_profile(name, runs_dir=tmp_path / "runs", data_root=tmp_path / "data")
    rgn = [r for r in p.runs if r.strategy == "auto_rgn"]
    assert rgn and all(r.strategy_args.get("bn_mode") == "eval" for r in rgn)
    assert all("bn_mode" not in r.strategy_args for r in p.runs if r.strategy != "auto_rgn")


@pytest.mark.parametrize("name, methods", [("seed003", ["ttl", "transfusion", "lwft"]),
                                           ("seed003_cpu", ["ttl", "lwft"])])
def test_seed003_profiles_search_lwft_with_the_reference_frozen_bn(name, methods, tmp_path):
    p = profiles.load_profile(name, runs_dir=tmp_path / "runs", data_root=tmp_path / "data")
    ftl = [r for r in p.runs if r.strategy == "full"]
    assert len(p.searches) == len(ftl) * len(methods)
    for s in p.searches:
        if s.method == "lwft":
            assert (s.base.strategy, s.base.strategy_args) == ("lwft", {"frozen_bn": "train"})
        else:  # the other searches keep the FTL run's settings as before
            assert (s.base.strategy, s.base.strategy_args) == ("full", {})
        assert s.name == f"search_{s.method}__{s.base.dataset}__{s.base.model}" + (
            "" if p.legacy_names else f"__full__s{s.base.seed}")


def test_searches_mapping_reaches_every_candidate(tmp_path, monkeypatch):
    """A ``searches:`` mapping's strategy_args reach each candidate run ``search_cut`` trains."""
    import medtl_lib.train_run as train_run_module
    from medtl_lib import search_cut as sc

    spec = tmp_path / "p.yaml"
    spec.write_text("name: s3\ndatasets: [brain_tumor_mri]\nmodels: [resnet18]\n"
                    "strategies: [full]\nsearches: {ttl: {}, lwft: {frozen_bn: train}}\n"
                    "seeds: [1]\ndefaults: {weights: none, img_size: 32, epochs: 1}\n")
    p = profiles.load_profile(spec, runs_dir=tmp_path / "runs")
    search = [s for s in p.searches if s.method == "lwft"][0]
    seen = []

    class Result:
        metrics = {"val": {"auroc_macro": 0.5, "accuracy": 0.5}, "class_names": list("abcd"),
                   "epochs_run": 1}
        skipped = False
        out = tmp_path

    def fake_train_run(cfg, **_):
        seen.append(dict(cfg.strategy_args))
        return Result()

    monkeypatch.setattr(train_run_module, "train_run", fake_train_run)
    (tmp_path / "metrics.json").write_text('{"test": {"accuracy": 0.5, "auroc_macro": 0.5}}')
    sc.search_cut(search.base, "lwft", tmp_path / "search", fine=False, log=lambda *a: None)
    assert seen and all(a["frozen_bn"] == "train" and a["finetune_from"] for a in seen)
    with pytest.raises(ValueError, match="frozen_bn must be one of"):
        spec.write_text(spec.read_text().replace("frozen_bn: train", "frozen_bn: x"))
        profiles.load_profile(spec, runs_dir=tmp_path / "runs")
