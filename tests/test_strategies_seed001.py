"""Seed 001's eight strategies: the invariants of the methods spec (Section 1.7), each checked on
the trainer as a run uses it. Structural counts use ResNet-18 / VGG-19 without weights."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from medtl_lib.device import select_device
from medtl_lib.models.factory import create_model
from medtl_lib.models.groups import parameter_groups
from medtl_lib.training.strategies import STRATEGIES, get_strategy
from medtl_lib.training.strategy_auto_rgn import rgn_names
from medtl_lib.training.trainer import Trainer, schedule_factory

EIGHT = ["full", "linear_probe", "gradual_lf", "gradual_fl", "lp_ft", "l1_sp", "l2_sp",
         "auto_rgn"]


def _model(name="test_resnet", img_size=32):
    torch.manual_seed(0)
    model, _ = create_model(name, 4, weights="none", img_size=img_size)
    # timm zero-initialises the last BN of each residual branch: with random weights those
    # branches get no gradient at all (spec 1.7's caveat). Pretrained weights never do that.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    return model


def _trainer(strategy, args=None, model=None, epochs=2, ckpt=None, schedule="none",
             weight_decay=0.0, **kw):
    return Trainer(model=model or _model(), strategy=get_strategy(strategy, args or {}), device=select_device("cpu"),
                   lr=1e-2, epochs=epochs, schedules=schedule_factory(schedule, {}),
                   select_by="val_loss", ckpt_dir=ckpt, progress=False,
                   weight_decay=weight_decay, **kw)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_eight_are_registered():
    assert set(EIGHT) <= set(STRATEGIES.names())


# ---------------------------------------------------------------- gradual unfreezing
SPEC_COUNTS = {  # ResNet-18, C = 4, unfreeze_every = 1 (spec 1.3.3 / 1.3.4, verified there)
    "gradual_lf": [2_052, 8_395_780, 10_495_492, 11_021_060, 11_169_028, 11_178_564],
    "gradual_fl": [2_052, 11_588, 159_556, 685_124, 2_784_836, 11_178_564],
}


@pytest.mark.parametrize("name", ["gradual_lf", "gradual_fl"])
def test_gradual_counts_and_frozen_blocks_untouched(name, loaders):
    train, val = loaders
    model = _model("resnet18")
    t = _trainer(name, {"unfreeze_every": 1}, model=model, epochs=6)
    blocks = dict(parameter_groups(model))
    before = [_snapshot(model)]
    t.callbacks.append(lambda row: before.append(_snapshot(model)))
    t.restore_best = lambda: False  # keep the last epoch's weights for the check below
    h = t.fit(train, val).history
    assert h["trainable_params"].tolist() == SPEC_COUNTS[name]
    for e, row in h.iterrows():
        open_blocks = row["trainable_blocks"].split("+")
        start, end = before[e], before[e + 1]
        for g, names in blocks.items():
            prefixes = {n.rsplit(".", 1)[0] for n in names}
            keys = [k for k in start if k.rsplit(".", 1)[0] in prefixes]  # params and BN buffers
            changed = [k for k in keys if not torch.equal(start[k], end[k])]
            if g in open_blocks:
                assert changed, (e, g)
            else:
                assert not changed, (e, g, changed[:3])


def test_gradual_default_step_and_discriminative_lrs():
    model = _model("resnet18")
    s = get_strategy("gradual_lf", {"discriminative_lr": 2.6})
    s.stages(12)  # 5 blocks: a new one every 12 // 6 = 2 epochs
    assert [s.unfrozen(model, e) for e in (0, 1, 2, 4, 11)] == [
        [], [], ["stage4"], ["stage4", "stage3"], ["stage4", "stage3", "stage2", "stage1", "stem"]]
    lrs = {g["name"]: g["lr"] for g in s.param_groups(model, 1.0, s.stages(12)[0])}
    assert lrs["head"] == 1.0 and lrs["stage4"] == 1.0
    assert lrs["stem"] == pytest.approx(2.6 ** -4) and lrs["stage3"] == pytest.approx(1 / 2.6)


@pytest.mark.parametrize("epochs,expected", [
    (6, [0, 2, 4, 5, 7, 8]),  # seed001_cpu: 6 epochs, Lite0's 8 blocks -> all in the last epoch
    (8, [0, 2, 3, 4, 5, 6, 7, 8]),
    (1, [8]),  # one epoch: nothing to stage, every block trains
    (30, [e // 3 for e in range(24)] + [8] * 6),  # E > K: one block every 30 // 9 = 3 epochs
])
def test_gradual_default_opens_every_block_within_the_run(epochs, expected):
    """Issue 27 (1): with fewer epochs than blocks + 1 the old rule opened one block per epoch
    and never reached the last blocks (5 of Lite0's 8 in seed001_cpu's 6 epochs)."""
    s = get_strategy("gradual_fl")
    s.stages(epochs)
    assert [s.n_open(8, e) for e in range(epochs)] == expected


def test_gradual_early_stopping_waits_until_every_block_trains(loaders):
    """Issue 27 (1): early stopping (patience 1, a validation loss that cannot improve at a tiny
    LR) is held until the first epoch in which every block trains, then ends the run."""
    train, val = loaders
    model = _model("resnet18")  # 5 blocks, 12 epochs: a new block every 2 epochs
    t = Trainer(model=model, strategy=get_strategy("gradual_lf"), device=select_device("cpu"), lr=1e-30, epochs=12,
                schedules=schedule_factory("none", {}), select_by="val_acc",
                early_stop_patience=1, progress=False)
    fit = t.fit(train, val)
    h = fit.history
    blocks = [g for g, _ in parameter_groups(model) if g != "head"]
    assert t.strategy.complete_from(model, t.stages[0]) == 10
    assert len(h) == 11 and fit.stopped_early  # epoch 11 is the first with all 5 blocks open
    assert set(h["trainable_blocks"].iloc[-1].split("+")) == set(blocks) | {"head"}
    held = h["stop_held"].tolist()
    assert held[1] and not held[10]  # without the hold the run would have ended after epoch 2
    assert h["stop"].tolist() == [False] * 10 + [True]


def test_stop_hold_is_absent_for_strategies_that_do_not_grow(loaders):
    train, val = loaders
    t = Trainer(model=_model(), strategy=get_strategy("full"), device=select_device("cpu"), lr=1e-30, epochs=4,
                schedules=schedule_factory("none", {}), select_by="val_acc",
                early_stop_patience=1, progress=False)
    h = t.fit(train, val).history
    assert len(h) == 2 and "stop_held" not in h.columns


def test_gradual_reset_optimizer_on_unfreeze(loaders):
    train, val = loaders
    t = _trainer("gradual_fl", {"unfreeze_every": 1, "reset_optimizer_on_unfreeze": True},
                 epochs=3)
    optimizers = []
    t.callbacks.append(lambda row: optimizers.append(t.optimizer))
    t.fit(train, val)
    assert len({id(o) for o in optimizers}) == 3


# ---------------------------------------------------------------- linear probe
def test_linear_probe_leaves_every_backbone_tensor_and_buffer(loaders):
    train, val = loaders
    t = _trainer("linear_probe", epochs=2)
    theta0 = _snapshot(t.model)
    t.fit(train, val)
    after = _snapshot(t.model)
    for k, v in theta0.items():
        if k.startswith("backbone."):
            assert torch.equal(after[k], v), k
    assert not torch.equal(after["head.weight"], theta0["head.weight"])


def test_linear_probe_classifier_trains_vgg_fc_layers():
    model, _ = create_model("vgg19", 4, weights="none", img_size=32)
    s = get_strategy("linear_probe", {"lp_head": "classifier"})
    stage = s.stages(1)[0]
    assert not stage.frozen_backbone  # the pre-logits layers train: no feature cache
    groups = s.param_groups(model, 1e-3, stage)
    assert sum(p.numel() for g in groups for p in g["params"]) == 119_545_856 + 4096 * 4 + 4
    s.on_epoch_start(model, stage, 0)
    assert model.backbone.pre_logits.training and model.head.training
    assert not model.backbone.features.training
    assert not any(p.requires_grad for p in model.backbone.features.parameters())
    last = get_strategy("linear_probe", {})
    assert sum(p.numel() for g in last.param_groups(model, 1e-3, last.stages(1)[0])
               for p in g["params"]) == 4096 * 4 + 4


# ---------------------------------------------------------------- L1-SP / L2-SP
@pytest.mark.parametrize("name", ["l2_sp", "l1_sp"])
def test_sp_with_zero_weights_is_full_bit_for_bit(name, loaders):
    train, val = loaders
    a = _trainer("full", epochs=2)
    ha = a.fit(train, val).history
    b = _trainer(name, {"alpha": 0.0, "beta": 0.0}, epochs=2, weight_decay=1e-2)
    hb = b.fit(train, val).history
    assert all(g["weight_decay"] == 0.0 for g in b.optimizer.param_groups)
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols], check_exact=True)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["l2_sp", "l1_sp"])
def test_sp_penalty_zero_with_zero_gradient_at_theta0(name, loaders):
    model = _model()
    s = get_strategy(name, {"alpha": 0.3, "beta": 0.0})
    s.setup(model)
    omega = s.penalty(model)
    assert omega.item() == 0.0
    omega.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    # the head term is beta/2 ||w||^2 for both (Li et al. 2018), not ||w - w0||: not zero at start
    s = get_strategy(name, {"alpha": 0.0, "beta": 0.5})
    s.setup(model)
    w = model.head.weight.detach()
    expected = 0.5 * (w.pow(2).sum() + model.head.bias.pow(2).sum()) / 2
    assert s.penalty(model).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("scope", ["all", "weights"])
def test_sp_penalty_after_a_step_matches_a_recomputation(scope, loaders):
    train, val = loaders
    t = _trainer("l2_sp", {"alpha": 0.1, "beta": 0.01, "scope": scope}, epochs=1)
    theta0 = {n: p.detach().clone() for n, p in t.model.named_parameters()}
    t.fit(train, val)
    back = head = 0.0
    for n, p in t.model.named_parameters():
        if scope == "weights" and p.dim() < 2:
            continue
        if n.startswith("head."):
            head += float(p.detach().double().pow(2).sum()) / 2
        else:
            back += float((p.detach().double() - theta0[n].double()).pow(2).sum()) / 2
    assert back > 0
    assert t.strategy.penalty(t.model).item() == pytest.approx(0.1 * back + 0.01 * head,
                                                               rel=1e-5)


@pytest.mark.parametrize("name", ["l2_sp", "l1_sp"])
def test_sp_fused_penalty_and_gradient_match_the_formula(name):
    """Omega and its gradient, tensor by tensor in float64, away from theta^0 and on a
    channels_last model (strided weights): the fused norms must not reorder or miss a tensor.
    The pull towards theta^0 is alpha/2 ||w - w0||^2 (L2-SP) or alpha |w - w0|_1 (L1-SP); the
    head's term is beta/2 ||w||^2 in both (Li, Grandvalet and Davoine, 2018)."""
    torch.manual_seed(0)
    model = _model().to(memory_format=torch.channels_last)
    s = get_strategy(name, {"alpha": 0.3, "beta": 0.05})
    s.setup(model)
    theta0 = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    omega = s.penalty(model)
    omega.backward()
    want = 0.0
    for n, p in model.named_parameters():
        w = p.detach().double()
        head = n.startswith("head.")
        d, k = (w, 0.05) if head else (w - theta0[n], 0.3)
        l2 = head or name == "l2_sp"
        want += k * (float(d.pow(2).sum()) / 2 if l2 else float(d.abs().sum()))
        grad = k * (d if l2 else d.sign())
        assert torch.allclose(p.grad.double(), grad, rtol=1e-5, atol=1e-9), n
    assert omega.item() == pytest.approx(want, rel=1e-5)


