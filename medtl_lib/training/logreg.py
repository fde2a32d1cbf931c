"""LP-FT's probe as Kumar et al. fit it: L2 logistic regression on the frozen features.

The regularisation strength C is chosen on validation accuracy from a log grid (their code sweeps
``np.logspace(-7, 2, ...)``); the winning coefficients are copied into the linear head, so the
fine-tuning stage starts from the exact optimum of the convex probe instead of from a few SGD
epochs of it.
"""
from __future__ import annotations

import warnings
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

#: inverse regularisation strengths tried, weakest regularisation last
C_GRID = tuple(float(c) for c in np.logspace(-7, 2, 10))


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: nn.Module, loader: Iterable,
                 device: torch.device | None) -> tuple[np.ndarray, np.ndarray]:
    """What ``layer`` receives for every batch of ``loader`` (model in eval mode), and labels.
    Works on images (full model) and on cached features (a FeatureClassifier) alike."""
    seen: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].float().cpu()))
    labels = []
    was_training = model.training
    model.eval()
    try:
        for x, y in loader:
            if device is not None:
                x = x.to(device)
            model(x)
            labels.append(torch.as_tensor(y).cpu())
    finally:
        hook.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("the logistic-regression probe got no batches")
    return torch.cat(seen).flatten(1).numpy(), torch.cat(labels).numpy()


def linear_layer(head: nn.Module) -> nn.Linear:
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1:
        raise ValueError(f"lp_solver=logreg needs a head with exactly one linear layer, this one "
                         f"has {len(layers)}; use lp_solver=sgd or --head linear")
    return layers[0]


def fit_logreg_head(model: nn.Module, head: nn.Module, train_loader: Iterable,
                    val_loader: Iterable, device: torch.device | None = None,
                    criterion: nn.Module | None = None,
                    grid: tuple[float, ...] = C_GRID) -> tuple[float, float]:
    """Fit, pick C on validation accuracy, write the head; returns (train loss, train accuracy)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    layer = linear_layer(head)
    xt, yt = layer_inputs(model, layer, train_loader, device)
    xv, yv = layer_inputs(model, layer, val_loader, device)
    classes = layer.out_features
    missing = sorted(set(range(classes)) - set(yt.tolist()))
    if missing:
        raise ValueError(f"the training split has no images of class index(es) {missing}; the "
                         "logistic-regression probe needs every class")
    best: tuple[float, Any] | None = None
    for c in grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=1000).fit(xt, yt)
        acc = float((clf.predict(xv) == yv).mean())
        if best is None or acc > best[0]:  # ties: the stronger regularisation (earlier C)
            best = (acc, clf)
    clf = best[1]
    coef, intercept = clf.coef_, clf.intercept_
    if classes == 2 and coef.shape[0] == 1:  # sklearn's binary form: one logit difference
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(coef, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(intercept, dtype=layer.bias.dtype))
    logits = torch.as_tensor(xt @ coef.T + intercept, dtype=torch.float32)
    target = torch.as_tensor(yt, dtype=torch.long)
    with torch.no_grad():
        if criterion is None:
            loss = float(nn.functional.cross_entropy(logits, target))
        else:
            loss = float(criterion(logits.to(device or "cpu"), target.to(device or "cpu")))
    return loss, float((logits.argmax(1) == target).float().mean())
