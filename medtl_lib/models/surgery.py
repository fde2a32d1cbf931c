"""Structural edits of a built backbone, recorded in the model's spec (``ModelSpec.surgery``) so that
``load_run_model`` rebuilds exactly the trained network.

One op per function; an op is a dict ``{"op": name, ...arguments}``. Later ops (seed 003's truncation
and slimming) are new entries of :data:`OPS`.
"""
from __future__ import annotations

from typing import Callable

from torch import nn


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


OPS: dict[str, Callable[..., nn.Module]] = {"drop_pre_logits": drop_pre_logits}


def apply_surgery(backbone: nn.Module, ops: list[dict]) -> nn.Module:
    """Apply the ops in order; an unknown op is an error that names the known ones."""
    for op in ops:
        name = op.get("op")
        if name not in OPS:
            raise NotImplementedError(f"model surgery '{name}' is not supported by this version "
                                      f"of medtl_lib (known: {', '.join(OPS)})")
        backbone = OPS[name](backbone, **{k: v for k, v in op.items() if k != "op"})
    return backbone
