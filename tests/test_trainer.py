"""The trainer applies the monitor's decisions, checkpoints every epoch, resumes exactly and
restores theta*."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from medtl_lib.device import select_device
from medtl_lib.models.factory import create_model
from medtl_lib.training.schedules import Schedule, ScheduleDecision
from medtl_lib.training.strategies import get_strategy
from medtl_lib.training.trainer import NonFiniteLossError, Trainer, dual_monitor_schedules


def _trainer(ckpt_dir=None, schedule=None, strategy="full", seed=0, lr=1e-2, epochs=1):
    torch.manual_seed(seed)
    model, _ = create_model("test_resnet", 4, weights="none", img_size=32)
    schedules = (lambda stage: schedule) if schedule is not None else dual_monitor_schedules()
    return Trainer(model=model, strategy=get_strategy(strategy), device=select_device("cpu"), lr=lr, epochs=epochs,
                   schedules=schedules, ckpt_dir=ckpt_dir, progress=False)


class ScriptedSchedule(Schedule):
    """Stands in for the dual monitor: returns pre-written decisions, records what it was shown."""

    name = "scripted"

    def __init__(self, script: list[tuple[float, bool, bool]]) -> None:
        self.script, self.seen = script, []

    def end_epoch(self, stats):
        self.seen.append((stats.train_acc, stats.val_loss))
        lr_factor, save, stop = self.script[len(self.seen) - 1]
        return ScheduleDecision(lr_factor=lr_factor, stop=stop, save_best=save)

    def state_dict(self):
        return {}


def test_decisions_are_applied(loaders, tmp_path):
    train, val = loaders
    script = [(1.0, True, False), (0.5, False, False), (0.1, True, False), (1.0, False, True),
              (1.0, False, False)]
    monitor = ScriptedSchedule(script)
    t = _trainer(tmp_path, monitor, epochs=5)
    result = t.fit(train, val)
    h = result.history
    assert result.epochs_run == 4 and result.stopped_early  # stopped at epoch 4 of 5
    assert h["lr"].tolist() == pytest.approx([1e-2, 1e-2, 5e-3, 5e-4])
    assert result.best_epoch == 3
    assert h["train_acc"].tolist() == [a for a, _ in monitor.seen]
    assert h["val_loss"].tolist() == [v for _, v in monitor.seen]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == 3
    for k, v in t.model.state_dict().items():  # theta* restored, not the epoch-4 weights
        torch.testing.assert_close(v, best["model"][k])
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert any(not torch.equal(last["model"][k], best["model"][k]) for k in best["model"])
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]


def test_resume_matches_uninterrupted_run(loaders, tmp_path):
    train, val = loaders
    full = _trainer(tmp_path / "a", epochs=3).fit(train, val, seed=7)
    first = _trainer(tmp_path / "b", epochs=3)
    first.callbacks.append(_interrupt_after(1))
    with pytest.raises(KeyboardInterrupt):
        first.fit(train, val, seed=7)
    resumed = _trainer(tmp_path / "b", epochs=3).fit(train, val, seed=7)
    assert resumed.resumed_from == 1
    cols = ["train_loss", "train_acc", "val_loss", "val_acc", "lr", "c", "s"]
    pd.testing.assert_frame_equal(full.history[cols], resumed.history[cols])
    a = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_same_seed_repeats_other_seed_differs(loaders):
    train, val = loaders
    h1 = _trainer().fit(train, val, seed=3).history
    h2 = _trainer().fit(train, val, seed=3).history
    h3 = _trainer().fit(train, val, seed=4).history
    assert h1["train_loss"].tolist() == h2["train_loss"].tolist()
    assert h1["train_loss"].tolist() != h3["train_loss"].tolist()


def test_theta_star_in_memory_without_checkpoint_dir(loaders):
    train, val = loaders
    t = _trainer(None, ScriptedSchedule([(1.0, True, False), (1.0, False, False)]), epochs=2)
    t.fit(train, val)
    best = t._best_in_memory["train"]
    for k, v in t.model.state_dict().items():
        torch.testing.assert_close(v, best[k])


def test_linear_probe_trains_only_the_head(loaders):
    train, val = loaders
    t = _trainer(strategy="linear_probe", lr=5e-2)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit(train, val)
    after = t.model.state_dict()
    for k, v in before.items():
        if k.startswith("backbone."):  # weights and BatchNorm running stats untouched
            torch.testing.assert_close(after[k], v, rtol=0, atol=0)
    assert not torch.equal(after["head.weight"], before["head.weight"])
    n_head = sum(p.numel() for p in t.model.head.parameters())
    assert t.strategy.describe(t.model).startswith(f"linear_probe: {n_head:,} of ")


def test_non_finite_loss_names_epoch_and_batch(loaders, tmp_path):
    train, val = loaders
    t = _trainer(tmp_path, epochs=2)
    t.callbacks.append(_interrupt_after(1))
    with pytest.raises(KeyboardInterrupt):
        t.fit(train, val)
    t = _trainer(tmp_path, epochs=2)
    t.criterion = lambda logits, y: (logits * float("nan")).sum()
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 1"):
        t.fit(train, val)
    assert (tmp_path / "best.pt").is_file()
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("progress", [False, True])
def test_trainer_sees_the_loaders_own_shuffle_order(loaders, progress):
    """The progress bar must not iterate the loader itself (tqdm.auto does, and that drew from
    the loader's generator and changed the order the model trained on)."""
    train, _ = loaders
    seen: list[list[int]] = []

    class Recording(torch.nn.CrossEntropyLoss):
        def forward(self, logits, y):
            seen.append(y.tolist())
            return super().forward(logits, y)

    t = _trainer()
    t.progress = progress
    t.criterion = Recording()
    train.generator.manual_seed(11)
    t.train_epoch(train)
    train.generator.manual_seed(11)
    assert seen == [y.tolist() for _, y in train]


def _interrupt_after(epochs: int):
    """A callback that stops the process after ``epochs`` epochs, as a kill would (after the
    epoch's checkpoint was written)."""
    def cb(row):
        if row["epoch"] >= epochs:
            raise KeyboardInterrupt
    return cb
