"""L2-SP and L1-SP (Li, Grandvalet and Davoine, 2018; spec Sections 1.3.6-1.3.7).

Plain weight decay pulls every weight towards zero, which for a pretrained backbone means away
from what ImageNet taught it. The SP ("starting point") penalties pull the backbone towards its
pretrained values theta^0 instead, and only the new head, which has no starting point, towards
zero:

    L2-SP: Omega = alpha/2 * sum_B ||w - w0||^2 + beta/2 * sum_H ||w||^2
    L1-SP: Omega = alpha   * sum_B |w - w0|_1   + beta/2 * sum_H ||w||^2

Only the pull towards theta^0 changes norm between the variants: the new head S̄ keeps the plain
L2 term beta/2 ||w_S̄||^2 in each -SP penalty (Li et al., 2018, Section 3). The authors' code
says the same: its L1-SP (holyseven/TransferLearningClassification, model/network_base.py:
225-242, weight_decay_mode 4) is ``wd_rate * sum |v - w0|`` over the pretrained weights plus
``wd_rate2 * tf.nn.l2_loss(v)`` (= sum v^2 / 2) over the new layers. (Spec 1.3.7 had
beta * |w|_1, which the kit used before.)

The optimizer's weight decay is off (Omega replaces it). theta^0 is copied once, in ``setup``, on
the pretrained weights before any resume, so a resumed run penalises towards the same point.
At theta^0 the backbone term and its gradient are exactly zero (the gradient of |x| at 0 is taken
as sign(0) = 0, as PyTorch's own), and with alpha = beta = 0 the run is plain fine-tuning without
weight decay, bit for bit.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import Arg
from .strategies import STRATEGIES, Strategy

SCOPES = ("all", "weights")


class _SumOfNorms(torch.autograd.Function):
    """sum_i ||w_i - r_i||^2 / 2 (order 2) or sum_i |w_i - r_i|_1 (order 1); r = 0 when None.

    Written out with fused multi-tensor kernels, forward and backward, because the plain way
    costs a few kernels per tensor each way: ResNet-50's 161 tensors took the penalty to tens of
    milliseconds a step on an H100 and halved training throughput (scripts/bench_sp_penalty.py).
    The gradient is the formula's, (w - r) or sign(w - r), so it is exactly zero at theta^0.
    Nothing is copied for backward: the differences are recomputed there."""

    @staticmethod
    def forward(ctx, order: int, refs: list[torch.Tensor] | None,
                *params: torch.Tensor) -> torch.Tensor:
        ctx.order, ctx.refs = order, refs
        ctx.save_for_backward(*params)
        if not params:
            return torch.zeros(())
        diffs = torch._foreach_sub(params, refs) if refs is not None else params
        norms = torch.stack(torch._foreach_norm(diffs, order))
        return norms.pow(2).sum() / 2 if order == 2 else norms.sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        params = ctx.saved_tensors
        if not params:
            return (None, None)
        diffs = torch._foreach_sub(params, ctx.refs) if ctx.refs is not None else params
        if ctx.order == 1:
            diffs = torch._foreach_sign(diffs)
        return (None, None, *torch._foreach_mul(diffs, grad))


class StartingPointPenalty(Strategy):
    order = 2  # the norm of the pull towards theta^0 (the head's term is always L2)

    args = (Arg("alpha", "float", 0.1, "weight of the pull towards the pretrained backbone",
                minimum=0.0),
            Arg("beta", "float", 0.01, "weight of the pull of the new head towards zero",
                minimum=0.0),
            Arg("scope", "str", "all", "all: every pretrained tensor (BN affine included, as "
                "tllib); weights: conv and linear weights only (no biases, no norm parameters)",
                choices=SCOPES))

    def __init__(self, **args: Any) -> None:
        super().__init__(**args)
        self.reference: dict[str, torch.Tensor] = {}  # backbone name -> theta^0 (frozen copy)
        self.head_names: list[str] = []

    def _in_scope(self, p: torch.Tensor) -> bool:
        return self.args["scope"] == "all" or p.dim() > 1

    def setup(self, model: nn.Module) -> None:
        self.reference = {n: p.detach().clone() for n, p in model.named_parameters()
                          if not n.startswith("head.") and self._in_scope(p)}
        self.head_names = [n for n, p in model.named_parameters()
                           if n.startswith("head.") and self._in_scope(p)]

    def param_groups(self, model: nn.Module, lr: float, stage) -> list[dict]:
        return [{"params": list(model.parameters()), "lr": lr, "name": "all",
                 "weight_decay": 0.0}]

    def terms(self, model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone term, head term), unweighted as in Omega: sum of ||w - w0||^2 / 2 (L2-SP)
        or |w - w0|_1 (L1-SP), and sum of ||w||^2 / 2 for the head in both."""
        params = dict(model.named_parameters())
        if not self.reference:
            raise RuntimeError(f"{self.name}: setup(model) must run before training (theta^0)")
        names = list(self.reference)
        back = _SumOfNorms.apply(self.order, [self.reference[n] for n in names],
                                 *[params[n] for n in names])
        head = _SumOfNorms.apply(2, None, *[params[n] for n in self.head_names])
        return back, head

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        alpha, beta = self.args["alpha"], self.args["beta"]
        if alpha == 0 and beta == 0:
            return None
        back, head = self.terms(model)
        return alpha * back + beta * head

    @torch.no_grad()
    def describe_epoch(self, model: nn.Module) -> dict[str, Any]:
        """The L2 distance from theta^0 over the penalised backbone tensors, and Omega."""
        params = dict(model.named_parameters())
        dist = sum(float((params[n] - ref).double().pow(2).sum())
                   for n, ref in self.reference.items()) ** 0.5
        omega = self.penalty(model)
        return {"sp_distance": dist, "sp_penalty": 0.0 if omega is None else float(omega)}


@STRATEGIES.register
class L2SP(StartingPointPenalty):
    name = "l2_sp"
    description = "full fine-tuning with an L2 pull towards the pretrained weights (no weight decay)"
    order = 2


@STRATEGIES.register
class L1SP(StartingPointPenalty):
    name = "l1_sp"
    description = "full fine-tuning with an L1 pull towards the pretrained weights (no weight decay)"
    order = 1