# ---------------------------------------------------------------- Auto-RGN
def test_rgn_sets_match_the_spec_counts():
    model, _ = create_model("resnet18", 4, weights="none", img_size=32)
    assert len(list(model.parameters())) == 62
    assert len(rgn_names(model, "bn_substring")) == 28  # the downsample BNs lack "bn"
    assert len(rgn_names(model, "norm_modules")) == 22
    assert len(rgn_names(model, "none")) == 62
    dense, _ = create_model("densenet121", 4, weights="none", img_size=32)
    assert len(rgn_names(dense, "bn_substring")) == 364  # the reference excludes no DenseNet norm
    assert len(rgn_names(dense, "norm_modules")) == 364 - 242


def test_auto_rgn_weights_optimizer_and_excluded_tensors(loaders):
    train, val = loaders
    t = _trainer("auto_rgn", {"rgn_batches": 2}, epochs=2, schedule="cosine")
    names = rgn_names(t.model, "bn_substring")
    theta0 = _snapshot(t.model)
    groups_seen = []
    t.callbacks.append(lambda row: groups_seen.append(
        [(g["name"], g["lr"], len(g["params"])) for g in t.optimizer.param_groups]))
    t.restore_best = lambda: False
    h = t.fit(train, val).history
    log = t.strategy.log
    assert len(log) == 2
    cosine = [1.0, 0.5, 0.0]  # scale at the start of epochs 1, 2 and after the last (2 epochs)
    for e, (weights, groups) in enumerate(zip(log, groups_seen)):
        assert len(weights) == len(names)
        assert max(weights) == 1.0 and min(weights) >= 0.0
        assert [g[0] for g in groups] == names and all(g[2] == 1 for g in groups)
        # the rebuilt optimizer keeps the schedule's multiplier: LR_i = w_i x LR x cosine(e)
        assert h["lr"].iloc[e] == pytest.approx(1e-2 * weights[0] * cosine[e], rel=1e-12)
        assert [g[1] for g in groups] == pytest.approx(
            [1e-2 * w * cosine[e + 1] for w in weights], rel=1e-12, abs=1e-15)
    assert log[0] != log[1]
    after = _snapshot(t.model)
    params = {n for n, _ in t.model.named_parameters()}
    for k in params - set(names):
        assert torch.equal(after[k], theta0[k]), k
    assert all(not torch.equal(after[k], theta0[k]) for k in names)
    assert h["rgn_groups"].str.contains("head=").all()


