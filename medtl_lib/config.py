"""RunConfig: every knob of one training run, named once, validated on creation.

The CLI flags, the papermill ``parameters`` cell and the YAML profiles all map onto these
fields, so a run is fully described by the config saved beside its results.

Component names (strategy, schedule, select_by, head, pool, loss, optimizer, augmentation,
normalize, dataset) and their arguments are checked against their registries
(:mod:`medtl_lib.registry`), which live in the modules of their kinds: this module lists none of
them, so a new component (or a plugin's) is valid here without an edit.
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


def _f(default: Any, help: str, kind: str | None = None, type: type | None = None,
       flag: str | None = "") -> Any:
    """A RunConfig field with its documentation, written once: ``help`` (the CLI's --help, the
    notebooks' parameter docs), ``kind`` (the registry whose components it names, whose choices
    ``medtl components KIND`` lists), ``type`` (the CLI's type when the default is None) and
    ``flag`` (None: not a plain --flag of the train command)."""
    meta = {"help": help, "kind": kind, "type": type, "flag": flag}
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def field_help() -> dict[str, str]:
    """Field name -> its help text (from the field's metadata)."""
    return {f.name: f.metadata.get("help", "") for f in fields(RunConfig)}


@dataclass(frozen=True)
class RunConfig:
    """Defaults are the paper's (Section IV.A.2) unless a comment says otherwise."""

    dataset: str = _f("brain_tumor_mri", "a dataset of the catalogue (`medtl components "
                      "dataset`), or folder", kind="dataset")
    data_dir: str | None = _f(None, "dataset folder (default: search $MEDTL_DATA_DIR, ./data, "
                              "Kaggle)")
    model: str = _f("resnet", "preset (resnet, densenet, convnext, vit, vit_star, "
                    "efficientnet_lite0) or any timm model name")
    weights: str = _f("auto", "auto | none | PATH (a state-dict file)")
    strategy: str = _f("full", "fine-tuning strategy; full is the paper's", kind="strategy")
    strategy_args: dict = _f({}, "the strategy's own knobs, e.g. {lp_epochs: 3}", flag=None)
    pool: str = _f("avg", "how features leave the backbone: avg (seed 000) | token (a ViT's class "
                   "token) | flatten | tokens (for cdtm) | avg_raw", kind="pool")
    head: str = _f("linear", "classifier head: linear | cdtm (seed 002; needs --pool tokens)",
                   kind="head")
    head_args: dict = _f({}, "the head's own knobs, e.g. {centers: 300} for cdtm", flag=None)
    img_size: int = _f(224, "input size in pixels")
    epochs: int | None = _f(None, "default: the dataset's (10 brain MRI, 20 otherwise); a staged "
                            "strategy splits them", type=int)
    batch_size: int = _f(32, "images per batch")
    lr: float | None = _f(None, "default: the preset's (1e-3; ViT* 1e-5)", type=float)
    optimizer: str = _f("adamax", "adamax (seed 000) | adam | adamw | sgd", kind="optimizer")
    momentum: float = _f(0.9, "sgd momentum")
    weight_decay: float = _f(0.0, "weight decay (coupled L2, decoupled for adamw); Adamax "
                             "default 0")
    schedule: str = _f("dual_monitor", "LR schedule (dual_monitor: seed 000's)", kind="schedule")
    schedule_args: dict = _f({}, "the schedule's own knobs", flag=None)
    select_by: str = _f("dual_monitor", "theta*, which epoch's weights are kept: dual_monitor | "
                        "val_loss | val_acc | val_macro_acc | val_auroc", kind="select_by")
    early_stop_patience: int | None = _f(None, "end a stage after this many epochs without a "
                                         "better select_by value", type=int)
    select_ties: str = _f("first", "of equally good epochs keep the first | last (seed 002's "
                          "code: acc >= best)")
    loss: str = _f("ce", "ce | weighted_ce (inverse class frequency / its minimum)", kind="loss")
    threshold: float = _f(0.9, "T of the dual monitor")
    patience: int = _f(2, "p of the dual monitor")
    stop_patience: int = _f(2, "P of the dual monitor")
    factor: float = _f(0.5, "phi of the dual monitor")
    dual_monitor_readings: dict = _f({}, "{} the kit's; e.g. {best_train_acc: phase_a}, the "
                                     "authors' code", flag=None)
    split: str = _f("stratified", "stratified (0.8/0.1/0.1) | predefined (the dataset's test "
                    "folder) | folds (the paper's own k-fold split, e.g. seed 002's BreaKHis)")
    val_frac: float = _f(0.1, "validation fraction")
    test_frac: float = _f(0.1, "test fraction")
    split_csv: str | None = _f(None, "reuse the split of an earlier run (its split file)")
    group_by: str = _f("duplicates", "keep groups in one split: duplicates | patient (BreaKHis "
                       "patients + duplicates) | none (image-level, leaks)")
    crop_scale_min: float = _f(0.5, "random-resized-crop area lower bound (timm default 0.08)")
    hflip: float = _f(0.5, "horizontal flip probability")
    augment: bool = _f(True, "False: training sees the eval transform (fixed inputs; see "
                       "cache_features)", flag=None)
    augmentation: str = _f("timm", "timm (random-resized crop + flip) | cdtm (seed 002's flips, "
                           "colour, shift-scale-rotate, on the device; --pipeline cached)",
                           kind="augmentation")
    normalize: str = _f("model", "input mean/std: model (the backbone's) | clip (seed 002's code)",
                        kind="normalization")
    pipeline: str = _f("cached", "cached (decode once into $MEDTL_CACHE_DIR, augment batches on "
                       "the device) | per_image (the authors': PIL + timm transforms per image "
                       "per epoch)")
    cache_features: bool = _f(True, "frozen backbone and augment=False: compute features once, "
                              "train the head on them", flag=None)
    seed: int = _f(42, "random seed")
    num_workers: int | None = _f(None, "loader processes (default: 0 on CPU, min(8, cores) on "
                                 "CUDA)", type=int)
    device: str = _f("auto", "auto | cpu | cuda")
    amp: str = _f("auto", "auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16")
    strict: bool = _f(False, "unreadable images: False skips and lists them, True stops the run",
                      flag=None)
    allow_small_classes: bool = _f(False, "train although a class is missing from a split "
                                   "(recorded)", flag=None)
    out: str | None = _f(None, "run folder", flag=None)

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
        from .data.augmentations import AUGMENTATIONS, NORMALIZATIONS

        NORMALIZATIONS.check(self.normalize, "normalize")
        AUGMENTATIONS.check(self.augmentation, "augmentation")
        _check(AUGMENTATIONS.get(self.augmentation).per_image or self.pipeline == "cached",
               f"augmentation={self.augmentation!r} runs on the device: use pipeline='cached'")

    def _check_components(self) -> None:
        """Strategy, schedule, head, pool, optimizer, loss and selection: names and arguments
        from their registries, checked before any work starts."""
        from .models.heads import HEADS
        from .models.pools import POOLS
        from .training.losses import LOSSES
        from .training.optim import OPTIMIZERS
        from .training.schedules import SCHEDULES, SELECT_BY
        from .training.strategies import STRATEGIES

        _check(isinstance(self.strategy_args, dict), "strategy_args must be a mapping")
        _check(isinstance(self.head_args, dict), "head_args must be a mapping")
        _check(isinstance(self.schedule_args, dict), "schedule_args must be a mapping")
        # typed once here ("3" from the CLI becomes 3); resolved() fills in the defaults of
        # strategy and schedule (a head's defaults stay its own: the model spec keeps what was given)
        for name, registry, attr in ((self.strategy, STRATEGIES, "strategy_args"),
                                     (self.schedule, SCHEDULES, "schedule_args"),
                                     (self.head, HEADS, "head_args")):
            given = getattr(self, attr)
            typed = registry.parse_args(name, given)
            object.__setattr__(self, attr, {k: typed[k] for k in given})
        OPTIMIZERS.check(self.optimizer, "optimizer")
        LOSSES.check(self.loss, "loss")
        SELECT_BY.check(self.select_by, "select_by")
        POOLS.check(self.pool, "pool")
        _check(SELECT_BY.get(self.select_by).mode is not None or self.schedule == "dual_monitor",
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

    def resolved(self) -> "RunConfig":
        """Fill the dataset/model-dependent defaults (epochs, lr) so the saved config is explicit."""
        from .data.catalogue import get_spec
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
