"""The CPU lab preset: what the course notebooks train when a student opens them on a laptop.

Why a preset: the paper's settings (ResNet-50 at 224 px, 10-20 epochs) take hours on a CPU. A two-hour
lab needs a run of minutes that still shows the method: EfficientNet-Lite0 (its ImageNet weights
install offline) at 128 px for a few epochs on the real brain MRI data, or on the synthetic stand-in
when the real data is not there, and then every table and figure says so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import run_folder as rf
from ..data.catalogue import DatasetNotFoundError, get_spec
from ..evaluation.report import SYNTHETIC_NOTE  # one wording everywhere  # noqa: F401
from ..paths import in_repo

# RunConfig fields the lab preset sets; everything else keeps the paper's values.
LAB_PRESET: dict[str, object] = {"model": "efficientnet_lite0", "img_size": 128, "epochs": 3}



@dataclass(frozen=True)
class LabData:
    root: Path
    synthetic: bool

    def label(self) -> str:
        """The words every table and figure on these data carries."""
        return SYNTHETIC_NOTE if self.synthetic else "real data"


def standin_dir(dataset: str) -> Path:
    """Where the course keeps a dataset's stand-in: the smoke profile's place, so both share it."""
    return in_repo(Path("data") / "synthetic" / dataset)


def lab_data(dataset: str, data_dir: str | os.PathLike | None = None,
             fallback: bool = True) -> LabData:
    """The real data when the kit finds it (data/README.md), else the synthetic stand-in.

    An explicit `data_dir` that does not exist is an error, never a silent stand-in; so is a missing
    dataset with `fallback=False` (profiles: a reproduction must not train on made-up images).
    """
    spec = get_spec(dataset)
    try:
        root = spec.find(data_dir or None)
        return LabData(root, is_synthetic(root))  # a folder given may be a stand-in too
    except DatasetNotFoundError:
        if data_dir or not fallback:
            raise
    from ..data.standin import ensure_standin

    return LabData(spec.locate(ensure_standin(dataset, standin_dir(dataset))), True)


def is_synthetic(root: str | os.PathLike) -> bool:
    """Whether a data folder is one of the kit's stand-ins (it carries the generator's stamp)."""
    from ..evaluation.report import is_synthetic_data

    return is_synthetic_data(root)


def newest_run(runs_root: str | os.PathLike) -> Path:
    """The most recently finished run folder under `runs_root`, for notebooks opened without one."""
    finished = rf.finished_runs(runs_root)
    if not finished:
        raise FileNotFoundError(
            f"no finished run under {runs_root}: train one with notebook 03 (about 5 minutes with its "
            "defaults) or `bash run_all.sh`, or set run_dir to a run folder")
    return max(finished, key=lambda run: rf.path(run, rf.METRICS).stat().st_mtime)


def run_is_synthetic(run_dir: str | os.PathLike) -> bool:
    """Whether a run trained on a stand-in; False when its data cannot be found any more."""
    from ..config import RunConfig

    cfg = RunConfig.load(rf.path(run_dir, rf.CONFIG))
    try:
        root = get_spec(cfg.dataset).find(cfg.data_dir)
    except (FileNotFoundError, ValueError):
        return False
    return is_synthetic(root)


def lab_out(dataset: str, model: str, img_size: int, synthetic: bool) -> Path:
    """Where a lab run goes: the same folder notebook 03 uses with its defaults, so a later
    notebook reuses a run 03 already trained instead of training it again."""
    return in_repo(f"runs/lab/{dataset}__{model}__{img_size}px" + ("__synthetic" if synthetic else ""))


def lab_run_config(dataset: str = "brain_tumor_mri", data_dir: str | os.PathLike | None = None):
    """(RunConfig, LabData) of the lab preset's run on this dataset: notebook 03's defaults."""
    import dataclasses

    from ..config import RunConfig

    data = lab_data(dataset, data_dir)
    cfg = RunConfig(dataset=dataset, **LAB_PRESET)  # every other field: the paper's
    return dataclasses.replace(
        cfg, data_dir=str(data.root) if data.synthetic else (str(data_dir) if data_dir else None),
        out=str(lab_out(dataset, cfg.model, cfg.img_size, data.synthetic))), data
