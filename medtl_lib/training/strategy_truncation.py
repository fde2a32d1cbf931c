"""Seed 003's strategies (Peng et al.): truncated transfer learning (TTL), TransFusion and
layer-wise fine-tuning (LWFT), each defined by one cut point in timm naming.

* ``ttl``: everything above ``cut`` is deleted (models/surgery.py ``truncate``); the rest and a new
  head train, as full fine-tuning does.
* ``transfusion``: the stages from ``slim_from`` up keep their place but get half the channels and
  random weights (``slim``); the pretrained stages below and the head train together.
* ``lwft``: nothing is deleted; the backbone below ``finetune_from`` is frozen, the rest trains
  at LR / ``base_lr_divisor`` and the head at LR, as the paper (head at eta, the unfrozen layers at
  eta / 10). ``frozen_bn``: the frozen layers are in eval mode (``eval``, the default: their
  BatchNorm statistics stay the pretrained ones), or, as the authors' code, in train mode
  (``train``): sun-umn/TTL freezes with ``requires_grad = False`` (utils/models.py:322-324) and
  calls ``model.train()`` on the whole network every epoch (main.py:202), so the frozen layers'
  weights never move while their BatchNorm running statistics follow the new data.

The cut points are the spec's (Section 3.1): ResNet ``stem``, ``layer3`` or ``layer3.1``;
DenseNet ``features.transition2``; EfficientNet ``blocks.4`` or ``blocks.4.1``.
"""
from __future__ import annotations

from torch import nn

from ..registry import Arg
from .strategies import STRATEGIES, Stage, Strategy, head_names, set_trainable

FROZEN_BN = ("eval", "train")


@STRATEGIES.register
class TruncatedTransfer(Strategy):
    """TTL: the network up to ``cut``, fine-tuned whole under a new head."""

    name = "ttl"
    description = "truncated transfer: delete the layers above cut, fine-tune the rest (seed 003)"
    args = (Arg("cut", "str", "", "the last kept module, e.g. layer3, layer3.1, "
                "features.transition2, blocks.4"),)

    def __init__(self, **args) -> None:
        super().__init__(**args)
        if not self.args["cut"]:
            raise ValueError("ttl needs a cut point: --strategy-arg cut=layer3 (ResNet), "
                             "features.transition2 (DenseNet) or blocks.4 (EfficientNet)")

    def surgery(self) -> list[dict]:
        return [{"op": "truncate", "cut": self.args["cut"]}]


@STRATEGIES.register
class TransFusion(Strategy):
    """TransFusion (Raghu et al., 2019): the top stages slimmed to half width, randomly
    initialised, trained with the pretrained stages below them."""

    name = "transfusion"
    description = "stages from slim_from up at half width, random init; all train (seed 003)"
    args = (Arg("slim_from", "str", "layer4", "the first slimmed ResNet stage",
                choices=("layer1", "layer2", "layer3", "layer4")),)

    def surgery(self) -> list[dict]:
        return [{"op": "slim", "slim_from": self.args["slim_from"]}]


def trained_from(model: nn.Module, start: str) -> set[str]:
    """Backbone parameters from the module ``start`` on (in the backbone's forward order, which
    ``named_parameters`` follows for these families), plus the head."""
    names = [n for n, _ in model.backbone.named_parameters()]
    prefix = start + "."
    first = next((i for i, n in enumerate(names) if n.startswith(prefix)), None)
    if first is None:
        raise ValueError(f"lwft: finetune_from '{start}' names no module of "
                         f"{type(model.backbone).__name__} (e.g. layer3, layer3.2, blocks.4)")
    return {f"backbone.{n}" for n in names[first:]} | head_names(model)


@STRATEGIES.register
class LayerWiseFineTune(Strategy):
    """LWFT (Tajbakhsh et al., 2016): the bottom frozen, the top fine-tuned at a lower rate."""

    name = "lwft"
    description = "freeze below finetune_from; those layers at LR/base_lr_divisor, head at LR (seed 003)"
    args = (Arg("finetune_from", "str", "", "the first trained module, e.g. layer4, layer3.2, blocks.5"),
            Arg("base_lr_divisor", "float", 10.0, "the unfrozen backbone trains at LR / this",
                minimum=1e-9),
            Arg("frozen_bn", "str", "eval", "mode of the frozen layers: eval (BatchNorm keeps the "
                "pretrained statistics) or train (their statistics follow the new data, as "
                "model.train() in the authors' code; their weights still never move)",
                choices=FROZEN_BN))

    def __init__(self, **args) -> None:
        super().__init__(**args)
        if not self.args["finetune_from"]:
            raise ValueError("lwft needs the first trained module: --strategy-arg "
                             "finetune_from=layer4 (or layer3.2, blocks.5, ...)")

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("lwft", epochs)]

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        trained = trained_from(model, self.args["finetune_from"])
        params = dict(model.named_parameters())
        head = head_names(model)
        return [{"params": [params[n] for n in params if n in head], "lr": lr, "name": "head"},
                {"params": [params[n] for n in params if n in trained and n not in head],
                 "lr": lr / self.args["base_lr_divisor"], "name": "backbone"}]

    def on_epoch_start(self, model: nn.Module, stage: Stage, epoch: int) -> None:
        set_trainable(model, trained_from(model, self.args["finetune_from"]))
        if self.args["frozen_bn"] == "train":  # requires_grad stays as set: only modes change
            model.train()
