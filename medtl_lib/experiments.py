"""Run a profile (a matrix of datasets x models) through the notebooks with papermill.

``bash run_all.sh [PROFILE|FILE.yaml] [--only PATTERN] [--dry-run]`` and
``medtl_lib.experiments.run_profile(...)`` are the same thing. Each training run gets its own
folder ``runs/<profile>/<dataset>__<model>/`` holding the executed ``03_train.ipynb`` and
``04_evaluate.ipynb`` next to the run's files; the profile folder gets the course notebooks and
``05_results`` with its HTML export.

A run whose ``metrics.json`` says complete is skipped; an interrupted one is executed again and
resumes from its last complete epoch; a failing one is reported and the others go on.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import time
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from .config import RunConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PROFILES = REPO / "profiles"
KERNEL = "python3"  # ipykernel's own kernel: present wherever ipykernel is installed
RUN_FIELDS = {f.name for f in fields(RunConfig)}


@dataclass
class Profile:
    name: str
    runs: list[RunConfig]
    out_root: Path
    description: str = ""
    synthetic: dict[str, Any] | None = None  # stand-in settings when the profile is offline
    data_dirs: dict[str, str] = field(default_factory=dict)
    walkthrough: str = "recorded"  # notebook 02 replays the first run, or a simulated one
    leakage: dict[str, Any] | None = None  # parameters of notebook 06, when the profile has it

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))


def run_name(cfg: RunConfig) -> str:
    return f"{cfg.dataset}__{cfg.model}"


def load_profile(name_or_path: str | os.PathLike, runs_dir: str | os.PathLike = "runs",
                 data_root: str | os.PathLike | None = None) -> Profile:
    """A profile by name (``profiles/<name>.yaml``) or path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES.glob("*.yaml"))
        raise FileNotFoundError(f"profile '{name_or_path}' not found (known: {', '.join(known)}; "
                                "or give a path to a YAML file)")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - {"name", "description", "synthetic", "datasets", "models", "defaults",
                           "overrides", "data_dirs", "walkthrough", "leakage"}
    if unknown:
        raise ValueError(f"{path}: unknown profile key(s) {sorted(unknown)}")
    name = spec.get("name") or path.stem
    out_root = (Path(runs_dir) / name).resolve()
    data_root = Path(data_root).resolve() if data_root else (REPO / "data").resolve()
    synthetic = spec.get("synthetic")
    data_dirs = {k: str(Path(v).expanduser().resolve()) for k, v in (spec.get("data_dirs") or {}).items()}
    if synthetic:
        for ds in spec["datasets"]:
            data_dirs.setdefault(ds, str(data_root / "synthetic" / ds))
    defaults = spec.get("defaults") or {}
    overrides = spec.get("overrides") or {}
    runs = []
    for ds in spec.get("datasets") or []:
        for model in spec.get("models") or []:
            d: dict[str, Any] = {**defaults, **overrides.get(ds, {}), **overrides.get(model, {}),
                                 **overrides.get(f"{ds}__{model}", {}), "dataset": ds, "model": model}
            if ds in data_dirs:
                d["data_dir"] = data_dirs[ds]
            d["out"] = str(out_root / f"{ds}__{model}")
            runs.append(RunConfig.from_dict(d))
    if not runs:
        raise ValueError(f"{path}: the profile names no runs (needs 'datasets' and 'models')")
    walkthrough = spec.get("walkthrough", "recorded")
    if walkthrough not in ("recorded", "simulated"):
        raise ValueError(f"{path}: walkthrough must be 'recorded' or 'simulated'")
    leakage = spec.get("leakage")
    if leakage is not None:
        leakage = {**leakage, "out_dir": str(out_root / "leakage")}
        ds = leakage.get("dataset", "brain_tumor_mri")
        if ds in data_dirs:
            leakage.setdefault("data_dir", data_dirs[ds])
    return Profile(name, runs, out_root, spec.get("description", ""), synthetic, data_dirs,
                   walkthrough, leakage)


@dataclass
class Step:
    """One notebook execution of the plan."""

    name: str  # e.g. 'brain_tumor_mri__resnet/03_train'
    notebook: Path
    output: Path
    parameters: dict[str, Any]
    done: Callable[[], bool] = lambda: False
    status: str = "pending"  # pending | skipped | ok | failed
    error: str = ""
    seconds: float = 0.0


def plan(profile: Profile, only: str | None = None) -> list[Step]:
    """The notebook executions a profile needs, in order."""
    root = profile.out_root
    runs = [r for r in profile.runs if not only or fnmatch.fnmatch(run_name(r), only)]
    if not runs:
        raise ValueError(f"--only {only!r} matches no run of profile '{profile.name}' "
                         f"(runs: {', '.join(run_name(r) for r in profile.runs)})")
    steps = [Step("00_setup", NOTEBOOKS / "00_setup.ipynb", root / "00_setup.ipynb",
                  {"data_dirs": profile.data_dirs, "datasets": profile.datasets,
                   "install_missing": False}),
             Step("01_data_exploration", NOTEBOOKS / "01_data_exploration.ipynb",
                  root / "01_data_exploration.ipynb",
                  {"datasets": profile.datasets, "data_dirs": profile.data_dirs})]
    for cfg in runs:
        out = Path(cfg.out or "")
        params = cfg.to_dict()
        steps.append(Step(f"{run_name(cfg)}/03_train", NOTEBOOKS / "03_train.ipynb",
                          out / "03_train.ipynb", params, done=lambda o=out: _complete(o)))
        steps.append(Step(f"{run_name(cfg)}/04_evaluate", NOTEBOOKS / "04_evaluate.ipynb",
                          out / "04_evaluate.ipynb", {"run_dir": str(out)},
                          done=lambda o=out: _complete(o) and (o / "04_evaluate.ipynb").is_file()))
    first = Path(runs[0].out or "")
    steps.append(Step("02_dual_monitor_walkthrough", NOTEBOOKS / "02_dual_monitor_walkthrough.ipynb",
                      root / "02_dual_monitor_walkthrough.ipynb",
                      {"run_dir": str(first) if profile.walkthrough == "recorded" else "",
                       "static": True,
                       "figure_out": str(root / "figures" / "walkthrough.png")}))
    if profile.leakage is not None:
        steps.append(Step("06_leakage", NOTEBOOKS / "06_leakage.ipynb", root / "06_leakage.ipynb",
                          profile.leakage))
    steps.append(Step("05_results", NOTEBOOKS / "05_results.ipynb", root / "05_results.ipynb",
                      {"profile_dir": str(root), "figures_dir": str(root / "figures")}))
    return steps


