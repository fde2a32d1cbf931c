"""Per-block activations of a model on a batch of images, pooled to (n, channels), for SVCCA and
per-cut probes (seed 003's Fig. 3(ii) and Fig. 4)."""
from __future__ import annotations

import torch
from torch import nn


def cut_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The backbone's cut points in forward order, named in timm's terms (the same names
    ``--strategy ttl --strategy-arg cut=...`` takes): ResNet ``stem, layer1.0, ...``; EfficientNet
    ``blocks.0.0, ...``; DenseNet the ``features`` modules. Identity (cut away) modules are left out."""
    b = model.backbone
    kind = type(b).__name__
    out: dict[str, nn.Module] = {}
    if kind == "ResNet":
        out["stem"] = b.maxpool
        for s in ("layer1", "layer2", "layer3", "layer4"):
            stage = getattr(b, s)
            if not isinstance(stage, nn.Identity):
                out.update({f"{s}.{i}": blk for i, blk in enumerate(stage)})
    elif kind == "EfficientNet":
        for i, stage in enumerate(b.blocks):
            if not isinstance(stage, nn.Identity):
                out.update({f"blocks.{i}.{j}": blk for j, blk in enumerate(stage)})
    elif kind == "DenseNet":
        out.update({f"features.{n}": m for n, m in b.features.named_children()
                    if not isinstance(m, nn.Identity)})
    else:
        raise ValueError(f"cut points are known for ResNet, EfficientNet and DenseNet backbones, "
                         f"not {kind}")
    return out


@torch.no_grad()
def pooled_activations(model: nn.Module, images: torch.Tensor, names: list[str] | None = None,
                       batch_size: int = 64) -> dict[str, torch.Tensor]:
    """``{cut name: (n, channels)}``: each chosen module's output averaged over its positions (the
    kit's default for conv features, spec Section 3.3), in eval mode."""
    modules = cut_modules(model)
    names = list(modules) if names is None else names
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"unknown cut point(s) {unknown}; known: {', '.join(modules)}")
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def hook(name: str):
        def fn(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            store[name].append(out.float().mean(dim=(2, 3)).cpu() if out.ndim == 4 else out.cpu())
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    was = model.training
    model.eval()
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {n: torch.cat(v) for n, v in store.items()}
