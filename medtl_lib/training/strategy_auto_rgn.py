"""Auto-RGN (Lee et al., "Surgical fine-tuning", ICLR 2023; spec Section 1.3.8).

Every epoch starts with a probe: on a few training batches, the relative gradient norm
RGN_i = ||dL/dtheta_i|| / ||theta_i|| of every tensor i says how much the loss wants that tensor
to move relative to its size. Normalised so the largest is exactly 1, it becomes the tensor's LR
multiplier for the epoch: the layers the new task most disagrees with move most. The optimizer is
rebuilt with one group per tensor (moments reset, as the reference code does, unless
``keep_moments``).

Which tensors take part (``rgn_exclude``): the reference code keeps every parameter whose name
lacks the substring "bn". That excludes ResNet's ``bn*`` layers but keeps its ``downsample.1``
BatchNorms, and excludes *nothing* in DenseNet, whose norms are called ``norm*``.
``norm_modules`` excludes every normalisation layer by type; ``none`` keeps everything. Excluded
tensors are not in the optimizer and never change.

The probe is side-effect free unless ``probe_side_effects``: it draws the first batches of the
epoch's own shuffle order with every random state restored afterwards (so the epoch itself sees
the same batches as without the probe), and BatchNorm running statistics are restored too.

Train or eval mode (``bn_mode``), for the probe and the epoch alike. The reference code puts the
model in train mode only when its config says ``train_mode: train`` (main.py:215-216,
``if cfg.args.train_mode == "train": model.train()``); both of its configs say ``train_mode: eval``
(config/cifar-10c.yaml:22, config/imagenet-c.yaml:22). Then nothing calls ``model.train()``: the
model stays in the eval mode RobustBench's ``load_model`` returns it in, and from the second epoch
on in the one its ``test()`` leaves (main.py:30, ``model.eval()``). So the reference's default
probes and trains the *whole* network in eval mode: BatchNorm normalises with the pretrained
running statistics and never updates them, and dropout is off. ``eval`` is that; ``train``
(every module in train mode, the kit's behaviour before the option) is the default.
"""
from __future__ import annotations

import contextlib
import random
import warnings
from itertools import islice
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..models.groups import parameter_groups
from ..registry import Arg
from .optim import rebuild_optimizer
from .strategies import STRATEGIES, Stage, Strategy

EXCLUDE = ("bn_substring", "norm_modules", "none")
BN_MODES = ("train", "eval")
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def rgn_names(model: nn.Module, exclude: str) -> list[str]:
    """Parameter names that get an RGN weight (and train), in ``named_parameters`` order."""
    if exclude not in EXCLUDE:
        raise ValueError(f"rgn_exclude must be one of {EXCLUDE}, got {exclude!r}")
    norm_params: set[str] = set()
    if exclude == "norm_modules":
        for mname, module in model.named_modules():
            if isinstance(module, NORM_TYPES) or "norm" in type(module).__name__.lower():
                norm_params |= {f"{mname}.{n}" if mname else n
                                for n, _ in module.named_parameters(recurse=False)}
    names = []
    for n, _ in model.named_parameters():
        if exclude == "bn_substring" and "bn" in n:
            continue
        if n in norm_params:
            continue
        names.append(n)
    return names


@contextlib.contextmanager
def preserved_random_state(loader: Any, device: torch.device) -> Iterator[None]:
    """Run a block and put back every random state it may draw from: Python's, NumPy's, torch's
    (CPU and the device's) and the loader's own generator."""
    py, npy = random.getstate(), np.random.get_state()
    gen = getattr(loader, "generator", None)
    gen_state = gen.get_state() if isinstance(gen, torch.Generator) else None
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        if gen_state is not None:
            gen.set_state(gen_state)


