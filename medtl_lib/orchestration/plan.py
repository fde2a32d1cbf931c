"""The plan: every notebook execution a profile needs, in order (:func:`plan`).

Each training run (one dataset, model, strategy and seed) gets its own folder
``runs/<profile>/<run name>/`` holding the executed ``03_train.ipynb`` and ``04_evaluate.ipynb``
next to the run's files; the profile folder gets ``00_setup`` and ``01_data_exploration``, the
profile's report notebooks (``reports:``, :mod:`.reports`) and last ``05_results``, whose HTML
export is the results page ``results.html``.

A run whose metrics say complete is skipped; an interrupted one is executed again and
resumes from its last complete epoch; a failing one is reported and the others go on.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import run_folder as rf
from ..config import RunConfig
from .profile import NOTEBOOKS, Profile
from .reports import REPORTS, RESULTS_PAGE, Report


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
    named = [(profile.run_name(r), r) for r in profile.runs]
    selected = [(n, r) for n, r in named if not only or fnmatch.fnmatch(n, only)]
    if not selected:
        raise ValueError(f"--only {only!r} matches no run of profile '{profile.name}' "
                         f"(runs: {', '.join(n for n, _ in named)})")
    steps = [Step("00_setup", NOTEBOOKS / "00_setup.ipynb", root / "00_setup.ipynb",
                  {"data_dirs": profile.data_dirs, "datasets": profile.datasets,
                   "install_missing": False}),
             Step("01_data_exploration", NOTEBOOKS / "01_data_exploration.ipynb",
                  root / "01_data_exploration.ipynb",
                  {"datasets": profile.datasets, "data_dirs": profile.data_dirs})]
    # a profile's plugins reach the notebooks' kernels too (only when it has some: the plan of
    # every other profile stays as it was)
    plugins = {"plugins": list(profile.plugins)} if profile.plugins else {}
    for name, cfg in selected:
        out = Path(cfg.out or "")
        # a reproduction never falls back to made-up data
        params = {**cfg.to_dict(), "synthetic_fallback": False, **plugins}
        steps.append(Step(f"{name}/03_train", NOTEBOOKS / "03_train.ipynb",
                          out / "03_train.ipynb", params, done=lambda o=out: complete(o)))
        steps.append(Step(f"{name}/04_evaluate", NOTEBOOKS / "04_evaluate.ipynb",
                          out / "04_evaluate.ipynb", {"run_dir": str(out), **plugins},
                          done=lambda o=out: complete(o) and (o / "04_evaluate.ipynb").is_file()))
    for name in [n for n in profile.reports if n != RESULTS_PAGE] + [RESULTS_PAGE]:
        steps += _report_steps(profile, name, selected, only)  # the results page last, always
    return steps


def _report_steps(profile: Profile, report: str, selected: list[tuple[str, RunConfig]],
                  only: str | None) -> list[Step]:
    """The steps of one report notebook of the plan (several for 09 and 10: one per search or
    run): what each runs with is its :class:`~.reports.Report`'s to say."""
    def make(name: str, cls: type[Report], output: Path, parameters: dict[str, Any],
             done: Callable[[], bool] | None = None) -> Step:
        notebook = cls.notebook or NOTEBOOKS / f"{cls.name}.ipynb"
        return Step(name, notebook, output, parameters, **({"done": done} if done else {}))

    return REPORTS.get(report).steps(profile, selected, only, make)


def complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` finished (:func:`medtl_lib.run_folder.is_complete`)."""
    return rf.is_complete(run_dir)
