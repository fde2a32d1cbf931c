"""The smoke profile, executed at most once per test session, for every module that needs it.

`bash run_all.sh` runs the smoke profile (minutes on a CPU). Several test modules look at what it
produces (tests/test_browser.py opens its results.html; tests/test_notebooks.py checks its
notebooks): a module fixture that calls `run_smoke_once(tmp_path_factory)` shares one execution
with the others instead of paying for its own.

MEDTL_TEST_SMOKE_DIR=DIR runs it in DIR/runs with its data in DIR/data instead of a throwaway
folder; a second session then resumes there (finished runs are skipped, notebooks 02, 06, 05 and
the results page are made again), which is quick when iterating on the notebooks or the page.
Resumed steps report status "skipped", so tests that demand every step "ok" (test_notebooks)
expect a fresh folder.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SmokeRun:
    profile: object  # medtl_lib.orchestration.Profile
    steps: list = field(default_factory=list)  # profiles.Step, with status / error / seconds
    lines: list[str] = field(default_factory=list)  # run_profile's log


_CACHE: dict[str, SmokeRun] = {}


def run_smoke_once(tmp_path_factory) -> SmokeRun:
    if "smoke" not in _CACHE:
        from medtl_lib import orchestration as profiles

        fixed = os.environ.get("MEDTL_TEST_SMOKE_DIR", "").strip()
        if fixed:
            runs, data = Path(fixed) / "runs", Path(fixed) / "data"
        else:
            runs, data = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("data")
        profile = profiles.load_profile("smoke", runs_dir=runs, data_root=data)
        lines: list[str] = []
        steps = profiles.run_profile(profile, log=lines.append)
        _CACHE["smoke"] = SmokeRun(profile, steps, lines)
    return _CACHE["smoke"]
