"""The training engine: registries and their arguments, every schedule against hand-computed LR
sequences, every optimizer choice, selection, weighted CE, and lp_ft's stage hand-over and resume
inside stage 2."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from medtl_lib.cli import main
from medtl_lib.config import RunConfig
from medtl_lib.data.loaders import build_transforms
from medtl_lib.device import select_device
from medtl_lib.models.factory import create_model, load_run_model
from medtl_lib.registry import Arg
from medtl_lib.training.losses import build_loss, class_weights
from medtl_lib.training.optim import build_optimizer
from medtl_lib.training.schedules import SCHEDULES, EpochStats, Plateau, ScheduleDecision, Selector
from medtl_lib.training.strategies import (
    STRATEGIES,
    Stage,
    Strategy,
    get_strategy,
    strategies_table,
)
from medtl_lib.training.trainer import Trainer, schedule_factory


# ------------------------------------------------------------------ registries and arguments
def test_registry_lists_the_strategies_and_their_arguments(capsys):
    assert {"full", "linear_probe", "lp_ft"} <= set(STRATEGIES.names())
    table = strategies_table()
    assert list(table.columns) == ["name", "description", "arguments"]
    assert "ft_lr_factor: float = 0.1" in table.set_index("name").loc["lp_ft", "arguments"]
    assert main(["strategies", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    lp_ft = next(r for r in data["strategies"] if r["name"] == "lp_ft")
    assert {a["name"]: a["default"] for a in lp_ft["arguments"]}["ft_lr_factor"] == 0.1
    assert {r["name"] for r in data["schedules"]} == {"none", "dual_monitor", "plateau", "cosine",
                                                      "warmup_cosine", "exp"}


def test_bad_strategy_arguments_stop_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"no argument\(s\) \['lp_epoch'\].*lp_epochs: int"):
        RunConfig(strategy="lp_ft", strategy_args={"lp_epoch": 2})
    with pytest.raises(ValueError, match="ft_lr_factor must be float"):
        RunConfig(strategy="lp_ft", strategy_args={"ft_lr_factor": "fast"})
    with pytest.raises(ValueError, match="has no argument"):
        RunConfig(strategy="full", strategy_args={"lp_epochs": 2})
    with pytest.raises(ValueError, match="did you mean lp_ft"):
        RunConfig(strategy="lp_fft")
    # the CLI refuses before it looks for data (there is none at this path)
    code = main(["train", "--dataset", "brain_tumor_mri", "--data-dir", str(tmp_path / "nowhere"),
                 "--model", "test_resnet", "--out", str(tmp_path / "r"), "--strategy", "lp_ft",
                 "--strategy-arg", "ft_init=later"])
    assert code == 2 and "ft_init must be one of" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_strategy_args_are_typed_and_defaults_resolved():
    from medtl_lib.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--dataset", "brain_tumor_mri", "--model", "x",
                                      "--out", "o", "--strategy", "lp_ft",
                                      "--strategy-arg", "lp_epochs=2",
                                      "--strategy-arg", "ft_lr_factor=0.5"])
    cfg = config_from_args(args)
    assert cfg.strategy_args == {"lp_epochs": 2, "ft_lr_factor": 0.5}
    # every default of the CLI is RunConfig's own (written once)
    plain = config_from_args(build_parser().parse_args(
        ["train", "--dataset", "brain_tumor_mri", "--model", "x", "--out", "o"]))
    assert plain == RunConfig(dataset="brain_tumor_mri", model="x", out="o")


def test_arg_parsing():
    a = Arg("n", "int", 3, "")
    assert a.parse("4") == 4 and a.parse(5.0) == 5
    with pytest.raises(ValueError):
        a.parse("4.5")
    with pytest.raises(ValueError):
        a.parse(True)
    b = Arg("flag", "bool", False, "")
    assert b.parse("true") is True and b.parse("0") is False
    with pytest.raises(ValueError):
        Arg("x", "float", 0.5, "", minimum=0.0, maximum=1.0).parse("2")


# ------------------------------------------------------------------ schedules, by hand
def _drive(schedule, val_losses, base_lr=1.0, epochs=None, steps=1, train_acc=0.5):
    """LR of every epoch when the trainer applies the schedule's decisions (one group)."""
    lr = base_lr
    scale = schedule.begin(base_lr, epochs or len(val_losses), steps)
    if scale is not None:
        lr = base_lr * scale
    lrs, stops = [], []
    for e, v in enumerate(val_losses):
        lrs.append(lr)
        d = schedule.end_epoch(EpochStats(e, 1.0, train_acc, v, 0.5))
        lr = base_lr * d.lr_scale if d.lr_scale is not None else lr * d.lr_factor
        stops.append(d.stop)
    return lrs, stops


