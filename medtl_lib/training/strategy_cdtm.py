"""Seed 002's ways to train a CDTM head, and its from-scratch baseline (spec 2.1.4, Table VIII).

``cdtm_lp`` ("LP + CDTM"): the pretrained backbone frozen in eval mode, the CDTM head (module +
classifier) trains. ``sft`` (staged fine-tuning): that probe for the run's whole epoch budget, then
every parameter from the probe's best weights with a fresh optimizer and schedule at LR / 10, for
the whole budget again (so a run trains 2 x epochs in all, as the authors' code does). The model
is built with ``pool='tokens', head='cdtm'`` (``sft`` also works with any other head).

On a BatchNorm backbone, stage 2's train mode swaps the ImageNet running statistics the probe was
fitted with for each batch's own, and the probed head no longer fits (seed 002's ConvNeXt and ViT
use LayerNorm, so the paper never meets this). ``ft_bn=frozen`` keeps the running statistics;
``scripts/bench_sft_bn.py`` measures the shift on a finished run.
"""
from __future__ import annotations

from torch import nn

from ..registry import Arg
from .strategies import (
    FT_BN,
    STRATEGIES,
    LinearProbe,
    LinearProbeThenFineTune,
    Stage,
    Strategy,
    head_names,
    head_of,
)


def _require_token_head(model: nn.Module, strategy: str) -> None:
    if getattr(head_of(model), "cdtm", None) is None:
        raise ValueError(f"strategy '{strategy}' trains a CDTM head: build the model with "
                         "pool='tokens' and head='cdtm' (--pool tokens --head cdtm)")


@STRATEGIES.register
class CDTMLinearProbe(LinearProbe):
    name = "cdtm_lp"
    description = ("seed 002's LP + CDTM: backbone frozen, the CDTM head trains "
                   "(--pool tokens --head cdtm)")
    args: tuple[Arg, ...] = ()

    def setup(self, model: nn.Module) -> None:
        _require_token_head(model, self.name)

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("probe", epochs, frozen_backbone=True)]

    def _trainable(self, model: nn.Module) -> set[str]:
        return head_names(model)

    def param_groups(self, model: nn.Module, lr: float, stage: Stage) -> list[dict]:
        return [{"params": list(head_of(model).parameters()), "lr": lr, "name": "head"}]


@STRATEGIES.register
class StagedFineTune(LinearProbeThenFineTune):
    name = "sft"
    description = ("seed 002's SFT: the head probed for the whole budget, then everything from its "
                   "best weights at LR / lr_divisor, fresh optimizer and schedule, whole budget again")
    args = (Arg("lr_divisor", "float", 10.0, "stage 2 trains at the run's LR divided by this",
                minimum=1e-9), FT_BN)

    def stages(self, epochs: int) -> list[Stage]:
        return [Stage("lp", epochs, frozen_backbone=True),
                Stage("ft", epochs, lr_factor=1.0 / self.args["lr_divisor"],
                      init_from="previous_best")]


@STRATEGIES.register
class FromScratch(Strategy):
    name = "scratch"
    description = ("seed 002's From Scratch: the backbone re-initialised as timm initialises it, "
                   "then everything trains (the pretrained weights are discarded)")

    def setup(self, model: nn.Module) -> None:
        import timm
        import torch

        from ..models.factory import backbone_kwargs

        spec = getattr(model, "spec", None)
        if spec is None:
            raise ValueError("strategy 'scratch' needs a model built by the kit's factory "
                             "(model.spec names the architecture to re-initialise)")
        kwargs = backbone_kwargs(spec.timm_name, spec.pool, spec.img_size)
        fresh = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        with torch.no_grad():  # same module tree, new values; hooks and forward stay as built
            model.backbone.load_state_dict(fresh.state_dict())
