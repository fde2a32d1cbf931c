"""One training run end to end: config -> data -> split -> model -> trainer -> metrics, all
written into one run folder. Rerunning with the same config resumes or, when finished, returns
the saved result."""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import run_folder as rf
from .checkpoint_files import PREVIOUS, forget, load_checkpoint, recorded, save_checkpoint, sha256
from .config import RunConfig
from .data.augmentations import NORMALIZATIONS
from .data.cache import check_writable
from .data.catalogue import DatasetNotFoundError, get_spec
from .data.identity import (
    RunDataMismatchError,
    data_identity,
    describe_difference,
    save_identity,
    saved_identity,
)
from .data.loaders import run_loaders
from .data.prepare import prepare_data, small_classes
from .device import select_device, tune_cpu_allocator
from .distributed import init as init_dist
from .faults import point as fault_point
from .intervals import ci95
from .metrics import classification_metrics, predictions_frame
from .models.factory import create_model, save_model_spec
from .training.features import (
    FeatureClassifier,
    extract_features,
    feature_cache_decision,
    feature_loader,
)
from .training.losses import build_loss
from .training.strategies import get_strategy
from .training.trainer import Trainer, schedule_factory
from .utils import seed_everything


class RunConfigMismatchError(ValueError):
    """The run folder holds a run made with another configuration."""


PROGRESS_FILES = rf.PROGRESS_FILES  # the run folder's lifecycle: medtl_lib.run_folder
ATTEMPT_FILES = rf.ATTEMPT_FILES


@dataclass
class RunResult:
    out: Path
    metrics: dict
    history: pd.DataFrame
    skipped: bool = False  # True when the run was already complete

    def summary(self) -> str:
        m = self.metrics
        t = m["test"]
        return (f"{self.out}: test accuracy {t['accuracy']:.4f}, macro P/R/F1 "
                f"{t['precision_macro']:.4f}/{t['recall_macro']:.4f}/{t['f1_macro']:.4f}; "
                f"{m['epochs_run']} epoch(s), best epoch {m['best_epoch']}, "
                f"stopped early: {m['stopped_early']}")


