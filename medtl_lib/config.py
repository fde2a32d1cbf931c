"""RunConfig: every knob of one training run, named once, validated on creation.

The CLI flags, the papermill ``parameters`` cell and the YAML profiles all map onto these
fields, so a run is fully described by the ``config.yaml`` saved beside its results.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .utils import atomic_write_text

SPLIT_MODES = ("stratified", "predefined", "folds")
GROUPINGS = ("duplicates", "patient", "none")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "off", "bf16", "fp16")
PIPELINES = ("cached", "per_image")
AUGMENTATIONS = ("timm", "cdtm")  # timm's random-resized crop + flip | seed 002's (data.aug_cdtm)
POOLS = ("avg", "token", "flatten", "tokens", "avg_raw")  # how features leave the backbone
NORMALIZATIONS = ("model", "clip")  # input mean/std: the backbone's own | CLIP's (seed 002's code)


@dataclass(frozen=True)
class RunConfig:
    """Defaults are the paper's (Section IV.A.2) unless a comment says otherwise."""

    dataset: str = "brain_tumor_mri"
    data_dir: str | None = None  # None: $MEDTL_DATA_DIR/<dataset>, ./data/<dataset>, Kaggle inputs
    model: str = "resnet"  # preset (resnet, densenet, convnext, vit, vit_star, efficientnet_lite0) or timm name
    weights: str = "auto"  # auto | none | path to a state-dict file
    strategy: str = "full"  # a registered strategy (`medtl strategies`); full is the paper's
    strategy_args: dict = field(default_factory=dict)  # the strategy's own knobs, e.g. {lp_epochs: 3}
    pool: str = "avg"  # avg (seed 000) | token (a ViT's class token) | flatten
    head: str = "linear"
    head_args: dict = field(default_factory=dict)  # the head's own knobs, e.g. {centers: 300} for cdtm
    img_size: int = 224
    epochs: int | None = None  # None: the dataset's (10 brain MRI, 20 otherwise)
    batch_size: int = 32
    lr: float | None = None  # None: the preset's (1e-3; ViT* 1e-5)
    optimizer: str = "adamax"  # adamax (seed 000) | adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # Adamax default
    schedule: str = "dual_monitor"  # dual_monitor (seed 000) | plateau | cosine | warmup_cosine | exp | none
    schedule_args: dict = field(default_factory=dict)  # the schedule's own knobs (`medtl strategies`)
    select_by: str = "dual_monitor"  # which epoch's weights are kept: dual_monitor | val_loss | val_acc | val_macro_acc | val_auroc
    early_stop_patience: int | None = None  # stop a stage after this many epochs without a better select_by value
    select_ties: str = "first"  # of equally good epochs keep the first | last (seed 002's code: acc >= best)
    loss: str = "ce"  # ce | weighted_ce (inverse class frequency / its minimum)
    threshold: float = 0.9  # T
    patience: int = 2  # p
    stop_patience: int = 2  # P
    factor: float = 0.5  # phi
    dual_monitor_readings: dict = field(default_factory=dict)  # {} the kit's; e.g. {best_train_acc: phase_a}, the authors' code
    split: str = "stratified"  # stratified 0.8/0.1/0.1 | predefined (the dataset's own test folder)
    val_frac: float = 0.1
    test_frac: float = 0.1
    split_csv: str | None = None  # reuse a saved split manifest
    group_by: str = "duplicates"  # keep groups in one split: duplicates | patient (+duplicates) | none
    crop_scale_min: float = 0.5  # RandomResizedCrop scale lower bound (timm default is 0.08)
    hflip: float = 0.5
    augment: bool = True  # False: training sees the eval transform (fixed inputs; see cache_features)
    augmentation: str = "timm"  # timm (random-resized crop + flip) | cdtm (seed 002's; cached pipeline)
    normalize: str = "model"  # input mean/std: model (the backbone's) | clip (seed 002's code, all backbones)
    pipeline: str = "cached"  # cached (decode once, augment batches on the device) | per_image (PIL + timm per image, the authors')
    cache_features: bool = True  # frozen backbone and augment=False: compute features once, train the head on them
    seed: int = 42
    num_workers: int | None = None  # None: 0 on CPU, min(8, cores) on CUDA
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    strict: bool = False  # unreadable images: False skips and lists them, True stops the run
    allow_small_classes: bool = False  # train although a class is missing from a split (recorded)
    out: str | None = None  # run folder

    def __post_init__(self) -> None:
        _check(self.img_size >= 16 and self.img_size <= 1024,
               f"img_size must be in [16, 1024], got {self.img_size}")
        _check(self.batch_size >= 1 and self.batch_size <= 4096,
               f"batch_size must be in [1, 4096], got {self.batch_size}")
        _check(self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(self.lr is None or self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(0 < self.threshold <= 1, f"threshold T must be in (0, 1], got {self.threshold}")
        _check(self.patience >= 1, f"patience p must be >= 1, got {self.patience}")
        _check(self.stop_patience >= 1, f"stop_patience P must be >= 1, got {self.stop_patience}")
        _check(0 < self.factor < 1, f"factor phi must be in (0, 1), got {self.factor}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 < self.crop_scale_min <= 1, f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}")
        _check(0 <= self.hflip <= 1, f"hflip must be in [0, 1], got {self.hflip}")
        _check(self.num_workers is None or self.num_workers >= 0,
               f"num_workers must be >= 0, got {self.num_workers}")
        self._check_components()
        _check(self.split in SPLIT_MODES, f"split must be one of {SPLIT_MODES}, got {self.split!r}")
        _check(self.group_by in GROUPINGS,
               f"group_by must be one of {GROUPINGS}, got {self.group_by!r}")
        _check(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        _check(self.pipeline in PIPELINES,
               f"pipeline must be one of {PIPELINES}, got {self.pipeline!r}")
        _check(self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        _check(self.normalize in NORMALIZATIONS,
               f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        _check(self.augmentation in AUGMENTATIONS,
               f"augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        _check(self.augmentation == "timm" or self.pipeline == "cached",
               f"augmentation={self.augmentation!r} runs on the device: use pipeline='cached'")

    def _check_components(self) -> None:
        """Strategy, schedule, optimizer, loss and selection: names and arguments from their
        registries, checked before any work starts."""
        from .training.losses import LOSSES
        from .training.optim import OPTIMIZERS
        from .training.schedules import SCHEDULES, SELECT_BY
        from .training.strategies import STRATEGIES

        _check(isinstance(self.strategy_args, dict), "strategy_args must be a mapping")
        _check(isinstance(self.head_args, dict), "head_args must be a mapping")
        object.__setattr__(self, "head_args", {  # "300" from the CLI becomes 300
            k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in self.head_args.items()})
        _check(isinstance(self.schedule_args, dict), "schedule_args must be a mapping")
        # typed once here ("3" from the CLI becomes 3); resolved() fills in the defaults
        typed = STRATEGIES.parse_args(self.strategy, self.strategy_args)
        object.__setattr__(self, "strategy_args", {k: typed[k] for k in self.strategy_args})
        typed = SCHEDULES.parse_args(self.schedule, self.schedule_args)
        object.__setattr__(self, "schedule_args", {k: typed[k] for k in self.schedule_args})
        _check(self.optimizer in OPTIMIZERS,
               f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        _check(self.loss in LOSSES, f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        _check(self.select_by in SELECT_BY,
               f"select_by must be one of {list(SELECT_BY)}, got {self.select_by!r}")
        _check(self.select_by != "dual_monitor" or self.schedule == "dual_monitor",
               f"select_by='dual_monitor' needs schedule='dual_monitor' (the monitor decides "
               f"theta*); with schedule={self.schedule!r} use select_by=val_loss, val_acc, "
               "val_macro_acc or val_auroc")
        from .training.dual_monitor import Readings
        from .training.schedules import SELECT_TIES

        _check(self.select_ties in SELECT_TIES,
               f"select_ties must be one of {SELECT_TIES}, got {self.select_ties!r}")
        _check(self.select_ties == "first" or self.select_by != "dual_monitor",
               "select_ties applies to select_by=val_loss, val_acc, val_macro_acc or val_auroc; "
               "with select_by='dual_monitor' the monitor's rules decide theta*")
        _check(isinstance(self.dual_monitor_readings, dict),
               "dual_monitor_readings must be a mapping, e.g. {best_train_acc: phase_a}")
        try:
            Readings(**self.dual_monitor_readings)
        except (TypeError, ValueError) as exc:
            from dataclasses import fields as dc_fields

            raise ValueError(f"dual_monitor_readings: {exc} (readings: "
                             f"{[f.name for f in dc_fields(Readings)]})") from None
        _check(not self.dual_monitor_readings or self.schedule == "dual_monitor",
               "dual_monitor_readings applies to schedule='dual_monitor'")
        _check(self.early_stop_patience is None or self.early_stop_patience >= 1,
               f"early_stop_patience must be >= 1, got {self.early_stop_patience}")
        _check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        _check(self.pool in POOLS, f"pool must be one of {POOLS}, got {self.pool!r}")

    def resolved(self) -> "RunConfig":
        """Fill the dataset/model-dependent defaults (epochs, lr) so the saved config is explicit."""
        from .data.registry import get_spec
        from .models.factory import resolve_model_name
        from .training.schedules import SCHEDULES
        from .training.strategies import STRATEGIES

        spec = get_spec(self.dataset)
        _, preset = resolve_model_name(self.model)
        return dataclasses.replace(
            self,
            epochs=self.epochs if self.epochs is not None else spec.default_epochs,
            lr=self.lr if self.lr is not None else (preset.lr if preset else 1e-3),
            strategy_args=STRATEGIES.parse_args(self.strategy, self.strategy_args),
            schedule_args=SCHEDULES.parse_args(self.schedule, self.schedule_args),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            import difflib

            hints = [f"{u} (did you mean {difflib.get_close_matches(u, names, n=1)[0]}?)"
                     if difflib.get_close_matches(u, names, n=1) else u for u in unknown]
            raise ValueError(f"unknown RunConfig field(s): {', '.join(hints)}")
        return cls(**d)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a run folder to be resumed (everything but where and how fast).

        ``pipeline`` stays in: the cached path resamples crops on the device, so its pixels (not
        their distribution) differ from the per-image path's. ``cache_features`` goes: with it the
        head sees the same numbers, only computed once."""
        d = self.resolved().to_dict()
        for k in ("out", "num_workers", "data_dir", "cache_features", "allow_small_classes"):
            d.pop(k)
        return d


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)
