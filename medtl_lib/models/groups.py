"""Ordered parameter groups (blocks) of a Classifier, bottom -> top.

Gradual unfreezing (G-LF, G-FL), block-level Auto-RGN and layer-wise fine-tuning act on whole
blocks, so they all need the same answer to "which parameters form block k". This module gives
it once, in ``model.named_parameters()`` names (``backbone.*``, ``head.*``), so an optimizer's
param groups and a ``requires_grad`` switch can be built from it directly.

Group names (bottom -> top):

- ``stem``: what timm's ``group_matcher(coarse=True)`` calls the stem (G0 of the methods spec,
  Section 1.3.0): ResNet ``conv1, bn1``; DenseNet ``features.conv0, norm0``; EfficientNet
  ``conv_stem, bn1``; ConvNeXt ``stem``; ViT ``cls_token, pos_embed, patch_embed``; VGG the first
  conv block (``features.0, .2``).
- ``stage1`` ... ``stageK``: timm's coarse blocks in order - ResNet ``layer1..4``; DenseNet
  ``denseblock<i>`` with ``transition<i>``; EfficientNet ``blocks.0..6`` (timm merges
  ``conv_head, bn2`` into the last one); ConvNeXt ``stages.0..3``; ViT ``blocks.0..11`` (the final
  ``norm`` of token pooling merged into the last); VGG the conv blocks between max-pools.
- ``pre_logits``: backbone parameters after the last block that timm's matcher leaves unmatched
  (it puts them last): DenseNet ``features.norm5``, ConvNeXt ``head.norm``, ViT ``fc_norm``; for
  VGG timm's ``pre_logits.fc1/fc2`` (the torchvision classifier's two 4096-d layers).
- ``head``: the kit's head (``head.*``).

DenseNet's ``norm5`` versus the spec's BioTune grouping: timm's full model leaves both norm5 and
its classifier unmatched, so they share the last group ("timm merges it with the head"). In a
Classifier the head is a separate module, so norm5 (2,048 parameters for DenseNet-121) forms its
own ``pre_logits`` group, which is the spec table's G5; BioTune's 9th set (norm5 + classifier) is
``pre_logits`` + ``head``.
"""
from __future__ import annotations

import re

from torch import nn

GroupList = list[tuple[str, list[str]]]


def parameter_groups(model: nn.Module) -> GroupList:
    """``[(group name, [parameter names])]`` bottom -> top, ending with ``head``; every parameter
    of ``model`` (a Classifier: ``.backbone`` and ``.head``) is in exactly one group."""
    backbone, head = model.backbone, model.head
    from timm.models.vgg import VGG  # here, not at the top: config checks import this module

    if isinstance(backbone, VGG):
        groups = _vgg_groups(backbone)
    else:
        groups = _timm_groups(backbone)
    groups = [(g, [f"backbone.{n}" for n in names]) for g, names in groups if names]
    groups.append(("head", [f"head.{n}" for n, _ in head.named_parameters()]))
    _check_partition(model, groups)
    return groups


def group_sizes(model: nn.Module) -> list[tuple[str, int]]:
    """``[(group name, number of parameters)]`` in the order of :func:`parameter_groups`."""
    params = dict(model.named_parameters())
    return [(g, sum(params[n].numel() for n in names)) for g, names in parameter_groups(model)]


def _timm_groups(backbone: nn.Module) -> GroupList:
    """timm's coarse grouping, named stem / stage<i> / pre_logits (see the module docstring)."""
    try:
        matcher = backbone.group_matcher(coarse=True)
    except (AttributeError, NotImplementedError):
        return _children_groups(backbone)
    from timm.models import group_parameters

    grouped = group_parameters(backbone, matcher)
    if not isinstance(matcher, dict):  # a callable matcher: no names to go by
        return [(f"stage{i}", grouped[k]) for i, k in enumerate(sorted(grouped))]
    compiled = _compile(matcher)
    out: GroupList = []
    stage = 0
    for k in sorted(grouped):
        names = grouped[k]
        keys = {_matcher_key(compiled, n) for n in names}
        if keys == {"stem"} and not out:
            label = "stem"
        elif keys == {None}:  # unmatched: timm sorts them last
            label = "pre_logits"
        else:
            stage += 1
            label = f"stage{stage}"
        out.append((label, names))
    return out


def _compile(matcher: dict) -> list[tuple[re.Pattern, str]]:
    """The matcher's regexes in timm's matching order, each with its key ('stem', 'blocks')."""
    out = []
    for key, spec in matcher.items():
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            out += [(re.compile(s[0]), key) for s in spec]
        else:
            out.append((re.compile(spec), key))
    return out


def _matcher_key(compiled: list[tuple[re.Pattern, str]], name: str) -> str | None:
    for rx, key in compiled:
        if rx.match(name):  # timm uses re.match too: first hit wins
            return key
    return None


def _vgg_groups(backbone: nn.Module) -> GroupList:
    """VGG: one group per conv block, cut after each max-pool (timm's own matcher makes every
    conv its own block); then timm's pre_logits (fc1 = the 7x7 conv 512->4096, fc2 4096->4096)."""
    blocks: list[list[str]] = [[]]
    for idx, layer in backbone.features.named_children():
        blocks[-1] += [f"features.{idx}.{n}" for n, _ in layer.named_parameters()]
        if isinstance(layer, nn.MaxPool2d):
            blocks.append([])
    blocks = [b for b in blocks if b]
    out: GroupList = [("stem" if i == 0 else f"stage{i}", b) for i, b in enumerate(blocks)]
    named = {n for _, b in out for n in b}
    rest = [n for n, _ in backbone.named_parameters() if n not in named]
    return out + [("pre_logits", rest)]


def _children_groups(backbone: nn.Module) -> GroupList:
    """Fallback for a model without ``group_matcher``: one group per top-level child module."""
    out: GroupList = []
    for child, module in backbone.named_children():
        names = [f"{child}.{n}" for n, _ in module.named_parameters()]
        if names:
            out.append((child, names))
    direct = [n for n, _ in backbone.named_parameters(recurse=False)]
    return ([("stem", direct)] if direct else []) + out


def _check_partition(model: nn.Module, groups: GroupList) -> None:
    seen: dict[str, str] = {}
    for g, names in groups:
        for n in names:
            if n in seen:
                raise RuntimeError(f"parameter {n} is in groups {seen[n]} and {g}")
            seen[n] = g
    missing = [n for n, _ in model.named_parameters() if n not in seen]
    extra = [n for n in seen if n not in dict(model.named_parameters())]
    if missing or extra:
        raise RuntimeError(f"parameter groups do not cover the model: missing {missing[:3]}, "
                           f"unknown {extra[:3]}")
