"""The head registry: what turns the pooled features (or a token sequence) into class scores.

A head is a class with ``@HEADS.register``: ``name``, ``description``, its arguments (``args``, a
tuple of :class:`~medtl_lib.registry.Arg`, validated by RunConfig as ``head_args``) and
``build(in_features, num_classes, **args)`` -> ``nn.Module`` (the Classifier's ``head``,
state_dict keys ``head.*``). ``takes_tokens = True`` heads get a (B, p, d) sequence and
``num_tokens`` = p (``pool='tokens'``). A new head is one new file ``models/head_<name>.py`` (or a
plugin): the registry imports that module the first time the name is asked for.

The older decorator form ``@register_head("name")`` on a builder function still works; its
keyword defaults become its declared arguments.
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from ..registry import Arg, Registry, signature_args

HEADS: Registry["Head"] = Registry("head", "classifier head on the pooled features (--head)",
                                   flag="--head-arg", lazy=(__package__, "head_"))


class Head:
    """Base class of a head."""

    name = "head"
    description = ""
    args: tuple[Arg, ...] = ()
    takes_tokens = False  # True: (B, p, d) tokens from pool='tokens', plus num_tokens

    @classmethod
    def build(cls, in_features: int, num_classes: int, **kwargs: Any) -> nn.Module:
        raise NotImplementedError


HeadBuilder = Callable[..., nn.Module]


def register_head(name: str, takes_tokens: bool | None = None) -> Callable[[HeadBuilder], HeadBuilder]:
    """Decorator: make the function ``builder(in_features, num_classes, **head_args)`` the head
    called ``name`` (a second, different one is refused)."""
    def deco(builder: HeadBuilder) -> HeadBuilder:
        doc = (builder.__doc__ or "").strip()
        cls = type(f"FunctionHead_{name}", (Head,), {
            "name": name, "description": doc.splitlines()[0] if doc else "",
            "args": signature_args(builder, skip=2),
            "takes_tokens": bool(takes_tokens if takes_tokens is not None
                                 else getattr(builder, "takes_tokens", False)),
            "build": classmethod(lambda c, *a, **k: builder(*a, **k)),
            "builder": staticmethod(builder),
            "__module__": builder.__module__, "__qualname__": builder.__qualname__})
        try:
            HEADS.register(cls)
        except ValueError as exc:
            raise ValueError(f"head '{name}' is already registered ({exc})") from None
        return builder
    return deco


def head_class(name: str) -> type[Head]:
    """The head registered as ``name``, importing ``medtl_lib.models.head_<name>`` if needed."""
    if name not in HEADS:
        raise ValueError(f"Unknown head '{name}'. Known heads: {', '.join(HEADS.available())}. "
                         f"A new head is a module medtl_lib/models/head_<name>.py (or a plugin) "
                         f"with a class registered by @HEADS.register.")
    return HEADS.get(name)


def available_heads() -> list[str]:
    """Registered heads plus the ``head_<name>`` modules found beside this file (not yet imported)."""
    return sorted(HEADS.available())


@HEADS.register
class LinearHead(Head):
    """Seed 000's head: one linear layer on the pooled features."""

    name = "linear"
    description = "one linear layer on the pooled features (seed 000)"

    @classmethod
    def build(cls, in_features: int, num_classes: int, **kwargs: Any) -> nn.Module:
        return nn.Linear(in_features, num_classes)
