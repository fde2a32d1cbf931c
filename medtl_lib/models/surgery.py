"""Structural edits of a built backbone, recorded in the model's spec (``ModelSpec.surgery``) so that
``load_run_model`` rebuilds exactly the trained network.

One op per function; an op is a dict ``{"op": name, ...arguments}``. Each op is a class registered
in :data:`OPS` (``@OPS.register``: ``name``, ``args``, ``apply(backbone, **arguments)``), so a new
op is one new class (here or in a plugin).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import Arg, Registry

OPS: Registry["SurgeryOp"] = Registry("surgery", "structural edits of the backbone, recorded in "
                                      "model spec (a strategy's surgery())",
                                      lazy=(__package__, "surgery_"))


class SurgeryOp:
    """Base class of a surgery op: ``apply(backbone, **arguments)`` -> the edited backbone."""

    name = "op"
    description = ""
    args: tuple[Arg, ...] = ()

    @staticmethod
    def apply(backbone: nn.Module, **kwargs: Any) -> nn.Module:
        raise NotImplementedError


def drop_pre_logits(backbone: nn.Module) -> nn.Module:
    """Keras-style head for VGG (seed 004): global average pooling straight on the last conv block,
    without the two 4096-d layers (fc6/fc7, about 120 M parameters) that timm keeps as
    ``pre_logits``. Keras' ``include_top=False`` drops them the same way."""
    pre = getattr(backbone, "pre_logits", None)
    if not isinstance(pre, nn.Module):
        raise ValueError(f"drop_pre_logits: {type(backbone).__name__} has no pre_logits module")
    backbone.pre_logits = nn.Identity()
    backbone.head_hidden_size = backbone.num_features  # what the pooled output now holds
    return backbone


# --- truncation (seed 003's TTL) -----------------------------------------------------------------
def _out_channels(backbone: nn.Module, size: int = 64) -> int:
    """Channels of forward_features on a zeros image: the width the head now sees."""
    import torch

    was = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters())
            return int(backbone.forward_features(torch.zeros(1, 3, size, size, device=p.device)).shape[1])
    finally:
        backbone.train(was)


def _cut_sequence(backbone: nn.Module, stages: list[str], cut: str, tail: list[str]) -> None:
    """Keep the stages up to ``cut`` ('<stage>' whole, '<stage>.<i>' its blocks 0..i), replace the
    later stages and the ``tail`` modules (conv_head, bn2) by Identity."""
    parts = cut.split(".")
    if parts[0] == "stem":
        last, keep = -1, None
    else:
        stage = ".".join(parts[:-1]) if len(parts) > 1 and parts[-1].isdigit() and \
            ".".join(parts[:-1]) in stages else cut
        if stage not in stages:
            raise ValueError(f"truncate: cut '{cut}' is not a cut point of {type(backbone).__name__};"
                             f" use stem, one of {', '.join(stages)}, or <stage>.<block>")
        last = stages.index(stage)
        keep = int(parts[-1]) if stage != cut else None
    for i, name in enumerate(stages):
        module = backbone.get_submodule(name)
        if i > last:
            _set(backbone, name, nn.Identity())
        elif i == last and keep is not None:
            if not 0 <= keep < len(module):
                raise ValueError(f"truncate: {stage} has blocks 0..{len(module) - 1}, not {keep}")
            _set(backbone, name, nn.Sequential(*list(module)[:keep + 1]))
    for name in tail:
        _set(backbone, name, nn.Identity())


