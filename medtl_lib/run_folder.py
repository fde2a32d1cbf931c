"""The run folder: the one place that knows its file names and how each is read and written.

A run folder is the whole record of one training run (config, split, history, checkpoints,
predictions, metrics). Every other module goes through these names and readers, so a rename or a
format change happens here once, and a damaged file is always reported the same way: a
ValueError that names the file and says what to do.

Bottom layer: imports nothing of medtl_lib but ``utils``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .utils import atomic_write, atomic_write_json

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | Path

# ------------------------------------------------------------------ file names
CONFIG = "config.yaml"  #: the RunConfig the run was made with
METRICS = "metrics.json"  #: written last: its status marks the run complete
HISTORY = "history.csv"  #: one row per finished epoch
SPLIT = "split.csv"  #: the manifest: path, label, class_name, split, group, source_split
SPLIT_INFO = "split_info.json"  #: which grouping made the split
DUPLICATES = "duplicates.csv"  #: the leakage audit's groups
AUDIT_SUMMARY = "audit_summary.json"
BAD_FILES = "bad_files.csv"  #: unreadable images skipped
DATA_IDENTITY = "data_identity.json"  #: the data's digest and root
MODEL_SPEC = "model.json"  #: the architecture, to rebuild theta* without the config
BEST = "best.pt"  #: theta* of the last stage (restored at the end)
LAST = "last.pt"  #: the newest complete epoch, for resuming
LAST_PREVIOUS = "last.prev.pt"  #: ``last.pt`` one generation back
CHECKPOINT_RECORD = "checkpoints.json"  #: the SHA-256 of every checkpoint (training.checkpoints)
SPLITS = ("train", "val", "test")
#: a cut search folder (search_cut): one run folder per candidate, the table, the choice
SEARCH_TABLE = "search.csv"
SEARCH_CHOICE = "search.json"
#: a profile's claims (the direct launcher's seed-001 table)
CLAIMS = "claims.json"

STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
STATUS_INVALID = "invalid"

#: files that show a run folder holds training progress (at least one finished epoch)
PROGRESS_FILES = (METRICS, HISTORY, LAST, BEST)
#: what an attempt writes before its first epoch; an attempt that failed there is started over
ATTEMPT_FILES = (CONFIG, SPLIT, SPLIT_INFO, DUPLICATES, AUDIT_SUMMARY, MODEL_SPEC, BAD_FILES,
                 DATA_IDENTITY)
#: the stamps medtl_lib.data.synthetic writes into a stand-in data folder
SYNTHETIC_MARKS = ("SYNTHETIC.txt", ".medtl_synthetic.json")


def predictions_name(split: str) -> str:
    """``predictions_<split>.csv``: one row per image (path, label, pred, prob_<class>...)."""
    return f"predictions_{split}.csv"


def best_stage_name(stage: str) -> str:
    """theta* of a stage other than the last (a later stage may start from it)."""
    return f"best_{stage}.pt"


def path(run_dir: PathLike, name: str) -> Path:
    return Path(run_dir) / name


# ------------------------------------------------------------------ reading and writing
def _damaged(file: Path, what: str, exc: Exception) -> ValueError:
    why = " ".join(str(exc).split())[:160]
    return ValueError(f"{file} is not valid {what} ({why}): a write was cut short or the file "
                      "was edited; delete it and rerun the command that wrote it")


def read_json(file: PathLike) -> Any:
    """A JSON file of a run; a truncated or edited one is a ValueError naming it."""
    file = Path(file)
    text = file.read_text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _damaged(file, "JSON", exc) from None


def read_csv(file: PathLike, **kwargs: Any) -> pd.DataFrame:
    """A CSV file of a run; an unparsable one is a ValueError naming it."""
    file = Path(file)
    try:
        import pandas as pd  # imported on first read: a dry run's plan needs only the names

        return pd.read_csv(file, **kwargs)
    except FileNotFoundError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise _damaged(file, "CSV", exc) from None


def read_metrics(run_dir: PathLike) -> dict:
    return read_json(path(run_dir, METRICS))


def write_metrics(run_dir: PathLike, metrics: dict) -> Path:
    """Written last by a run: its ``status`` marks the run complete."""
    return atomic_write_json(path(run_dir, METRICS), metrics)


def read_config(run_dir: PathLike) -> dict[str, Any]:
    """The saved config as plain YAML, not RunConfig, so an older or newer config is still
    readable; {} when there is none."""
    import yaml

    file = path(run_dir, CONFIG)
    if not file.is_file():
        return {}
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise _damaged(file, "YAML", exc) from None
    return data if isinstance(data, dict) else {}


def write_config(run_dir: PathLike, cfg: Any) -> Path:
    """``cfg``: a RunConfig (anything with ``save(path)``)."""
    return cfg.save(path(run_dir, CONFIG))


def read_history(run_or_file: PathLike) -> pd.DataFrame:
    """history.csv (of a run folder, or the file itself) with its flag columns as real booleans
    (a resumed CSV may hold strings)."""
    file = Path(run_or_file)
    if file.is_dir():
        file = file / HISTORY
    df = read_csv(file)
    for col in ("save_best", "stop"):
        if col in df.columns and df[col].dtype != bool:
            df[col] = df[col].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    return df


def write_history(run_dir: PathLike, frame: pd.DataFrame) -> Path:
    return atomic_write(path(run_dir, HISTORY), lambda p: frame.to_csv(p, index=False))


def read_predictions(run_dir: PathLike, split: str = "test", **kwargs: Any) -> pd.DataFrame:
    return read_csv(path(run_dir, predictions_name(split)), **kwargs)


def write_predictions(run_dir: PathLike, split: str, frame: pd.DataFrame) -> Path:
    return atomic_write(path(run_dir, predictions_name(split)),
                        lambda p: frame.to_csv(p, index=False))


def read_split(run_dir: PathLike, **kwargs: Any) -> pd.DataFrame:
    return read_csv(path(run_dir, SPLIT), **kwargs)


def class_names(run_dir: PathLike) -> list[str]:
    """The classes a finished run recorded (the order of its probability columns)."""
    return read_metrics(run_dir)["class_names"]


# ------------------------------------------------------------------ status
def status(run_dir: PathLike) -> tuple[str, str]:
    """(status, why): 'complete', 'incomplete' (no metrics.json yet, or not marked complete) or
    'invalid' (metrics.json unreadable)."""
    file = path(run_dir, METRICS)
    if not file.is_file():
        return STATUS_INCOMPLETE, f"no {METRICS} (not started, running or interrupted)"
    try:
        metrics = read_json(file)
    except (OSError, ValueError) as e:
        return STATUS_INVALID, f"{METRICS} unreadable: {e}"
    state = metrics.get("status") if isinstance(metrics, dict) else None
    if state != STATUS_COMPLETE:
        return STATUS_INCOMPLETE, f"{METRICS} status is {state!r}"
    return STATUS_COMPLETE, ""


def is_complete(run_dir: PathLike) -> bool:
    return status(run_dir)[0] == STATUS_COMPLETE


def has_progress(run_dir: PathLike) -> bool:
    """At least one finished epoch (or a finished run) is in the folder."""
    run_dir = Path(run_dir)
    return (any((run_dir / f).exists() for f in PROGRESS_FILES)
            or any(run_dir.glob(best_stage_name("*"))))


def forget_attempt(run_dir: PathLike) -> None:
    """Remove what an attempt that stopped before its first epoch left (config, split, audit)."""
    for name in ATTEMPT_FILES:
        path(run_dir, name).unlink(missing_ok=True)


def remove_stale_writes(run_dir: PathLike) -> None:
    """A write cut short by a kill leaves ``.<name>.tmp``; never trusted, so removed."""
    for stale in Path(run_dir).glob(".*.tmp"):
        stale.unlink(missing_ok=True)


# ------------------------------------------------------------------ synthetic or real
def data_root(run_dir: PathLike, config: dict | None = None) -> str:
    """The data folder a run trained on: the root its data_identity.json recorded (what the kit
    found), else the config's data_dir; '' when neither says."""
    try:
        identity = read_json(path(run_dir, DATA_IDENTITY))
        if isinstance(identity, dict) and identity.get("root"):
            return str(identity["root"])
    except (OSError, ValueError):
        pass
    config = read_config(run_dir) if config is None else config
    return str(config.get("data_dir") or "")