def test_plateau_by_hand_and_against_torch():
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85]
    sched = SCHEDULES.build("plateau", {"patience": 2, "factor": 0.5, "min_lr_stop": 0.3})
    lrs, stops = _drive(sched, losses)
    # 3 bad epochs after 0.9 -> cut after epoch 5 (bad 3 > patience 2); again after epoch 9
    assert lrs == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert stops.index(True) == 8  # the second cut takes the LR below min_lr_stop = 0.3
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=0)
    torch_lrs = []
    for v in losses:
        torch_lrs.append(opt.param_groups[0]["lr"])
        ref.step(v)
    assert torch_lrs == lrs


def test_cosine_by_hand_and_against_torch():
    sched = SCHEDULES.build("cosine", {})
    lrs, _ = _drive(sched, [1.0] * 4, base_lr=0.1)
    want = [0.1 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(want, rel=0, abs=1e-15)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    torch_lrs = []
    for _ in range(4):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert lrs == pytest.approx(torch_lrs, rel=1e-12)
    floor = SCHEDULES.build("cosine", {"t_max": 2, "eta_min_factor": 0.1})
    assert _drive(floor, [1.0] * 3, base_lr=1.0)[0] == pytest.approx([1.0, 0.55, 0.1])


def test_warmup_cosine_per_step_by_hand():
    s = SCHEDULES.build("warmup_cosine", {"warmup_epochs": 1, "warmup_from": 0.01})
    assert s.begin(1.0, epochs=3, steps_per_epoch=4) == pytest.approx(0.01)
    got = [s.scale_at_step(t) for t in range(12)]
    warm = [0.01 + 0.99 * t / 4 for t in range(4)]
    cos = [0.5 * (1 + math.cos(math.pi * t / 12)) for t in range(4, 12)]
    assert got == pytest.approx(warm + cos, abs=1e-15)
    quirk = SCHEDULES.build("warmup_cosine", {"warmup_epochs": 5, "extra_epochs": 1})
    quirk.begin(1.0, epochs=50, steps_per_epoch=10)
    assert quirk.scale_at_step(50) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 51)))
    assert quirk.scale_at_step(50) == pytest.approx(0.976, abs=1e-3)  # seed 002's code


def test_exp_and_none_by_hand():
    assert _drive(SCHEDULES.build("exp", {"gamma": 0.5}), [1.0] * 4)[0] == [1, 0.5, 0.25, 0.125]
    assert _drive(SCHEDULES.build("none", {}), [1.0, 2.0, 3.0])[0] == [1, 1, 1]


def test_dual_monitor_schedule_by_hand():
    make = schedule_factory("dual_monitor", {}, threshold=0.9, patience=1, stop_patience=2,
                            factor=0.5)
    sched = make(Stage("train", 5))
    lrs, stops = _drive(sched, [1.0, 1.1, 1.2, 1.3], base_lr=1e-3, train_acc=0.95)
    # phase B: epoch 1 improves (inf -> 1.0), then every epoch is bad with p = 1 -> cut each time
    assert lrs == [1e-3, 1e-3, 5e-4, 2.5e-4]
    assert stops == [False, False, True, True]
    with pytest.raises(ValueError, match="has no argument"):
        schedule_factory("dual_monitor", {"patience": 3})(Stage("train", 1))


def test_plateau_is_the_walkthrough_baseline():
    """Notebook 02's ReduceLROnPlateau baseline is the same Plateau code the trainer runs."""
    from medtl_lib.teaching.walkthrough import plateau_baseline

    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85]
    frame = plateau_baseline(losses, patience=2, factor=0.5, stop_patience=5, lr=1.0)
    lrs, _ = _drive(Plateau(factor=0.5, patience=2, min_lr_stop=0.0, min_lr=0.0,
                            stop_after_cuts=5), losses)
    assert frame["lr"].tolist() == lrs


