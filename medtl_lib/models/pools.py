"""The pooling registry: how features leave the timm backbone for the head.

A pooling is a class with ``@POOLS.register``: ``name``, ``description``, the ``timm_pool`` the
backbone is built with (timm's ``global_pool``; the pooling lives inside the backbone, so every
backbone parameter keeps its ``backbone.*`` key) and ``attach(backbone, img_size)`` -> (the
head's in-features, extra head arguments), which may hook the backbone so that ``backbone(x)`` is
exactly the head's input (the feature cache relies on that). A new pooling is one new class here
or in a plugin. See :class:`~medtl_lib.models.factory.Classifier` for the built-in ones.
"""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Arg, Registry

POOLS: Registry["Pool"] = Registry("pool", "how features leave the backbone (--pool)",
                                   lazy=(__package__, "pool_"))


class Pool:
    """Base class of a pooling."""

    name = "pool"
    description = ""
    args: tuple[Arg, ...] = ()
    timm_pool = ""  # timm's global_pool when the backbone is created
    gives_tokens = False  # a (B, p, d) sequence: only heads with takes_tokens accept it

    @classmethod
    def check_model(cls, timm_name: str, kwargs: dict) -> None:
        """Refuse a model before any weights are fetched (default: every model is fine)."""

    @classmethod
    def attach(cls, backbone: nn.Module, img_size: int | None) -> tuple[int, dict]:
        """(in_features of the head, extra head arguments), hooking ``backbone`` if needed."""
        return pooled_features(backbone), {}


@POOLS.register
class AvgPool(Pool):
    name, timm_pool = "avg", "avg"
    description = ("timm global_pool='avg': mean over H x W (CNN) or tokens (ViT); seed 000's")


@POOLS.register
class TokenPool(Pool):
    name, timm_pool = "token", "token"
    description = "timm global_pool='token': a ViT's class token"

    @classmethod
    def check_model(cls, timm_name: str, kwargs: dict) -> None:
        import timm

        try:
            with torch.device("meta"):
                probe = timm.create_model(timm_name, pretrained=False, **kwargs)
        except Exception as exc:
            raise ValueError(f"pool='token' is not possible for model '{timm_name}' "
                             f"({type(exc).__name__}: {exc}); use pool='avg'") from None
        check_token_backbone(probe, timm_name)

    @classmethod
    def attach(cls, backbone: nn.Module, img_size: int | None) -> tuple[int, dict]:
        check_token_backbone(backbone, type(backbone).__name__)
        return pooled_features(backbone), {}


@POOLS.register
class FlattenPool(Pool):
    name = "flatten"
    description = "the unpooled feature map / all tokens, flattened (fixed input size)"

    @classmethod
    def attach(cls, backbone: nn.Module, img_size: int | None) -> tuple[int, dict]:
        backbone.register_forward_hook(_flatten_output)
        return probe_shape(backbone, img_size)[1], {}


@POOLS.register
class TokensPool(Pool):
    name, gives_tokens = "tokens", True
    description = "forward_features as a (batch, tokens, dim) sequence, for token heads (cdtm)"

    @classmethod
    def attach(cls, backbone: nn.Module, img_size: int | None) -> tuple[int, dict]:
        backbone.forward = backbone.forward_features  # no pooling, no head norm
        backbone.register_forward_hook(to_tokens)
        shape = probe_shape(backbone, img_size)
        return shape[2], {"num_tokens": shape[1]}


@POOLS.register
class AvgRawPool(Pool):
    name = "avg_raw"
    description = "mean of forward_features over positions/non-prefix tokens, no head norm"

    @classmethod
    def attach(cls, backbone: nn.Module, img_size: int | None) -> tuple[int, dict]:
        backbone.forward = backbone.forward_features
        backbone.register_forward_hook(_mean_of_tokens)
        return probe_shape(backbone, img_size)[1], {}


# --- helpers -------------------------------------------------------------------------------------
def pooled_features(backbone: nn.Module) -> int:
    # head_hidden_size: what forward() returns when a model has a pre-logits stage after the pool
    # (VGG's 4096-d fc1/fc2, MobileNetV3's conv_head); equal to num_features everywhere else.
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def _flatten_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.flatten(1)


def _mean_of_tokens(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return to_tokens(module, args, output).mean(1)


def to_tokens(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """forward_features -> (B, p, d): a CNN map's h*w positions, a ViT's non-prefix tokens."""
    if output.ndim == 4:
        return output.flatten(2).transpose(1, 2)
    return output[:, int(getattr(module, "num_prefix_tokens", 0)):]


def probe_shape(backbone: nn.Module, img_size: int | None) -> tuple[int, ...]:
    """The backbone's output shape for one zero image (eval mode: BN statistics untouched)."""
    if img_size is None:
        size = (getattr(backbone, "pretrained_cfg", None) or {}).get("input_size")
        if not size:
            raise ValueError("pool='flatten', 'tokens' and 'avg_raw' need img_size: the head's "
                             "size depends on it")
        img_size = int(size[-1])
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters(), None)
            x = torch.zeros(1, 3, img_size, img_size,
                            device=p.device if p is not None else "cpu")
            return tuple(int(n) for n in backbone(x).shape)
    finally:
        backbone.train(was_training)


def check_token_backbone(backbone: nn.Module, what: str) -> None:
    if getattr(backbone, "cls_token", None) is None:
        raise ValueError(f"pool='token' needs a class token, and model '{what}' has none; use "
                         "pool='avg' (or a ViT with a class token)")
    if isinstance(getattr(backbone, "global_pool", None), str) and backbone.global_pool != "token":
        raise ValueError(f"pool='token' needs the backbone built with global_pool='token' "
                         f"(backbone_kwargs), this one has '{backbone.global_pool}'")
