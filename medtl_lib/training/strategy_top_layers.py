"""Seed 004's "fine-tune the top layers" (spec Section 4.2): the last stage of the backbone, every
backbone parameter above it, and the head train; everything below stays frozen and in eval mode.

With ``--weights none`` the frozen part stays random, as the paper did (its setting "random + top"):
a random feature extractor below a trained top, which is what makes that setting a control.

"The last stage" comes from :func:`medtl_lib.models.groups.parameter_groups` (ResNet ``layer4``,
DenseNet ``denseblock4`` with ``norm5`` above it, VGG's last conv block, EfficientNet ``blocks.6``
with ``conv_head``). For three families timm's coarse grouping is narrower than a stage (only the
last module), so their exit stage is listed here explicitly, as the spec gives it.
"""
from __future__ import annotations

from torch import nn

from ..models.groups import parameter_groups
from ..registry import Arg
from .strategies import STRATEGIES, Stage, Strategy, head_names, set_trainable

# backbone class name -> the exit stage (parameter-name prefixes below `backbone.`)
EXPLICIT_TOP: dict[str, tuple[str, ...]] = {
    "InceptionV3": ("Mixed_7a.", "Mixed_7b.", "Mixed_7c."),
    "InceptionResnetV2": ("repeat_2.", "block8.", "conv2d_7b."),
    "Xception": ("block12.", "conv3.", "bn3.", "conv4.", "bn4."),  # timm's legacy_xception
}


def top_layer_names(model: nn.Module, top_groups: int = 1) -> set[str]:
    """Parameter names that train under ``top_layers``: the top ``top_groups`` stages, whatever
    the backbone holds above them (pre-logits norms), and the head."""
    explicit = EXPLICIT_TOP.get(type(model.backbone).__name__)
    if explicit is not None:
        if top_groups != 1:
            raise ValueError(f"top_groups={top_groups}: for {type(model.backbone).__name__} the "
                             "kit defines only its exit stage (top_groups=1)")
        names = {n for n, _ in model.named_parameters()
                 if any(n.startswith("backbone." + p) for p in explicit)}
        return names | head_names(model)
    groups = parameter_groups(model)
    stages = [i for i, (g, _) in enumerate(groups) if g.startswith("stage")]
    if not 1 <= top_groups <= len(stages):
        raise ValueError(f"top_groups={top_groups}: this model has {len(stages)} stages")
    first = stages[-top_groups]
    return {n for _, names in groups[first:] for n in names}


@STRATEGIES.register
class TopLayers(Strategy):
    """The top of the backbone and the head train; the rest is frozen (BN statistics too)."""

    name = "top_layers"
    description = "the last backbone stage(s), anything above them and the head train (seed 004)"
    args = (Arg("top_groups", "int", 1, "how many of the top stages train", minimum=1),)

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("top", epochs)]

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        names = top_layer_names(model, self.args["top_groups"])
        return [{"params": [p for n, p in model.named_parameters() if n in names], "lr": lr,
                 "name": "top"}]

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        set_trainable(model, top_layer_names(model, self.args["top_groups"]))