def is_synthetic_data(root: PathLike | None,
                      is_standin: Callable[[Path], bool] | None = None) -> bool:
    """Whether a data folder is one of the kit's procedural stand-ins (stamped by the generator;
    copies keep the stamp). The stamp may sit a level or two above the class root a run
    records."""
    if not root:
        return False
    if is_standin is None:
        def is_standin(folder: Path) -> bool:
            return any((folder / mark).is_file() for mark in SYNTHETIC_MARKS)
    folder = Path(root)
    return any(is_standin(p) for p in [folder, *folder.parents][:5] if p != Path(p.anchor))


# ------------------------------------------------------------------ collecting runs
@dataclass
class Run:
    """What a report needs of one run folder; numbers only when ``status`` is complete."""

    path: Path
    status: str
    detail: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    config_error: str = ""

    @property
    def complete(self) -> bool:
        return self.status == STATUS_COMPLETE


def load(run_dir: PathLike) -> Run:
    """One run folder as a :class:`Run`; never raises for a damaged file (the reason goes to
    ``detail`` / ``config_error``), so a report shows it instead of stopping."""
    run_dir = Path(run_dir)
    state, detail = status(run_dir)
    config, config_error = {}, ""
    try:
        config = read_config(run_dir)
    except (OSError, ValueError) as e:
        config_error = f"{CONFIG} unreadable: {e}"
        detail = (detail + "; " if detail else "") + config_error
    metrics = None
    if state == STATUS_COMPLETE:
        try:
            metrics = read_metrics(run_dir)
        except (OSError, ValueError) as e:  # changed since status() read it
            state, detail = STATUS_INVALID, f"{METRICS} unreadable: {e}"
    return Run(run_dir, state, detail, config, metrics, config_error)