def _set(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def truncate(backbone: nn.Module, cut: str) -> nn.Module:
    """Seed 003's truncated transfer learning: delete everything above ``cut``, the last kept
    module in timm naming. ResNet: ``stem``, ``layer3`` (whole stage) or ``layer3.1`` (its first
    two blocks); DenseNet: ``features.transition2`` and the like, cut as the authors did (the
    transition included; timm's features_only cuts before it); EfficientNet: ``blocks.4`` or
    ``blocks.4.1`` (``conv_head`` and ``bn2`` go too; features_only does not prune these)."""
    kind = type(backbone).__name__
    if kind == "ResNet":
        _cut_sequence(backbone, ["layer1", "layer2", "layer3", "layer4"], cut, [])
    elif kind == "EfficientNet":
        stages = [f"blocks.{i}" for i in range(len(backbone.blocks))]
        _cut_sequence(backbone, stages, cut, ["conv_head", "bn2"])
    elif kind == "DenseNet":
        names = [n for n, _ in backbone.features.named_children()]
        short = cut.removeprefix("features.")
        if short not in names:
            raise ValueError(f"truncate: cut '{cut}' is not a module of DenseNet's features "
                             f"({', '.join('features.' + n for n in names)})")
        for n in names[names.index(short) + 1:]:
            setattr(backbone.features, n, nn.Identity())
    else:
        raise ValueError(f"truncate: defined for ResNet, DenseNet and EfficientNet backbones, not "
                         f"{kind}")
    backbone.num_features = backbone.head_hidden_size = _out_channels(backbone)
    return backbone


# --- slimming (seed 003's TransFusion) -----------------------------------------------------------
def slim(backbone: nn.Module, slim_from: str) -> nn.Module:
    """TransFusion (Raghu et al., 2019) as seed 003's code builds it: ResNet stages from
    ``slim_from`` up get half the channels and a random init (Kaiming normal, fan_out; BN weight 1,
    bias 0; no zero-init of the last BN, as torchvision's default); the stages below keep the
    (pretrained) weights the backbone has, bit for bit."""
    from timm.models.resnet import ResNet

    if type(backbone).__name__ != "ResNet":
        raise ValueError(f"slim: defined for ResNet backbones, not {type(backbone).__name__}")
    stages = ["layer1", "layer2", "layer3", "layer4"]
    if slim_from not in stages:
        raise ValueError(f"slim: slim_from must be one of {', '.join(stages)}, got '{slim_from}'")
    k = stages.index(slim_from)
    block = type(backbone.layer1[0])
    layers = tuple(len(backbone.get_submodule(s)) for s in stages)
    channels = tuple(c // 2 if i >= k else c for i, c in enumerate((64, 128, 256, 512)))
    # the same pooling as the backbone had: '' for pool='flatten', whose head sees the map
    pool = getattr(getattr(backbone, "global_pool", None), "pool_type", "avg")
    new = ResNet(block, layers, num_classes=0, global_pool=pool, channels=channels,
                 zero_init_last=False)
    for m in new.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    prefix = ("conv1.", "bn1.", *(f"{s}." for s in stages[:k]))
    own = new.state_dict()
    own.update({n: t.clone() for n, t in backbone.state_dict().items() if n.startswith(prefix)})
    new.load_state_dict(own)
    new.pretrained_cfg = getattr(backbone, "pretrained_cfg", {})
    return new


@OPS.register
class DropPreLogits(SurgeryOp):
    name = "drop_pre_logits"
    description = "VGG without fc6/fc7 (Keras include_top=False; seed 004)"
    apply = staticmethod(drop_pre_logits)


@OPS.register
class Truncate(SurgeryOp):
    name = "truncate"
    description = "delete everything above a cut point (seed 003's TTL)"
    args = (Arg("cut", "str", "", "the last kept module in timm naming, e.g. layer3 or layer3.1"),)
    apply = staticmethod(truncate)


@OPS.register
class Slim(SurgeryOp):
    name = "slim"
    description = "half-width, re-initialised ResNet stages from slim_from up (TransFusion)"
    args = (Arg("slim_from", "str", "layer3", "the first slimmed stage",
                choices=("layer1", "layer2", "layer3", "layer4")),)
    apply = staticmethod(slim)


def apply_surgery(backbone: nn.Module, ops: list[dict]) -> nn.Module:
    """Apply the ops in order; an unknown op is an error that names the known ones."""
    for op in ops:
        name = op.get("op")
        if name not in OPS:
            raise NotImplementedError(f"model surgery '{name}' is not supported by this version "
                                      f"of medtl_lib (known: {', '.join(OPS)})")
        backbone = OPS[name].apply(backbone, **{k: v for k, v in op.items() if k != "op"})
    return backbone
