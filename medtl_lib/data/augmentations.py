"""Augmentation and input-normalisation registries (RunConfig ``augmentation`` and ``normalize``).

An augmentation is a class with ``@AUGMENTATIONS.register``: ``name``, ``description``, ``args``,
``per_image`` (True if the per-image PIL pipeline has it too; the others run on the device and need
``pipeline='cached'``), ``label`` (for the run log) and ``device_augments(data_config, cfg)`` ->
(training, evaluation) batch transforms of uint8 batches (:mod:`.gpu_aug`). A normalisation is a
class with ``@NORMALIZATIONS.register`` whose ``apply(data_config)`` sets the input mean/std.
This module imports no torch: RunConfig checks names here before any work starts.
"""
from __future__ import annotations

from typing import Any

from ..registry import Arg, Registry

AUGMENTATIONS: Registry["Augmentation"] = Registry(
    "augmentation", "training-time augmentation (--augmentation)",
    lazy=(__package__, "augmentation_"))
NORMALIZATIONS: Registry["Normalization"] = Registry(
    "normalization", "input mean/std (--normalize)", lazy=(__package__, "normalization_"))

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Augmentation:
    """Base class of an augmentation (see the module's docstring)."""

    name = "augmentation"
    description = ""
    args: tuple[Arg, ...] = ()
    per_image = False  # also built by the per-image pipeline (timm transforms)
    label = ""

    @classmethod
    def device_augments(cls, data_config: dict, cfg: Any) -> tuple[Any, Any]:
        raise NotImplementedError


@AUGMENTATIONS.register
class TimmAugmentation(Augmentation):
    name, per_image, label = "timm", True, "crop/flip"
    description = "timm's random-resized crop + horizontal flip (seed 000)"

    @classmethod
    def device_augments(cls, data_config: dict, cfg: Any) -> tuple[Any, Any]:
        from .gpu_aug import DeviceAugment

        return (DeviceAugment.from_data_config(data_config, cfg.augment, cfg.crop_scale_min,
                                               cfg.hflip),
                DeviceAugment.from_data_config(data_config, train=False))


@AUGMENTATIONS.register
class CDTMAugmentation(Augmentation):
    name, label = "cdtm", "seed 002 augmentation"
    description = ("seed 002's resize, flips, colour, shift-scale-rotate, on the device "
                   "(pipeline cached)")

    @classmethod
    def device_augments(cls, data_config: dict, cfg: Any) -> tuple[Any, Any]:
        from .aug_cdtm import CDTMAugment

        return (CDTMAugment.from_data_config(data_config, cfg.augment),
                CDTMAugment.from_data_config(data_config, train=False))


class Normalization:
    """Base class: ``mean``/``std`` replace the backbone's own (None: keep them)."""

    name = "normalization"
    description = ""
    args: tuple[Arg, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @classmethod
    def apply(cls, data_config: dict) -> dict:
        if cls.mean is not None:
            data_config.update(mean=cls.mean, std=cls.std)
        return data_config


@NORMALIZATIONS.register
class ModelNormalization(Normalization):
    name, description = "model", "the backbone's own mean/std (timm's data config)"


@NORMALIZATIONS.register
class ClipNormalization(Normalization):
    name, mean, std = "clip", CLIP_MEAN, CLIP_STD
    description = "CLIP's mean/std for every backbone (seed 002's code)"
