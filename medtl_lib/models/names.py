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


# As the authors' code uses them; ViT* is the same ViT with the lower learning rate.
PRESETS: dict[str, ModelPreset] = {
    "resnet": ModelPreset("resnet50.a1_in1k", 1e-3, "ResNet"),
    "densenet": ModelPreset("densenet201.tv_in1k", 1e-3, "DenseNet"),
    "convnext": ModelPreset("convnext_tiny.fb_in22k", 1e-3, "ConvNeXt"),
    "vit": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-3, "ViT"),
    "vit_star": ModelPreset("vit_small_patch16_224.augreg_in21k", 1e-5, "ViT*"),
    # Not in the paper: the model whose ImageNet weights install offline (pip package).
    "efficientnet_lite0": ModelPreset("tf_efficientnet_lite0", 1e-3, "EfficientNet-Lite0"),
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
}
ALIASES = {"vit*": "vit_star", "vitstar": "vit_star", "lite0": "efficientnet_lite0"}


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