def train_run(cfg: RunConfig, progress: bool | None = None, log=print) -> RunResult:
    """Train, evaluate and write everything into ``cfg.out``.

    ``progress=None`` shows progress bars unless ``MEDTL_PROGRESS`` is 'log' or 'off' (set by
    the papermill runner: bars would write one log line per update; the per-epoch lines stay).
    """
    if progress is None:
        progress = os.environ.get("MEDTL_PROGRESS", "bar") not in ("log", "off", "0")
    if not cfg.out:
        raise ValueError("a run needs an output folder: RunConfig(out=...) / --out DIR")
    cfg = cfg.resolved()
    out = Path(cfg.out)
    dist = init_dist(cfg.device)  # a world of one outside torchrun
    if not dist.is_main:  # one voice and one writer: rank 0
        log, progress = (lambda *a, **k: None), False
    with dist.main_first():  # rank 0 checks the folder and writes the config; the others read
        done = _open_run(cfg, out, log) if dist.is_main else _load_complete(out, log)
    if dist.broadcast_object(done is not None):
        return done if done is not None else _load_complete(out, log)
    t_start = time.perf_counter()
    seed_everything(cfg.seed)

    with dist.main_first():  # rank 0 splits (and audits); the others read its split
        index = prepare_data(cfg, out)
    dev = select_device(cfg.device, cfg.amp)
    if dist.enabled and dev.device.type == "cuda":
        dev = dataclasses.replace(dev, device=torch.device("cuda", dist.local_rank))
    if dev.device.type == "cpu" and tune_cpu_allocator():
        log("CPU: glibc allocator set to keep freed buffers (faster steps, peak memory kept)")
    strategy = get_strategy(cfg.strategy, cfg.strategy_args)
    model, info = create_model(cfg.model, len(index.class_names), weights=cfg.weights,
                               img_size=cfg.img_size, pool=cfg.pool, head=cfg.head,
                               head_args=cfg.head_args, surgery=strategy.surgery())
    NORMALIZATIONS.get(cfg.normalize).apply(info.data_config)  # e.g. clip: seed 002's code
    log(f"data: {index.root} ({len(index.frame)} images, classes {index.class_names}); "
        f"split {index.frame['split'].value_counts().to_dict()}")
    log(f"model: {info.timm_name}, weights: {info.weights_source}; device: {dev.description}")

    splits = {s: index.frame[index.frame["split"] == s] for s in ("train", "val", "test")}
    for s, f in splits.items():
        if f.empty:
            raise ValueError(f"the {s} split is empty; the dataset is too small for the fractions "
                             f"val_frac={cfg.val_frac}, test_frac={cfg.test_frac}")
    with dist.main_first():  # rank 0 decodes the cache once; the others open it
        loaders = run_loaders(cfg, index.root, index.frame, splits, info.data_config, dev.device,
                              progress, (dist.rank, dist.world_size) if dist.enabled else None)
    log(f"input: {loaders.description}" + (f"; cache file {loaders.cache_path}"
                                            if loaders.cache_path else "")
        + (f"; {dist.world_size} processes, each training on its shard" if dist.enabled else ""))
    if dist.is_main:
        save_model_spec(info.spec, out)

    inputs = StageInputsFactory(model, loaders, splits, cfg, dev, progress, log)
    counts = splits["train"]["label"].astype(int).value_counts()
    trainer = Trainer(
        model=model, strategy=strategy, device=dev, lr=cfg.lr, epochs=cfg.epochs,
        optimizer_name=cfg.optimizer, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
        schedules=schedule_factory(cfg.schedule, cfg.schedule_args, threshold=cfg.threshold,
                                   patience=cfg.patience, stop_patience=cfg.stop_patience,
                                   factor=cfg.factor,
                                   dual_monitor_readings=cfg.dual_monitor_readings),
        select_by=cfg.select_by, early_stop_patience=cfg.early_stop_patience,
        criterion=build_loss(cfg.loss,
                             [int(counts.get(i, 0)) for i in range(len(index.class_names))]),
        ckpt_dir=out, progress=progress, callbacks=[lambda row: log(format_epoch(row))],
        dist=dist, select_ties=cfg.select_ties)
    log(f"{strategy.describe(model, cfg.epochs)}; compute: {trainer.describe_compute()}")
    fit = trainer.fit(seed=cfg.seed, inputs=inputs)
    if fit.resumed_from:
        log(f"resumed after epoch {fit.resumed_from}")
    if fit.best_epoch is None:
        log("warning: no epoch improved the monitored metric; evaluating the last weights")
    final_model, eval_loaders = inputs.for_evaluation(trainer.stages[-1])
    use_features = inputs.features_computed  # in any stage

    metrics: dict = {}
    if not dist.is_main:  # the evaluation is rank 0's (whole splits): nothing left to do here
        dist.barrier()
        return RunResult(out, {}, fit.history)
    for s in ("train", "val", "test"):
        ev = trainer.evaluate(eval_loaders[s], desc=f"evaluate {s}", model=final_model)
        metrics[s] = classification_metrics(ev.labels, ev.probs, index.class_names)
        if s == "test":  # 95% intervals (seeded bootstrap, Wilson, DeLong): evaluation.ci
            metrics[s]["ci95"] = ci95(ev.labels, ev.probs)
        preds = predictions_frame(splits[s]["path"].tolist(), ev.labels, ev.probs, index.class_names)
        rf.write_predictions(out, s, preds)
        fault_point("eval.split")
    hist = fit.history
    best_row = hist[hist["epoch"] == fit.best_epoch]
    metrics.update(
        epochs_run=fit.epochs_run,
        stopped_early=fit.stopped_early,
        best_epoch=fit.best_epoch,
        strategy=cfg.strategy, strategy_args=cfg.strategy_args, stages=fit.stages,
        train_acc_at_best_epoch=float(best_row["train_acc"].iloc[0]) if len(best_row) else None,
        class_names=index.class_names,
        model=cfg.model, timm_name=info.timm_name, weights_source=info.weights_source,
        device=dev.description, torch=torch.__version__,
        bad_files=int(len(index.bad_files)),
        group_by=cfg.group_by,
        small_classes=small_classes(index.frame, index.class_names),
        pipeline=cfg.pipeline, input=loaders.description, features_cached=use_features,
        compute=trainer.describe_compute(), world_size=dist.world_size,
        seconds=round(time.perf_counter() - t_start, 1),
        status="complete",
    )
    best = out / rf.BEST
    state = load_checkpoint(best) if best.is_file() else {
        "model": {k: v.cpu() for k, v in trainer.model.state_dict().items()}, "epoch": None}
    state.update(timm_name=info.timm_name, class_names=index.class_names, img_size=cfg.img_size,
                 data_config={k: list(v) if isinstance(v, tuple) else v
                              for k, v in info.data_config.items()})
    save_checkpoint(best, state)
    fault_point("run.complete")
    rf.write_metrics(out, metrics)  # written last: it marks the run complete
    forget(out, rf.LAST, PREVIOUS[rf.LAST])  # optimizer state is only needed to resume
    dist.barrier()  # the others wait for the finished folder before they exit
    result = RunResult(out, metrics, hist)
    log(result.summary())
    return result


