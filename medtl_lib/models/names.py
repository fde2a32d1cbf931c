"""Model names without importing torch or timm: the presets, and timm's list of architectures
kept as a small file per timm version, so that a typo in ``--model`` is answered at once instead
of after the seconds that ``import timm`` takes (the factory re-exports everything here)."""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from importlib import metadata

from ..utils import atomic_write_text, medtl_cache_dir


@dataclass(frozen=True)
class ModelPreset:
    timm_name: str
    lr: float
    label: str  # as the paper's tables name it
    surgery: tuple[dict, ...] = ()  # structural edits after the build (models/surgery.py)


# As the authors' code uses them; ViT* is the same ViT with the lower learning rate.
PRESETS: dict[str, ModelPreset] = {
    "resnet": ModelPreset("resnet50.a1_in1k", 1e-3, "ResNet"),
    "densenet": ModelPreset("densenet201.tv_in1k", 1e-3, "DenseNet"),
    "convnext": ModelPreset("convnext_tiny.fb_in22k", 1e-3, "ConvNeXt"),
    "vit": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-3, "ViT"),
    "vit_star": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-5, "ViT*"),
    # Not in the paper: the model whose ImageNet weights install offline (pip package).
    "efficientnet_lite0": ModelPreset("tf_efficientnet_lite0", 1e-3, "EfficientNet-Lite0"),
    "efficientnet_lite1": ModelPreset("tf_efficientnet_lite1", 1e-3, "EfficientNet-Lite1"),
    "efficientnet_lite2": ModelPreset("tf_efficientnet_lite2", 1e-3, "EfficientNet-Lite2"),
    # Seed 002 (Table VI): ViT-B/16 and ConvNeXt-B by pretraining data, LR 1e-4 as the paper.
    # "LAION-400M" ViT-B follows the paper's label; the authors' code loads OpenAI's CLIP
    # (vit_base_patch16_clip_224.openai) there. ConvNeXt-B on LAION-400M exists only in
    # open_clip (convnext_base / laion400m_s13b_b51k), not in timm, so it has no preset here.
    "vit_b_in21k": ModelPreset("vit_base_patch16_224.augreg_in21k", 1e-4, "ViT-B (IN-21K)"),
    "vit_b_laion400m": ModelPreset("vit_base_patch16_clip_224.laion400m_e32", 1e-4,
                                   "ViT-B (LAION-400M)"),
    "vit_b_laion2b": ModelPreset("vit_base_patch16_clip_224.laion2b", 1e-4, "ViT-B (LAION-2B)"),
    "convnext_b_in21k": ModelPreset("convnext_base.fb_in22k", 1e-4, "ConvNeXt-B (IN-21K)"),
    "convnext_b_laion2b": ModelPreset("convnext_base.clip_laion2b_augreg", 1e-4,
                                      "ConvNeXt-B (LAION-2B)"),
    # Seed 004 (spec Section 4.2): the Keras Applications set, torchvision / Keras-ported weights,
    # Keras-style heads (global average pooling + one linear layer; VGG without fc6/fc7). LR 1e-4:
    # the spec's fine-tuning rate (profiles set 1e-3 for the frozen and random settings).
    "vgg16_gap": ModelPreset("vgg16.tv_in1k", 1e-4, "VGG16", ({"op": "drop_pre_logits"},)),
    "vgg19_gap": ModelPreset("vgg19.tv_in1k", 1e-4, "VGG19", ({"op": "drop_pre_logits"},)),
    "resnet50_tv": ModelPreset("resnet50.tv_in1k", 1e-4, "ResNet50"),
    "resnet101_tv": ModelPreset("resnet101.tv_in1k", 1e-4, "ResNet101"),
    "resnet152_tv": ModelPreset("resnet152.tv_in1k", 1e-4, "ResNet152"),
    "inception_v3_tf": ModelPreset("inception_v3.tf_in1k", 1e-4, "InceptionV3"),
    "inception_resnet_v2_tf": ModelPreset("inception_resnet_v2.tf_in1k", 1e-4,
                                          "InceptionResNetV2"),
    "xception_keras": ModelPreset("legacy_xception.tf_in1k", 1e-4, "Xception"),
    "densenet121_tv": ModelPreset("densenet121.tv_in1k", 1e-4, "DenseNet121"),
    "densenet201_tv": ModelPreset("densenet201.tv_in1k", 1e-4, "DenseNet201"),
}
SEED004_MODELS: tuple[str, ...] = ("vgg16_gap", "vgg19_gap", "resnet50_tv", "resnet101_tv",
                                   "resnet152_tv", "inception_v3_tf", "inception_resnet_v2_tf",
                                   "xception_keras", "densenet121_tv", "densenet201_tv")
ALIASES = {"vit*": "vit_star", "vitstar": "vit_star", "lite0": "efficientnet_lite0",
           "lite1": "efficientnet_lite1", "lite2": "efficientnet_lite2"}


def timm_architectures() -> set[str]:
    """Every architecture timm registers. Read from ``$MEDTL_CACHE_DIR/names/timm-<version>.json``
    when it is there (written on first use); from timm itself when timm is already imported,
    so a model registered at run time counts too."""
    try:
        version = metadata.version("timm")
    except metadata.PackageNotFoundError:
        version = "unknown"
    path = medtl_cache_dir("names") / f"timm-{version}.json"
    if "timm" in sys.modules:
        names = sorted(sys.modules["timm"].list_models())
        if path.is_file():
            return set(names)
    else:
        try:
            return set(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
        import timm

        names = sorted(timm.list_models())
    try:
        atomic_write_text(path, json.dumps(names))
    except OSError:  # a read-only cache only costs the next command the same few seconds
        pass
    return set(names)


def resolve_model_name(name: str) -> tuple[str, ModelPreset | None]:
    """Preset key or timm name -> (timm name, preset or None); unknown names get suggestions."""
    key = ALIASES.get(name.lower(), name.lower())
    if key in PRESETS:
        return PRESETS[key].timm_name, PRESETS[key]
    known = timm_architectures()
    if name in known or name.split(".")[0] in known:
        return name, None
    close = difflib.get_close_matches(name, list(PRESETS) + sorted(known), n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model '{name}'.{hint} Use a preset ({', '.join(PRESETS)}) or any "
                     "timm model name (timm.list_models()).")