def test_auto_rgn_probe_has_no_side_effects(loaders):
    train, val = loaders
    t = _trainer("auto_rgn", {"rgn_batches": 3}, epochs=1)
    s = t.strategy
    t._begin_stage(t.stages[0], train)
    s.on_epoch_start(t.model, t.stages[0], 0)

    def epoch_batches():
        t._seed_epoch(train, 3, 0)
        return [y.tolist() for _, y in train]

    order = epoch_batches()
    t._seed_epoch(train, 3, 0)
    buffers = {k: b.clone() for k, b in t.model.named_buffers()}
    rng = torch.get_rng_state()
    s.probe(t.model)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(b, buffers[k]) for k, b in t.model.named_buffers())
    assert [y.tolist() for _, y in train] == order  # the epoch sees the same batches
    # ... unless asked for the reference code's side effects
    s.args["probe_side_effects"] = True
    s.probe(t.model)
    assert any(not torch.equal(b, buffers[k]) for k, b in t.model.named_buffers())


# ---------------------------------------------------------------- LP-FT with logistic regression
def test_lp_ft_logreg_probe_then_fine_tune(loaders):
    train, val = loaders
    t = _trainer("lp_ft", {"lp_solver": "logreg"}, epochs=3)
    assert [(s.name, s.epochs, s.closed_form) for s in t.stages] == [("lp", 1, True),
                                                                    ("ft", 2, False)]
    theta0 = _snapshot(t.model)
    seen = {}

    class Watch(type(t.strategy)):
        def on_epoch_start(self, model, stage, epoch):
            if stage.name == "ft" and epoch == 0:
                seen["state"] = _snapshot(model)
            super().on_epoch_start(model, stage, epoch)

    t.strategy.__class__ = Watch
    h = t.fit(train, val).history
    assert h["stage"].tolist() == ["lp", "ft", "ft"]
    start = seen["state"]
    assert all(torch.equal(start[k], v) for k, v in theta0.items() if k.startswith("backbone."))
    assert not torch.equal(start["head.weight"], theta0["head.weight"])
    # the probe's train accuracy is the fitted regression's
    assert 0.0 <= h["train_acc"].iloc[0] <= 1.0 and np.isfinite(h["train_loss"].iloc[0])


