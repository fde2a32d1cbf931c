"""The single training loop: strategy decides what trains, the dual monitor decides LR cuts, the
best weights and when to stop; the loop only applies those decisions, saves and resumes.

Every epoch ends with a complete checkpoint (``last.pt``, written atomically), so rerunning the
same command after a crash continues from the last finished epoch. Each epoch reseeds all random
number generators from (seed, epoch), so a resumed CPU run gives exactly the numbers of an
uninterrupted one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..device import DeviceInfo
from ..utils import atomic_torch_save, atomic_write, iterate_with_bar, seed_everything
from .dual_monitor import DualMonitor
from .strategies import FineTuneStrategy

HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "phase",
                   "c", "s", "lr_factor", "save_best", "stop", "seconds"]


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN/inf; theta* and the last complete epoch are kept on disk."""


@dataclass
class FitResult:
    history: pd.DataFrame
    best_epoch: int | None  # epoch (1-based) whose weights were restored; None: never saved
    stopped_early: bool
    epochs_run: int
    resumed_from: int = 0  # epochs already done when this call started


@dataclass
class EvalResult:
    loss: float
    accuracy: float
    probs: np.ndarray  # (n, classes) softmax probabilities
    labels: np.ndarray  # (n,)


@dataclass
class Trainer:
    model: nn.Module
    strategy: FineTuneStrategy
    monitor: DualMonitor
    device: DeviceInfo
    lr: float
    weight_decay: float = 0.0
    ckpt_dir: Path | None = None  # None: nothing written, theta* kept in memory
    progress: bool = True
    callbacks: list[Callable[[dict], None]] = field(default_factory=list)
    channels_last: bool | None = None  # None: on CUDA for convolutional models (see below)

    def __post_init__(self) -> None:
        self.model.to(self.device.device)
        if self.channels_last is None:
            self.channels_last = self.device.device.type == "cuda" and is_convolutional(self.model)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adamax(self.strategy.param_groups(self.model, self.lr),
                                            lr=self.lr, weight_decay=self.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.uses_scaler)
        self.criterion = nn.CrossEntropyLoss()
        self._best_in_memory: dict | None = None

    # ------------------------------------------------------------------ loop
    def fit(self, train_loader: DataLoader, val_loader: DataLoader, epochs: int,
            seed: int = 0) -> FitResult:
        """Train up to ``epochs`` epochs (resuming from ``last.pt`` if present), restore theta*."""
        history: list[dict] = []
        best_epoch: int | None = None
        start = 0
        state = self._load_last()
        if state is not None:
            history, best_epoch, start = state["history"], state["best_epoch"], state["epoch"]
        stopped = self.monitor.stopped
        for epoch in range(start, epochs):
            if stopped:
                break
            t0 = time.perf_counter()
            self._seed_epoch(train_loader, seed, epoch)
            self.strategy.on_epoch_start(self.model, epoch)
            lr_now = self.optimizer.param_groups[0]["lr"]
            train_loss, train_acc = self.train_epoch(train_loader, epoch)
            val = self.evaluate(val_loader, desc=f"epoch {epoch + 1} val")
            decision = self.monitor.step(train_acc, val.loss)
            if decision.save_best:
                best_epoch = epoch + 1
                self._save_best(best_epoch)
            if decision.lr_factor != 1.0:
                for group in self.optimizer.param_groups:
                    group["lr"] *= decision.lr_factor
            row = dict(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc,
                       val_loss=val.loss, val_acc=val.accuracy, lr=lr_now,
                       phase=decision.phase, c=self.monitor.wait, s=self.monitor.reductions,
                       lr_factor=decision.lr_factor, save_best=decision.save_best,
                       stop=decision.stop, seconds=round(time.perf_counter() - t0, 2))
            history.append(row)
            self._save_last(epoch + 1, history, best_epoch)
            for cb in self.callbacks:
                cb(row)
            stopped = decision.stop
        self.restore_best()
        frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
        return FitResult(frame, best_epoch, bool(stopped), len(history), start)

    def train_epoch(self, loader: Iterable, epoch: int = 0,
                    max_batches: int | None = None) -> tuple[float, float]:
        """One pass over the training data; returns (mean loss, accuracy) seen during training."""
        dev = self.device.device
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        correct = torch.zeros((), device=dev, dtype=torch.int64)
        seen = 0
        total = max_batches if max_batches is not None else _len(loader)
        # the bar is updated by hand: tqdm(loader) would iterate the loader once more (see
        # utils.iterate_with_bar) and shift the shuffle order
        bar = tqdm(total=total, desc=f"epoch {epoch + 1} train", leave=False,
                   disable=not self.progress, dynamic_ncols=True)
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y = self._to_device(x, y)
            with torch.autocast(dev.type, dtype=self.device.amp_dtype or torch.float32,
                                enabled=self.device.amp_dtype is not None):
                logits = self.model(x)
                loss = self.criterion(logits, y)
                extra = self.strategy.penalty(self.model)
                if extra is not None:
                    loss = loss + extra
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, batch {i + 1}. The weights "
                    "of the best epoch (best.pt) and the last complete epoch (last.pt) are kept. "
                    "Try a lower --lr, or --amp off.")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n = y.shape[0]
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == y).sum()
            seen += n
            bar.update(1)
            if self.progress and (i % 10 == 0):
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", refresh=False)
        bar.close()
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        return loss_sum.item() / seen, correct.item() / seen

    @torch.no_grad()
    def evaluate(self, loader: Iterable, desc: str = "eval") -> EvalResult:
        """Mean loss, accuracy and softmax probabilities, model in eval mode."""
        was_training = self.model.training
        self.model.eval()
        dev = self.device.device
        probs, labels, loss_sum = [], [], 0.0
        for x, y in iterate_with_bar(loader, _len(loader), desc, self.progress, leave=False,
                                     dynamic_ncols=True):
            x, y = self._to_device(x, y)
            with torch.autocast(dev.type, dtype=self.device.amp_dtype or torch.float32,
                                enabled=self.device.amp_dtype is not None):
                logits = self.model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            probs.append(logits.softmax(1).cpu().numpy())
            labels.append(y.cpu().numpy())
        self.model.train(was_training)
        if not labels:
            raise ValueError(f"{desc}: the loader yielded no batches")
        p, lab = np.concatenate(probs), np.concatenate(labels)
        return EvalResult(loss_sum / len(lab), float((p.argmax(1) == lab).mean()), p, lab)

    def describe_compute(self) -> str:
        """What the run uses, for the log and metrics.json: precision and memory layout."""
        layout = "on" if self.channels_last else "off"
        return f"{self.device.device.type}, {self.device.precision}, channels_last {layout}"

    # ------------------------------------------------------------------ helpers
    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.device.device
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    @staticmethod
    def _seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
        epoch_seed = seed * 10_007 + epoch
        seed_everything(epoch_seed)
        gen = getattr(loader, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(epoch_seed)

    def _save_best(self, epoch: int) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.ckpt_dir is None:
            self._best_in_memory = state
            return
        atomic_torch_save(self.ckpt_dir / "best.pt", {"model": state, "epoch": epoch})

    def restore_best(self) -> bool:
        """Load theta* into the model; False when no epoch was ever saved as best."""
        state = self._best_in_memory
        if state is None and self.ckpt_dir is not None and (self.ckpt_dir / "best.pt").is_file():
            state = torch.load(self.ckpt_dir / "best.pt", map_location="cpu", weights_only=True)["model"]
        if state is None:
            return False
        self.model.load_state_dict(state)
        return True

    def _save_last(self, epoch: int, history: list[dict], best_epoch: int | None) -> None:
        if self.ckpt_dir is None:
            return
        atomic_torch_save(self.ckpt_dir / "last.pt", {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "monitor": self.monitor.state_dict(),
            "history": history,
            "best_epoch": best_epoch,
        })
        frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
        atomic_write(self.ckpt_dir / "history.csv", lambda p: frame.to_csv(p, index=False))

    def _load_last(self) -> dict | None:
        if self.ckpt_dir is None or not (self.ckpt_dir / "last.pt").is_file():
            return None
        state = torch.load(self.ckpt_dir / "last.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.monitor.load_state_dict(state["monitor"])
        return state


def is_convolutional(model: nn.Module) -> bool:
    """channels_last pays off for convolution stacks (cuDNN's NHWC kernels under AMP); a ViT has
    one convolution, its patch embedding, so it stays in the default layout."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _len(loader: Iterable) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None