@STRATEGIES.register
class AutoRGN(Strategy):
    name = "auto_rgn"
    description = ("per-tensor LR = base LR x relative gradient norm from a few probe batches, "
                   "normalised to max 1, recomputed every epoch (Auto-RGN)")
    args = (Arg("rgn_batches", "int", 5, "training batches in each epoch's probe", minimum=1),
            Arg("rgn_exclude", "str", "bn_substring", "which tensors get no RGN weight and never "
                "train: bn_substring (the reference code's name test), norm_modules (every norm "
                "layer), none", choices=EXCLUDE),
            Arg("keep_moments", "bool", False, "carry optimizer moments across epochs (the "
                "reference code resets them)"),
            Arg("probe_side_effects", "bool", False, "let the probe update BatchNorm statistics "
                "and random states, as iterating the training loader in the reference code does"),
            Arg("bn_mode", "str", "train", "mode of the whole network in the probe and the "
                "epoch: train (BatchNorm on batch statistics, running statistics updated, "
                "dropout on) or eval (pretrained running statistics, never updated; dropout "
                "off), the reference code's default train_mode", choices=BN_MODES))

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.weights: list[float] = []  # the current epoch's weight per RGN tensor
        self.log: list[list[float]] = []  # weights of every epoch so far

    # ------------------------------------------------------------------ structure
    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        """One group per RGN tensor; before the first probe every weight is 1."""
        params = dict(model.named_parameters())
        names = rgn_names(model, self.args["rgn_exclude"])
        w = self.weights if len(self.weights) == len(names) else [1.0] * len(names)
        return [{"params": [params[n]], "lr": lr * wi, "name": n} for n, wi in zip(names, w)]

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        names = set(rgn_names(model, self.args["rgn_exclude"]))
        for n, p in model.named_parameters():
            p.requires_grad_(n in names)
        model.train(self.args["bn_mode"] == "train")

    def optimizer_for_epoch(self, model: nn.Module, stage: Stage, epoch: int,
                            optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        self.weights = self.probe(model)
        self.log.append(list(self.weights))
        groups = self.param_groups(model, self.context.lr, stage)
        return rebuild_optimizer(optimizer, groups, keep_state=self.args["keep_moments"])

    # ------------------------------------------------------------------ the probe
    def probe(self, model: nn.Module) -> list[float]:
        """Mean RGN per tensor over the probe batches, divided by its maximum."""
        ctx = self.context
        if ctx is None:
            raise RuntimeError("auto_rgn probes training batches: run it through the Trainer")
        dev = ctx.device.device
        names = rgn_names(model, self.args["rgn_exclude"])
        params = dict(model.named_parameters())
        tensors = [params[n] for n in names]
        sums = torch.zeros(len(tensors), dtype=torch.float64, device=dev)
        side_effects = self.args["probe_side_effects"]
        buffers = None if side_effects else {k: b.detach().clone()
                                             for k, b in model.named_buffers()}
        was_training = model.training
        model.train(self.args["bn_mode"] == "train")
        batches = 0
        guard = contextlib.nullcontext() if side_effects else \
            preserved_random_state(ctx.train_loader, dev)
        with guard:
            for x, y in islice(ctx.train_loader, self.args["rgn_batches"]):
                x, y = x.to(dev), y.to(dev)
                with torch.autocast(dev.type, enabled=False):  # fp32 gradients
                    loss = ctx.criterion(model(x.float()), y)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                with torch.no_grad():
                    for i, (g, p) in enumerate(zip(grads, tensors)):
                        if g is not None:
                            sums[i] += g.double().norm() / p.double().norm().clamp_min(1e-12)
                batches += 1
        if buffers is not None:
            with torch.no_grad():
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
        model.train(was_training)
        if ctx.dist is not None and ctx.dist.enabled:  # every rank probed its own shard
            *summed, batches = ctx.dist.all_sum(sums.tolist() + [batches])
            sums = torch.tensor(summed, dtype=torch.float64, device=dev)
        if batches == 0:
            raise ValueError("auto_rgn: the training loader yielded no probe batch")
        top = sums.max()
        if not top > 0:
            warnings.warn("auto_rgn: every relative gradient norm is 0 (a randomly initialised "
                          "model with zero-initialised residual branches?); all weights set to 1",
                          stacklevel=2)
            return [1.0] * len(tensors)
        return (sums / top).tolist()  # the maximum is x / x = 1.0 exactly

    # ------------------------------------------------------------------ reporting, state
    def group_weights(self, model: nn.Module, weights: list[float] | None = None
                      ) -> dict[str, float]:
        """Mean RGN weight per block (stem ... head) for one epoch's weights."""
        w = dict(zip(rgn_names(model, self.args["rgn_exclude"]), weights or self.weights))
        out = {}
        for g, names in parameter_groups(model):
            vals = [w[n] for n in names if n in w]
            if vals:
                out[g] = float(np.mean(vals))
        return out

    def describe_epoch(self, model: nn.Module) -> dict[str, Any]:
        g = self.group_weights(model)
        return {"rgn_groups": " ".join(f"{k}={v:.4g}" for k, v in g.items())}

    def state_dict(self) -> dict[str, Any]:
        return {"weights": list(self.weights), "log": [list(w) for w in self.log]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = list(state.get("weights", []))
        self.log = [list(w) for w in state.get("log", [])]