def _open_run(cfg: RunConfig, out: Path, log) -> RunResult | None:
    """Check the folder against this config and its data; the finished result when there is
    one, else None after the config is written (rank 0's part of starting a run)."""
    check_writable(out, "the run folder", "or give another --out folder")
    _check_same_run(cfg, out, log)
    done = _load_complete(out, log)
    try:
        root = get_spec(cfg.dataset).find(cfg.data_dir)
    except DatasetNotFoundError:
        if done is None:
            raise
        log(f"{out}: already complete (its data are not at hand here, so not compared).")
        return done
    _check_same_data(cfg, out, root, log)
    if done is not None:
        log(f"{out}: already complete, nothing to do (delete the folder to run again).")
        return done
    rf.remove_stale_writes(out)
    rf.write_config(out, cfg)
    return None


def format_epoch(row: dict) -> str:
    """One readable line per epoch (also what a papermill log keeps)."""
    factor = row.get("lr_factor", 1.0)
    flags = (" saved theta*" if row["save_best"] else "") + (
        f" LR x{factor}" if factor != 1.0 else "") + (" STOP" if row["stop"] else "")
    sched = " ".join(f"{k}={row[k]}" for k in ("c", "s", "bad", "cuts") if k in row)
    sched = (f"{row['phase']} " if "phase" in row else "") + sched
    return (f"epoch {row['epoch']}: [{row['stage']}] train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} "
            f"acc {row['val_acc']:.4f} | lr {row['lr']:.2e} | {sched.strip()}{flags} | "
            f"{row['trainable_params']:,} trainable | {row['seconds']:.0f}s")


class StageInputsFactory:
    """What each stage runs on: images, or stored backbone features when the stage keeps the
    backbone frozen in eval mode and inputs are fixed (see training.features). Features are
    computed once, the first time a stage may use them, and shared by every such stage."""

    def __init__(self, model, loaders, splits, cfg: RunConfig, dev, progress: bool, log) -> None:
        self.model, self.loaders, self.splits = model, loaders, splits
        self.cfg, self.dev, self.progress, self.log = cfg, dev, progress, log
        self._features: dict | None = None
        self._logged: set[str] = set()

    @property
    def features_computed(self) -> bool:
        return self._features is not None

    def _use_features(self, stage) -> bool:
        use, why = feature_cache_decision(stage, self.cfg.augment, self.cfg.cache_features)
        if stage.frozen_backbone and stage.name not in self._logged:
            self._logged.add(stage.name)
            self.log(f"stage '{stage.name}': {why}")
        return use

    def _feature_loaders(self) -> dict:
        if self._features is None:
            t0 = time.perf_counter()
            feats = {s: extract_features(self.model.backbone, self.loaders.evals[s], self.dev,
                                         f"features {s}", self.progress) for s in self.splits}
            n = sum(len(f) for f in self.splits.values())
            self.log(f"features of {n} images computed once in {time.perf_counter() - t0:.1f} s")
            bs = self.cfg.batch_size
            self._features = {"train": feature_loader(*feats["train"], bs, True, self.cfg.seed),
                              **{f"eval_{s}": feature_loader(*feats[s], bs, False)
                                 for s in self.splits}}
        return self._features

    def __call__(self, stage):
        if self._use_features(stage):
            f = self._feature_loaders()
            return FeatureClassifier(self.model), f["train"], f["eval_val"]
        return self.model, self.loaders.train, self.loaders.evals["val"]

    def for_evaluation(self, stage):
        """The final stage's model and its eval loaders for every split."""
        if self._use_features(stage):
            f = self._feature_loaders()
            return FeatureClassifier(self.model), {s: f[f"eval_{s}"] for s in self.splits}
        return self.model, self.loaders.evals