# ------------------------------------------------------------------ selection, loss, optimizers
def test_selector_rules():
    stats = [EpochStats(e, 1.0, 0.5, v, a) for e, (v, a) in
             enumerate([(1.0, 0.5), (0.9, 0.5), (0.9, 0.7), (1.2, 0.6)])]
    sel = Selector("val_loss", early_stop_patience=2)
    assert [sel.step(s, ScheduleDecision()) for s in stats] == [
        (True, False), (True, False), (False, False), (False, True)]  # a tie is not better
    sel = Selector("val_acc")
    assert [sel.step(s, ScheduleDecision())[0] for s in stats] == [True, False, True, False]
    with pytest.raises(ValueError, match="needs schedule='dual_monitor'"):
        Selector("dual_monitor").step(stats[0], ScheduleDecision())
    with pytest.raises(ValueError, match="select_by='dual_monitor' needs schedule"):
        RunConfig(schedule="cosine")
    RunConfig(schedule="cosine", select_by="val_loss", early_stop_patience=3)


def test_selector_ties_first_or_last():
    """Issue 27 (2): seed 002's code keeps the last of equally good epochs (``acc >= best_acc``);
    the kit's default keeps the first."""
    accs = [0.5, 0.7, 0.7, 0.6, 0.7]
    stats = [EpochStats(e, 1.0, 0.5, 1.0, a) for e, a in enumerate(accs)]
    first = Selector("val_acc", early_stop_patience=2)
    last = Selector("val_acc", early_stop_patience=2, ties="last")
    assert [first.step(s, ScheduleDecision()) for s in stats[:4]] == [
        (True, False), (True, False), (False, False), (False, True)]
    assert [last.step(s, ScheduleDecision()) for s in stats] == [
        (True, False), (True, False), (True, False), (False, False), (True, False)]
    loss = Selector("val_loss", ties="last")
    assert [loss.step(EpochStats(e, 1, 1, v, 0), ScheduleDecision())[0]
            for e, v in enumerate([0.4, 0.4, 0.5])] == [True, True, False]
    with pytest.raises(ValueError, match="select_ties must be one of"):
        Selector("val_acc", ties="middle")
    with pytest.raises(ValueError, match="select_ties applies to select_by"):
        RunConfig(select_ties="last")
    assert RunConfig(schedule="none", select_by="val_acc", select_ties="last").select_ties == "last"


def test_trainer_keeps_the_last_tied_epoch(loaders):
    """The trainer passes select_ties to its selector: at a tiny LR every epoch's validation
    accuracy ties the first, so 'first' keeps epoch 1 and 'last' the final epoch."""
    train, val = loaders
    best = {}
    for ties in ("first", "last"):
        torch.manual_seed(0)
        model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
        t = Trainer(model=model, strategy=get_strategy("linear_probe"), device=select_device("cpu"), lr=1e-30,
                    epochs=3, schedules=schedule_factory("none", {}), select_by="val_acc",
                    progress=False, select_ties=ties)
        fit = t.fit(train, val)
        assert fit.history["val_acc"].nunique() == 1  # the premise: three equal epochs
        best[ties] = fit.best_epoch
    assert best == {"first": 1, "last": 3}


def test_weighted_ce():
    w = class_weights([100, 50, 25])
    assert w.tolist() == [1.0, 2.0, 4.0]
    assert torch.equal(build_loss("weighted_ce", [10, 30]).weight, torch.tensor([3.0, 1.0]))
    assert build_loss("ce").weight is None
    with pytest.raises(ValueError, match="class\\(es\\) \\[1\\] have no training images"):
        class_weights([3, 0])