def _complete(run_dir: Path) -> bool:
    import json

    m = run_dir / "metrics.json"
    try:
        return m.is_file() and json.loads(m.read_text()).get("status") == "complete"
    except ValueError:
        return False


def prepare_synthetic(profile: Profile, log: Callable[[str], None] = print) -> None:
    """Write the offline stand-ins a profile asks for, once."""
    if not profile.synthetic:
        return
    from .data.synthetic import write_synthetic

    for ds in profile.datasets:
        target = Path(profile.data_dirs[ds])
        if target.is_dir() and any(target.iterdir()):
            continue
        log(f"writing synthetic stand-in {ds} -> {target}")
        write_synthetic(ds, target, **profile.synthetic)


def run_profile(profile: Profile | str, only: str | None = None, dry_run: bool = False,
                kernel: str = KERNEL, log: Callable[[str], None] = print,
                export_html: bool = True) -> list[Step]:
    """Execute the plan; returns every step with its status. Never stops at the first failure."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    steps = plan(profile, only)
    log(f"profile '{profile.name}': {len(profile.runs)} run(s) -> {profile.out_root}")
    if dry_run:
        for s in steps:
            state = "done, would skip" if s.done() else "would run"
            log(f"  {s.name:<50} {state}")
        return steps
    prepare_synthetic(profile, log)
    os.environ.setdefault("MEDTL_PROGRESS", "log")  # one line per epoch, no tqdm spam in logs
    failed_runs: set[str] = set()
    for i, s in enumerate(steps, 1):
        run = s.name.split("/")[0] if "/" in s.name else ""
        if run in failed_runs:
            s.status, s.error = "skipped", "its training failed"
            log(f"[{i}/{len(steps)}] {s.name}: skipped (training failed)")
            continue
        if s.done():
            s.status = "skipped"
            log(f"[{i}/{len(steps)}] {s.name}: already done")
            continue
        log(f"[{i}/{len(steps)}] {s.name} ...")
        t0 = time.perf_counter()
        try:
            execute(s.notebook, s.output, s.parameters, kernel)
            s.status = "ok"
        except Exception as exc:  # report, keep going
            s.status, s.error = "failed", _short_error(exc)
            if run:
                failed_runs.add(run)
        s.seconds = time.perf_counter() - t0
        log(f"[{i}/{len(steps)}] {s.name}: {s.status} in {s.seconds:.0f}s"
            + (f"\n    {s.error}\n    see {s.output}" if s.error else ""))
    if export_html:
        results = profile.out_root / "05_results.ipynb"
        if results.is_file():
            html = export_html_report(results)
            log(f"results page: {html}")
    failed = [s for s in steps if s.status == "failed"]
    log(f"done: {sum(s.status == 'ok' for s in steps)} ran, "
        f"{sum(s.status == 'skipped' for s in steps)} skipped, {len(failed)} failed")
    return steps


def execute(notebook: Path, output: Path, parameters: dict[str, Any], kernel: str = KERNEL) -> None:
    """papermill with the kernel named explicitly and the notebook's output log kept beside it."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("papermill")
    handler = logging.FileHandler(output.with_suffix(".log"), mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        extra = {"kernel_manager_class": _kernel_manager()} if os.name == "posix" else {}
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=kernel,
                            cwd=str(NOTEBOOKS), log_output=True, progress_bar=False, **extra)
    finally:
        logger.removeHandler(handler)
        handler.close()


def _kernel_manager():
    """Kernels over local IPC sockets: nothing listens on TCP, and recent ipykernel stops
    printing its 'running over TCP without encryption' warning once per notebook."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc")

    return IPCKernelManager


def export_html_report(executed: Path) -> Path:
    """The results notebook as a standalone HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4))
    target = executed.parent / "results.html"
    target.write_text(body, encoding="utf-8")
    return target


def _short_error(exc: Exception) -> str:
    name = getattr(exc, "ename", type(exc).__name__)
    value = getattr(exc, "evalue", str(exc))
    text = f"{name}: {value}".strip()
    if not text:
        return traceback.format_exc(limit=1)
    return text if len(text) < 600 else text[:600] + " ..."


def main(argv: list[str] | None = None) -> int:
    """``medtl run``: the entry run_all.sh calls."""
    import argparse

    p = argparse.ArgumentParser(prog="medtl run", description="run a profile through the notebooks")
    p.add_argument("profile", nargs="?", default="smoke", help="smoke | paper | FILE.yaml")
    p.add_argument("--only", help="run names to include, glob on <dataset>__<model>, e.g. 'brain*'")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--runs-dir", default=str(REPO / "runs"))
    p.add_argument("--kernel", default=KERNEL)
    args = p.parse_args(argv)
    profile = load_profile(args.profile, runs_dir=args.runs_dir)
    steps = run_profile(profile, args.only, args.dry_run, args.kernel)
    return 1 if any(s.status == "failed" for s in steps) else 0