def test_logreg_head_binary_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    from medtl_lib.training.logreg import fit_logreg_head

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 5)), dtype=torch.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    head = nn.Linear(5, 2)
    batches = [(x[i:i + 20], y[i:i + 20]) for i in range(0, 60, 20)]
    fit_logreg_head(head, head, batches, batches, grid=(1.0,))
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(x.numpy(), y.numpy())
    with torch.no_grad():
        pred = head(x).argmax(1).numpy()
    assert (pred == clf.predict(x.numpy())).all()


# ---------------------------------------------------------------- crash safety
@pytest.mark.parametrize("name,args,kill_after", [
    ("gradual_lf", {"unfreeze_every": 1, "reset_optimizer_on_unfreeze": True}, 2),
    ("auto_rgn", {"rgn_batches": 2}, 1),
    ("l2_sp", {}, 1),
    ("lp_ft", {"lp_solver": "logreg"}, 1),  # at the end of the probe stage
    ("lp_ft", {"lp_epochs": 1}, 2),  # inside the fine-tuning stage
])
def test_killed_inside_a_stage_resumes_identically(name, args, kill_after, loaders, tmp_path):
    train, val = loaders

    def make(ckpt):
        return _trainer(name, args, epochs=3, ckpt=ckpt, schedule="cosine")

    ref = make(tmp_path / "ref").fit(train, val, seed=4)
    t = make(tmp_path / "run")

    def kill(row):
        if row["epoch"] == kill_after:
            raise KeyboardInterrupt

    t.callbacks.append(kill)
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val, seed=4)
    resumed = make(tmp_path / "run").fit(train, val, seed=4)
    assert resumed.resumed_from == kill_after
    assert_same_run(ref, resumed, tmp_path / "ref", tmp_path / "run")


def assert_same_run(ref, resumed, ref_dir, run_dir) -> None:
    """A resumed fit equals the uninterrupted one: history (bar timings) and best.pt weights."""
    cols = [c for c in ref.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(ref.history[cols], resumed.history[cols], check_exact=True)
    a = torch.load(ref_dir / "best.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