def is_run_folder(folder: Path) -> bool:
    """A run folder, not a cut search (``search_<method>__<run>``, a folder of candidate runs)."""
    if folder.name.startswith("search_") or (folder / SEARCH_TABLE).exists():
        return False
    return folder.is_dir() and ("__" in folder.name or any(
        (folder / f).exists() for f in (CONFIG, METRICS, HISTORY)))


def run_folders(runs_dir: PathLike) -> list[Path]:
    """The run folders of a profile folder (or the folder itself if it is one run), sorted."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no run folder or profile folder at {runs_dir}")
    if (runs_dir / METRICS).exists() or (runs_dir / CONFIG).exists():
        return [runs_dir]
    return sorted(p for p in runs_dir.iterdir() if not p.name.startswith(".") and is_run_folder(p))


def collect(runs_dir: PathLike) -> list[Run]:
    """Every run folder under ``runs_dir`` (finished or not): the one collector the reports
    build on."""
    return [load(f) for f in run_folders(runs_dir)]


def finished_runs(root: PathLike, pattern: str = "**") -> list[Path]:
    """Complete run folders anywhere below ``root`` (``pattern`` narrows the depth), sorted."""
    return sorted(m.parent for m in Path(root).glob(f"{pattern}/{METRICS}")
                  if is_complete(m.parent))


_SEED_PART = re.compile(r"^s(-?\d+)$")


def names_from_folder(run_dir: PathLike) -> dict[str, Any]:
    """What a profile folder name says when the config does not:
    ``<dataset>__<model>__<strategy>__s<seed>`` or the older ``<dataset>__<model>``."""
    name = Path(run_dir).name
    parts = name.split("__")
    if len(parts) >= 4 and _SEED_PART.match(parts[-1]):
        return {"dataset": parts[0], "model": "__".join(parts[1:-2]), "strategy": parts[-2],
                "seed": int(_SEED_PART.match(parts[-1]).group(1))}
    if len(parts) >= 2:
        return {"dataset": parts[0], "model": "__".join(parts[1:])}
    return {"dataset": "", "model": name}