@pytest.mark.parametrize("name,cls,extra", [
    ("adamax", torch.optim.Adamax, {}),
    ("adam", torch.optim.Adam, {}),
    ("adamw", torch.optim.AdamW, {}),
    ("sgd", torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
])
def test_each_optimizer_matches_torch(name, cls, extra):
    torch.manual_seed(0)
    net = nn.Linear(5, 3)
    ref = nn.Linear(5, 3)
    ref.load_state_dict(net.state_dict())
    groups = [{"params": [net.weight], "lr": 0.1, "name": "w"},
              {"params": [net.bias], "lr": 0.01, "name": "b"}]
    opt = build_optimizer(name, groups, lr=0.1, weight_decay=0.01, momentum=0.8)
    assert type(opt) is cls
    assert [g["name"] for g in opt.param_groups] == ["w", "b"]
    ref_opt = cls([{"params": [ref.weight], "lr": 0.1}, {"params": [ref.bias], "lr": 0.01}],
                  weight_decay=0.01, **extra)
    x = torch.randn(8, 5)
    for _ in range(3):
        for m, o in ((net, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    assert torch.equal(net.weight, ref.weight) and torch.equal(net.bias, ref.bias)


def test_optimizer_refuses_nothing_to_train():
    with pytest.raises(ValueError, match="no parameters"):
        build_optimizer("adam", [{"params": [], "lr": 1.0}], lr=1.0)


# ------------------------------------------------------------------ stages through the trainer
def _lp_ft_trainer(ckpt_dir=None, **args):
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    strategy = get_strategy("lp_ft", {"lp_epochs": 2, **args})
    return Trainer(model=model, strategy=strategy, device=select_device("cpu"), lr=1e-2, epochs=4,
                   schedules=schedule_factory("none", {}), select_by="val_loss",
                   ckpt_dir=ckpt_dir, progress=False)


def test_lp_ft_hands_over_pretrained_backbone_and_best_head(loaders, tmp_path):
    train, val = loaders
    t = _lp_ft_trainer(tmp_path)
    theta0 = {k: v.clone() for k, v in t.model.state_dict().items()}
    seen = {}

    class Watch(type(t.strategy)):
        def on_epoch_start(self, model, stage, epoch):
            if stage.name == "ft" and epoch == 0:
                seen["state"] = {k: v.clone() for k, v in model.state_dict().items()}
                seen["lrs"] = [g["lr"] for g in t.optimizer.param_groups]
                seen["moments"] = len(t.optimizer.state)
            super().on_epoch_start(model, stage, epoch)

    t.strategy.__class__ = Watch
    result = t.fit(train, val)
    h = result.history
    assert h["stage"].tolist() == ["lp", "lp", "ft", "ft"]
    n_head = 96 * 4 + 4
    n_all = sum(p.numel() for p in t.model.parameters())
    assert h["trainable_params"].tolist() == [n_head, n_head, n_all, n_all]
    assert h["lr"].tolist() == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3], rel=1e-12)
    assert h["lr_groups"].tolist()[1:3] == ["head=0.01", "all=0.001"]
    best_lp = torch.load(tmp_path / "best_lp.pt", weights_only=True)
    state = seen["state"]
    for k, v in theta0.items():
        if k.startswith("backbone."):  # every weight and BatchNorm buffer, bit for bit
            assert torch.equal(state[k], v), k
    assert torch.equal(state["head.weight"], best_lp["model"]["head.weight"])
    assert not torch.equal(state["head.weight"], theta0["head.weight"])
    assert seen["moments"] == 0  # a new optimizer: no moments carried over from the probe
    assert [s["name"] for s in result.stages] == ["lp", "ft"]
    assert (tmp_path / "best.pt").is_file()


def test_lp_ft_from_last_probe_epoch(loaders):
    train, val = loaders
    t = _lp_ft_trainer(ft_init="previous_last")
    assert t.stages[1].init_from == "previous_last"
    t.fit(train, val)


@pytest.mark.parametrize("kill_after", [1, 2, 3])  # inside stage 1, at its end, inside stage 2
def test_resume_in_any_stage_matches_uninterrupted(loaders, tmp_path, kill_after):
    train, val = loaders
    ref = _lp_ft_trainer(tmp_path / "ref").fit(train, val, seed=5)
    t = _lp_ft_trainer(tmp_path / "run")

    def kill(row):
        if row["epoch"] == kill_after:
            raise KeyboardInterrupt

    t.callbacks.append(kill)
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val, seed=5)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["stage"] == ("lp" if kill_after <= 2 else "ft")
    resumed = _lp_ft_trainer(tmp_path / "run").fit(train, val, seed=5)
    assert resumed.resumed_from == kill_after
    cols = ["stage", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "save_best",
            "trainable_params"]
    pd.testing.assert_frame_equal(ref.history[cols], resumed.history[cols], check_exact=True)
    a = torch.load(tmp_path / "ref" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_schedule_columns_and_lr_through_the_trainer(loaders):
    train, val = loaders
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    t = Trainer(model=model, strategy=get_strategy("full"), device=select_device("cpu"), lr=0.1, epochs=3,
                optimizer_name="sgd", schedules=schedule_factory("cosine", {}),
                select_by="val_acc", progress=False)
    h = t.fit(train, val).history
    assert h["lr"].tolist() == pytest.approx([0.1, 0.075, 0.025], rel=1e-12)
    assert "phase" not in h.columns and {"stage", "trainable_params", "lr_groups"} <= set(h)
    assert type(t.optimizer) is torch.optim.SGD


def test_per_step_schedule_sets_every_step(loaders):
    train, val = loaders
    torch.manual_seed(0)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    t = Trainer(model=model, strategy=get_strategy("full"), device=select_device("cpu"), lr=1.0, epochs=2,
                optimizer_name="sgd",
                schedules=schedule_factory("warmup_cosine", {"warmup_epochs": 1}),
                select_by="val_loss", progress=False)
    seen = []

    class Spy(torch.nn.CrossEntropyLoss):
        def forward(self, logits, y):
            seen.append(t.optimizer.param_groups[0]["lr"])
            return super().forward(logits, y) * 0  # no update: only the LR matters here

    t.criterion = Spy()
    t.fit(train, val)
    spe = len(train)
    sched = SCHEDULES.build("warmup_cosine", {"warmup_epochs": 1})
    sched.begin(1.0, 2, spe)
    assert seen == pytest.approx([sched.scale_at_step(i) for i in range(2 * spe)], abs=1e-15)


# ------------------------------------------------------------------ whole runs
def test_lp_ft_run_end_to_end_and_load_run_model(synth_root, tmp_path, capsys):
    data = synth_root("brain_tumor_mri", n_per_class=20, size=40)
    out = tmp_path / "lpft"
    args = ["train", "--dataset", "brain_tumor_mri", "--data-dir", str(data), "--model",
            "test_resnet", "--weights", "none", "--img-size", "40", "--epochs", "3",
            "--batch-size", "8", "--strategy", "lp_ft", "--strategy-arg", "lp_epochs=1",
            "--no-augment", "--pipeline", "per_image", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    log = capsys.readouterr().out
    assert "stage 'lp': features cached" in log and "stages lp (1 ep) -> ft (2 ep)" in log
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "lp_ft" and [s["name"] for s in m["stages"]] == ["lp", "ft"]
    assert m["features_cached"]  # by the probe stage, though the last stage runs on images
    assert (out / "best_lp.pt").is_file() and (out / "model.json").is_file()
    model, spec, meta = load_run_model(out)
    assert spec.timm_name == "test_resnet" and meta["class_names"] == m["class_names"]
    # the rebuilt model reproduces the run's own test predictions
    preds = pd.read_csv(out / "predictions_test.csv")
    _, eval_tf = build_transforms(meta["data_config"])
    from PIL import Image

    x = torch.stack([eval_tf(Image.open(data / p).convert("RGB")) for p in preds["path"]])
    with torch.no_grad():
        probs = model(x).softmax(1).numpy()
    want = preds[[f"prob_{c}" for c in m["class_names"]]].to_numpy()
    assert abs(probs - want).max() < 1e-5


def test_model_info_json(capsys):
    assert main(["model", "info", "--model", "resnet18", "--weights", "none", "--img-size", "128",
                 "--num-classes", "4", "--strategy", "lp_ft", "--no-latency", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 11_178_564 and info["trainable_params"] == 2_052  # spec 1.3.3
    assert abs(info["macs"] - 592e6) / 592e6 < 0.01  # spec WP-B: 592 M at 128 px
    assert main(["model", "info", "--model", "test_resnet", "--weights", "none", "--img-size",
                 "32", "--num-classes", "3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["latency_ms"] > 0 and info["latency_device"].startswith("cpu")
    assert info["trainable_params"] == info["params"]


# ------------------------------------------------------------------ a new strategy is one class
class _HookStrategy(Strategy):
    """Uses every hook a later strategy needs (L2-SP's setup and penalty, Auto-RGN's per-epoch
    optimizer and gradient probe, state in the checkpoint)."""

    name = "test_hooks"
    description = "test only"
    args = (Arg("alpha", "float", 0.0, "penalty weight"),)
    needs_gradients = True

    def setup(self, model):
        self.theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.grad_seen, self.rebuilt, self.loaded = 0, 0, None

    def optimizer_for_epoch(self, model, stage, epoch, optimizer):
        assert self.context.stage is stage and self.context.lr == 1e-2
        assert len(self.context.train_loader) > 0 and self.context.device.device.type == "cpu"
        self.rebuilt += 1
        return torch.optim.SGD([{"params": list(model.parameters()), "lr": 0.05,
                                 "name": f"rebuilt{epoch}"}], lr=0.05)

    def after_backward(self, model):
        assert all(p.grad is not None for p in model.head.parameters())
        self.grad_seen += 1

    def penalty(self, model):
        if not self.args["alpha"]:
            return None
        return self.args["alpha"] * sum(((p - self.theta0[n]) ** 2).sum()
                                        for n, p in model.named_parameters())

    def describe_epoch(self, model):
        return {"grad_steps": self.grad_seen}

    def state_dict(self):
        return {"grad_seen": self.grad_seen}

    def load_state_dict(self, state):
        self.loaded = dict(state)
        self.grad_seen = state["grad_seen"]


@pytest.fixture()
def hook_strategy():
    STRATEGIES.register(_HookStrategy)
    yield _HookStrategy
    STRATEGIES._items.pop("test_hooks")


def test_a_registered_strategy_gets_every_hook(hook_strategy, loaders, tmp_path):
    from medtl_lib.cli import build_parser, config_from_args

    # validation, the CLI's --strategy choices and the table all know it, with no other edit
    cfg = config_from_args(build_parser().parse_args(
        ["train", "--dataset", "brain_tumor_mri", "--model", "x", "--out", "o",
         "--strategy", "test_hooks", "--strategy-arg", "alpha=0.5"]))
    assert cfg.strategy_args == {"alpha": 0.5}
    assert "test_hooks" in strategies_table()["name"].tolist()
    train, val = loaders

    def trainer(alpha, ckpt):
        torch.manual_seed(0)
        model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
        return Trainer(model=model, strategy=get_strategy("test_hooks", {"alpha": alpha}), device=select_device("cpu"),
                       lr=1e-2, epochs=2, schedules=schedule_factory("none", {}),
                       select_by="val_loss", ckpt_dir=ckpt, progress=False)

    t = trainer(0.0, tmp_path / "a")
    h = t.fit(train, val).history
    steps = len(train)
    assert t.strategy.rebuilt == 2 and h["lr_groups"].tolist() == ["rebuilt0=0.05", "rebuilt1=0.05"]
    assert h["grad_steps"].tolist() == [steps, 2 * steps]  # describe_epoch -> history columns
    # the penalty is part of the loss
    penalised = trainer(10.0, tmp_path / "b").fit(train, val).history
    assert penalised["train_loss"].iloc[1] != h["train_loss"].iloc[1]
    # the strategy's state travels in the checkpoint and comes back on resume
    t = trainer(0.0, tmp_path / "c")
    t.callbacks.append(lambda row: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val)
    resumed = trainer(0.0, tmp_path / "c")
    resumed.fit(train, val)
    assert resumed.strategy.loaded == {"grad_seen": steps}


def test_resumes_a_checkpoint_written_before_stages(loaders, tmp_path):
    """A seed-000 run interrupted under the previous trainer (last.pt without stages) resumes."""
    train, val = loaders

    def trainer(ckpt):
        torch.manual_seed(0)
        model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
        return Trainer(model=model, strategy=get_strategy("full"), device=select_device("cpu"), lr=1e-2, epochs=3,
                       ckpt_dir=ckpt, progress=False)

    ref = trainer(tmp_path / "ref").fit(train, val, seed=2)
    t = trainer(tmp_path / "old")
    t.callbacks.append(lambda row: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val, seed=2)
    new = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    old_cols = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "phase", "c", "s",
                "lr_factor", "save_best", "stop", "seconds"]
    old = {"epoch": new["epoch"], "model": new["model"], "optimizer": new["optimizer"],
           "scaler": new["scaler"], "monitor": new["schedule"],
           "history": [{k: r[k] for k in old_cols} for r in new["history"]],
           "best_epoch": new["stages"][0]["best_epoch"]}
    torch.save(old, tmp_path / "old" / "last.pt")
    (tmp_path / "old" / "checkpoints.json").unlink()  # that trainer recorded no digests
    resumed = trainer(tmp_path / "old").fit(train, val, seed=2)
    assert resumed.resumed_from == 1
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "c", "s", "save_best"]
    pd.testing.assert_frame_equal(ref.history[cols], resumed.history[cols], check_exact=True)