def _check_weights(out: Path, log=print) -> None:
    """A finished run's theta*: its metrics stand on their own files, but damaged weights are
    said, so no one builds on them unknowingly."""
    best = out / rf.BEST
    known = recorded(out).get(rf.BEST)
    if not best.is_file():
        log(f"warning: {best} is missing: the metrics stand, the trained weights are gone "
            "(delete the folder and rerun the command to train them again)")
    elif known is not None and sha256(best) not in known:
        log(f"warning: {best} is damaged (its SHA-256 is not the one recorded): the metrics "
            "stand, the trained weights do not (delete the folder and rerun to train them again)")


has_progress = rf.has_progress


def _start_over(out: Path, why: str, log) -> None:
    """An earlier attempt failed before its first epoch: nothing of value is in the folder, so
    its leftovers (config, split, audit) are removed and the new command starts afresh."""
    log(f"{out}: an earlier attempt ({why}) stopped before its first epoch; starting over")
    rf.forget_attempt(out)


def _check_same_run(cfg: RunConfig, out: Path, log=print) -> None:
    saved = out / rf.CONFIG
    if not saved.is_file():
        return
    try:
        old = RunConfig.load(saved).fingerprint()
    except (ValueError, TypeError, OSError, yaml.YAMLError) as exc:
        if not has_progress(out):
            return _start_over(out, f"unreadable {rf.CONFIG}: {exc}", log)
        raise RunConfigMismatchError(f"{saved} cannot be read ({exc}); the folder holds "
                                     "training progress: repair the file or use a new --out "
                                     "folder") from None
    new = cfg.fingerprint()
    diff = {k: (old.get(k), new.get(k)) for k in new if old.get(k) != new.get(k)}
    if not diff:
        return
    detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
    if not has_progress(out):
        return _start_over(out, f"with {detail}", log)
    raise RunConfigMismatchError(
        f"{out} holds a run with another configuration ({detail}). Use a new --out folder, "
        "or delete this one to start over.")


def _check_same_data(cfg: RunConfig, out: Path, root: Path, log=print) -> None:
    """The data's identity is part of the run's: refuse other data where training progress is,
    start over where none is, and record it the first time."""
    new = data_identity(get_spec(cfg.dataset), root)
    old = saved_identity(out)
    if old is not None and old.get("digest") != new["digest"]:
        if has_progress(out):
            raise RunDataMismatchError(
                f"{out} was trained on other data ({describe_difference(old, new)}). Use a new "
                "--out folder for these data, or point --data-dir at the data it was trained on.")
        _start_over(out, "on other data", log)
    if old is None or old.get("digest") != new["digest"]:
        save_identity(out, new)
    elif old.get("root") != new["root"]:
        log(f"{out}: same data as before, now at {root}")


def _load_complete(out: Path, log=print) -> RunResult | None:
    """The finished run's result, None when the folder holds none; a damaged metrics file is a
    ValueError that names it (run_folder.read_json)."""
    if not rf.path(out, rf.METRICS).is_file():
        return None
    metrics = rf.read_metrics(out)
    if metrics.get("status") != rf.STATUS_COMPLETE:
        return None
    _check_weights(out, log)
    hist = rf.read_history(out) if rf.path(out, rf.HISTORY).is_file() else pd.DataFrame()
    return RunResult(out, metrics, hist, skipped=True)
