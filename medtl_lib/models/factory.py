"""The single model factory: a timm backbone, global average pooling and one linear layer
(seed 000, Section III.B.a), with pretrained weights from a named source."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from ..utils import atomic_torch_save, medtl_cache_dir
from . import weights as W


@dataclass(frozen=True)
class ModelPreset:
    timm_name: str
    lr: float
    label: str  # as the paper's tables name it


# As the authors' code uses them; ViT* is the same ViT with the lower learning rate.
PRESETS: dict[str, ModelPreset] = {
    "resnet": ModelPreset("resnet50.a1_in1k", 1e-3, "ResNet"),
    "densenet": ModelPreset("densenet201.tv_in1k", 1e-3, "DenseNet"),
    "convnext": ModelPreset("convnext_tiny.fb_in22k", 1e-3, "ConvNeXt"),
    "vit": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-3, "ViT"),
    "vit_star": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-5, "ViT*"),
    # Not in the paper: the model whose ImageNet weights install offline (pip package).
    "efficientnet_lite0": ModelPreset("tf_efficientnet_lite0", 1e-3, "EfficientNet-Lite0"),
}
ALIASES = {"vit*": "vit_star", "vitstar": "vit_star", "lite0": "efficientnet_lite0"}


def resolve_model_name(name: str) -> tuple[str, ModelPreset | None]:
    """Preset key or timm name -> (timm name, preset or None); unknown names get suggestions."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in PRESETS:
        return PRESETS[key].timm_name, PRESETS[key]
    if timm.is_model(name) or timm.is_model(name.split(".")[0]):
        return name, None
    known = list(PRESETS) + timm.list_models()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model '{name}'.{hint} Use a preset ({', '.join(PRESETS)}) or any "
                     "timm model name (timm.list_models()).")


class Classifier(nn.Module):
    """backbone -> global average pool -> linear head.

    The pooling is timm's ``global_pool='avg'`` (mean over H x W for CNNs, mean over tokens for
    ViT as the paper defines z); for ConvNeXt, timm keeps its pretrained LayerNorm after the pool.
    """

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    @property
    def num_classes(self) -> int:
        return self.head.out_features


@dataclass
class ModelInfo:
    name: str  # as requested
    timm_name: str
    weights_source: str  # 'hub', 'hub-cache:<path>', 'offline:<package>', 'file:<path>', 'none'
    data_config: dict


def create_model(name: str, num_classes: int, weights: str = "auto", img_size: int | None = None,
                 ) -> tuple[Classifier, ModelInfo]:
    """Build the classifier; ``weights`` is 'auto', 'none' or a path to a state-dict file."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    timm_name, _ = resolve_model_name(name)
    kwargs: dict = {"num_classes": 0, "global_pool": "avg"}
    if img_size is not None and _fixed_input_size(timm_name):
        kwargs["img_size"] = img_size
    own_ckpt = None
    if weights == "none":
        backbone, source = timm.create_model(timm_name, pretrained=False, **kwargs), "none"
    elif weights == "auto":
        backbone, source = _auto(timm_name, kwargs)
    else:
        sd = W.load_checkpoint_file(weights)
        if any(k.startswith("backbone.") for k in sd):
            own_ckpt = sd  # a MedTL checkpoint: load after the head exists
            backbone = timm.create_model(timm_name, pretrained=False, **kwargs)
        else:
            backbone = _from_file(timm_name, kwargs, str(weights))
        source = f"file:{weights}"
    model = Classifier(backbone, num_classes)
    if own_ckpt is not None:
        load_model_state(model, own_ckpt, what=str(weights))
    data_config = timm.data.resolve_data_config({}, model=backbone)
    if img_size is not None:
        data_config["input_size"] = (3, img_size, img_size)
    return model, ModelInfo(name, timm_name, source, data_config)


def load_model_state(model: Classifier, state: dict[str, torch.Tensor], what: str) -> None:
    """Load a MedTL checkpoint, refusing one made for another model or class count."""
    mine = model.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and state[k].shape != mine[k].shape]
    if missing or unexpected or wrong:
        detail = []
        if "head.weight" in wrong:
            detail.append(f"it was trained for {state['head.weight'].shape[0]} classes, this model "
                          f"has {model.num_classes}")
        if missing or unexpected:
            detail.append(f"{len(missing)} missing and {len(unexpected)} unexpected tensors "
                          f"(e.g. {(missing + unexpected)[0]}) - it is from another architecture")
        elif wrong and "head.weight" not in wrong:
            detail.append(f"{len(wrong)} tensors have other shapes (e.g. {wrong[0]})")
        raise W.WeightsNotAvailableError(f"checkpoint {what} does not fit this model: "
                                         + "; ".join(detail))
    model.load_state_dict(state)


def _fixed_input_size(timm_name: str) -> bool:
    cfg = timm.models.get_pretrained_cfg(timm_name)
    return bool(cfg and cfg.fixed_input_size)


def _auto(timm_name: str, kwargs: dict) -> tuple[nn.Module, str]:
    cached = W.cached_hub_file(timm_name)
    if cached:
        return _from_file(timm_name, kwargs, cached), f"hub-cache:{cached}"
    if W.hub_reachable():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return timm.create_model(timm_name, pretrained=True, **kwargs), "hub"
        except Exception as exc:  # network flaked between probe and download
            hub_error = f"{type(exc).__name__}: {exc}"
    else:
        hub_error = "the Hugging Face hub is not reachable from this machine"
    offline = W.offline_weights(timm_name.split(".")[0])
    if offline is not None:
        path = _offline_cache_path(timm_name)
        if not path.is_file():
            atomic_torch_save(path, offline)
        return _from_file(timm_name, kwargs, str(path)), f"offline:{W.OFFLINE_PACKAGES[timm_name]}"
    raise W.WeightsNotAvailableError(f"{W.how_to_supply(timm_name)}\n(hub: {hub_error})")


def _offline_cache_path(timm_name: str) -> Path:
    return medtl_cache_dir("weights") / f"{timm_name}.offline.pth"


def _from_file(timm_name: str, kwargs: dict, path: str) -> nn.Module:
    try:
        return timm.create_model(timm_name, pretrained=True,
                                 pretrained_cfg_overlay=dict(file=path), **kwargs)
    except RuntimeError as exc:
        raise W.WeightsNotAvailableError(
            f"weights file {path} does not fit timm model '{timm_name}': {str(exc)[:400]}") from None
